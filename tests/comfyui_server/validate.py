"""Graph validation as ComfyUI 0.3.64 does it (``execution.validate_prompt``).

Node definitions come from a real server's ``/object_info``; the answers
have the shapes recorded in ``captures/prompt_validation_errors.json``:
``(ok, error, good_outputs, node_errors)``.
"""
from __future__ import annotations

import traceback
from typing import Any, Optional

ObjectInfo = dict[str, dict[str, Any]]


def input_spec(info: ObjectInfo, class_type: str, name: str) -> tuple[Optional[str], Any, dict]:
    """(category, input_type, extra_info) of one input, as ``get_input_info`` gives them."""
    inputs = info[class_type]["input"]
    for category in ("required", "optional", "hidden"):
        section = inputs.get(category) or {}
        if name in section:
            spec = section[name]
            extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            return category, spec[0], extra
    return None, None, {}


def combo_options(input_type: Any, extra: dict) -> Optional[list]:
    if isinstance(input_type, list):
        return input_type
    if input_type == "COMBO":
        return list(extra.get("options", []))
    return None


def validate_prompt(info: ObjectInfo, prompt: Any) -> tuple[bool, Optional[dict], list[str], dict]:
    if not isinstance(prompt, dict):
        prompt = {}
    outputs = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return False, _error(
                "invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'"), [], {}
        class_type = node["class_type"]
        if class_type not in info:
            return False, _error(
                "invalid_prompt", f"Cannot execute because node {class_type} does not exist.",
                f"Node ID '#{node_id}'"), [], {}
        if info[class_type].get("output_node") is True:
            outputs.append(node_id)
    if not outputs:
        return False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}

    good: list[str] = []
    failures: list[tuple[str, list]] = []
    node_errors: dict[str, dict] = {}
    validated: dict[str, tuple] = {}
    for output in outputs:
        try:
            valid, reasons, _ = validate_inputs(info, prompt, output, validated)
        except Exception as exc:  # the real server reports its own exceptions this way
            valid = False
            reasons = [{
                "type": "exception_during_validation",
                "message": "Exception when validating node",
                "details": str(exc),
                "extra_info": {
                    "exception_type": type(exc).__name__,
                    "traceback": traceback.format_tb(exc.__traceback__),
                },
            }]
            validated[output] = (False, reasons, output)
        if valid:
            good.append(output)
            continue
        if reasons:
            failures.append((output, reasons))
        for node_id, (node_valid, node_reasons, _) in validated.items():
            if node_valid is not True and node_reasons:
                if node_id not in node_errors:
                    node_errors[node_id] = {
                        "errors": node_reasons,
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    }
                node_errors[node_id]["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(f"{r['message']}: {r['details']}" for _, reasons in failures for r in reasons)
        return False, _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details), [], node_errors
    return True, None, good, node_errors


def validate_inputs(info: ObjectInfo, prompt: dict, node_id: str, validated: dict) -> tuple:
    if node_id in validated:
        return validated[node_id]
    node = prompt[node_id]
    inputs = node.get("inputs") or {}
    class_type = node["class_type"]
    sections = info[class_type]["input"]
    names = list(sections.get("required") or {}) + list(sections.get("optional") or {})
    errors: list[dict] = []
    valid = True
    for name in names:
        category, input_type, extra = input_spec(info, class_type, name)
        config = [input_type, extra]
        if name not in inputs:
            if category == "required":
                errors.append({
                    "type": "required_input_missing", "message": "Required input is missing",
                    "details": name, "extra_info": {"input_name": name},
                })
            continue
        value = inputs[name]
        if isinstance(value, list):
            if len(value) != 2:
                errors.append({
                    "type": "bad_linked_input",
                    "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    "details": name,
                    "extra_info": {"input_name": name, "input_config": config, "received_value": value},
                })
                continue
            source_id, slot = value
            source = prompt[source_id]  # KeyError for a missing node, as in the real server
            returns = info[source["class_type"]]["output"]
            received = returns[slot]
            if not _types_match(received, input_type):
                errors.append({
                    "type": "return_type_mismatch",
                    "message": "Return type mismatch between linked nodes",
                    "details": f"{name}, received_type({received}) mismatch input_type({input_type})",
                    "extra_info": {
                        "input_name": name, "input_config": config,
                        "received_type": received, "linked_node": value,
                    },
                })
                continue
            if validate_inputs(info, prompt, source_id, validated)[0] is False:
                valid = False
            continue
        error = _check_value(name, value, input_type, extra, config, inputs)
        if error:
            errors.append(error)
    result = (False, errors, node_id) if errors or not valid else (True, [], node_id)
    validated[node_id] = result
    return result


def _check_value(name: str, value: Any, input_type: Any, extra: dict, config: list, inputs: dict) -> Optional[dict]:
    converters = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
    if isinstance(input_type, str) and input_type in converters:
        try:
            value = converters[input_type](value)
            inputs[name] = value
        except Exception as exc:
            return {
                "type": "invalid_input_type",
                "message": f"Failed to convert an input value to a {input_type} value",
                "details": f"{name}, {value}, {exc}",
                "extra_info": {
                    "input_name": name, "input_config": config,
                    "received_value": value, "exception_message": str(exc),
                },
            }
    if "min" in extra and _compare(value, extra["min"]) < 0:
        return {
            "type": "value_smaller_than_min", "message": f"Value {value} smaller than min of {extra['min']}",
            "details": name, "extra_info": {"input_name": name, "input_config": config, "received_value": value},
        }
    if "max" in extra and _compare(value, extra["max"]) > 0:
        return {
            "type": "value_bigger_than_max", "message": f"Value {value} bigger than max of {extra['max']}",
            "details": name, "extra_info": {"input_name": name, "input_config": config, "received_value": value},
        }
    options = combo_options(input_type, extra)
    if options is not None and value not in options:
        shown: Any = config
        listed = str(options)
        if len(options) > 20:  # the real server does not echo long lists of model files
            listed = f"(list of length {len(options)})"
            shown = None
        return {
            "type": "value_not_in_list", "message": "Value not in list",
            "details": f"{name}: '{value}' not in {listed}",
            "extra_info": {"input_name": name, "input_config": shown, "received_value": value},
        }
    return None


def _compare(value: Any, limit: Any) -> int:
    try:
        return (value > limit) - (value < limit)
    except TypeError:
        return 0


def _types_match(received: str, expected: Any) -> bool:
    if not isinstance(expected, str) or expected == "*" or received == "*":
        return True
    return bool(set(received.split(",")) & set(expected.split(",")))


def _error(kind: str, message: str, details: str) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}
