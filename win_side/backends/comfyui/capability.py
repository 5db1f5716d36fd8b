"""What this worker's ComfyUI servers can render, for the capability file (``studio.capability``).

Per model of renderloop.yaml: what each server lacks (files, node types:
the preflight's rule), and where each spec field lands in the model's graph
with what the servers accept there.  Where a field lands is found by
building the graph twice, with the field changed the second time: the node
inputs whose value changed are the field's.  That holds for the built-in
graphs and for user workflows alike, without a second table of bindings.
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from studio.capability import BOUND_FIELDS, BoundInput, ModelCapability
from studio.config import StudioConfig
from studio.spec import Spec
from win_side.backends.base import RenderFailed, RenderRequest
from win_side.backends.comfyui import errors
from win_side.backends.comfyui.client import BadAnswer, OutOfTime, ServerDown
from win_side.backends.comfyui.graphs import Graph

log = logging.getLogger("renderloop.comfyui")

PROBE = "renderloop-probe"
_CHANGED: dict[str, Any] = {"seed": 2, "width": 520, "height": 520, "steps": 37, "cfg": 7.25,
                            "sampler": PROBE, "scheduler": PROBE}


def _request(model: str, config: StudioConfig, **changes: Any) -> RenderRequest:
    settings = config.models[model]
    values: dict[str, Any] = {"model": model, "prompt": "probe", "seed": 1, "width": 512, "height": 512}
    spec = Spec(**{**values, **changes})
    return RenderRequest(PROBE, PROBE, spec, "sha256:" + "0" * 64, settings)


def bound_inputs(build: Any, model: str, config: StudioConfig) -> dict[str, list[tuple[str, str, str]]]:
    """Per spec field, the (node, class_type, input) it is written to in ``model``'s graph."""
    base: Graph = build(_request(model, config))
    bound: dict[str, list[tuple[str, str, str]]] = {}
    for field in BOUND_FIELDS:
        changed: Graph = build(_request(model, config, **{field: _CHANGED[field]}))
        for node_id, node in changed.nodes.items():
            before = base.nodes.get(node_id, {}).get("inputs", {})
            for name, value in node["inputs"].items():
                if name in before and before[name] != value and not isinstance(value, list):
                    bound.setdefault(field, []).append((node_id, node["class_type"], name))
    return bound


def _accepts(info: dict, name: str) -> Optional[dict[str, Any]]:
    """Type and range of input ``name`` in a node definition, None when the node has no such input."""
    inputs = errors.as_dict(info.get("input"))
    for section in ("required", "optional"):
        spec = (inputs.get(section) or {}).get(name)
        if not isinstance(spec, list) or not spec:
            continue
        if isinstance(spec[0], list):
            return {"type": "COMBO", "choices": [str(c) for c in spec[0]]}
        options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        if spec[0] == "COMBO":
            return {"type": "COMBO", "choices": [str(c) for c in options.get("options") or []]}
        found: dict[str, Any] = {"type": str(spec[0])}
        for key in ("min", "max"):
            if isinstance(options.get(key), (int, float)) and not isinstance(options.get(key), bool):
                found[key] = options[key]
        return found
    return None


def _merge(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """What every server accepts: the tightest range, the common choices."""
    merged = dict(answers[0])
    for other in answers[1:]:
        if "min" in other:
            merged["min"] = max(merged.get("min", other["min"]), other["min"])
        if "max" in other:
            merged["max"] = min(merged.get("max", other["max"]), other["max"])
        if "choices" in other and "choices" in merged:
            merged["choices"] = [c for c in merged["choices"] if c in other["choices"]]
    return merged


def describe(lanes: Sequence[Any], build: Any, config: StudioConfig) -> Optional[dict[str, Any]]:
    """``{servers, models, nodes}`` for the capability file; None when no server answers."""
    graphs: dict[str, Graph] = {}
    bindings: dict[str, dict[str, list[tuple[str, str, str]]]] = {}
    for model, settings in config.models.items():
        if settings.comfyui is None:
            continue
        try:
            graphs[model] = build(_request(model, config))
            bindings[model] = bound_inputs(build, model, config)
        except RenderFailed as exc:
            log.debug("capability: no graph for %s: %s", model, exc)
    class_types = sorted({node["class_type"] for graph in graphs.values() for node in graph.nodes.values()})
    infos: dict[str, dict[str, Optional[dict]]] = {}  # server -> class_type -> definition
    for lane in lanes:
        try:
            infos[lane.url] = {class_type: lane.client.object_info(class_type) for class_type in class_types}
        except (ServerDown, BadAnswer, OutOfTime) as exc:
            log.debug("capability: ComfyUI at %s does not answer: %s", lane.url, exc)
    if not infos:
        return None
    models: dict[str, ModelCapability] = {}
    for model, graph in graphs.items():
        missing = {}
        for url, known in infos.items():
            lacks = errors.lacking(graph, dict(known), lambda class_type: None)
            if lacks:
                missing[url] = lacks
        inputs: dict[str, list[BoundInput]] = {}
        for field, targets in bindings[model].items():
            for node, class_type, name in targets:
                definitions = [known[class_type] for known in infos.values() if known.get(class_type)]
                answers = [a for a in (_accepts(d, name) for d in definitions if d is not None) if a is not None]
                if answers:
                    inputs.setdefault(field, []).append(
                        BoundInput(node=node, class_type=class_type, input=name, **_merge(answers)))
        models[model] = ModelCapability(renderable=not missing, missing=missing, inputs=inputs)
    nodes: dict[str, list[str]] = {}
    for known in infos.values():
        for class_type, info in known.items():
            if info is not None and class_type not in nodes:
                definition = errors.as_dict(info.get("input"))
                nodes[class_type] = [n for section in ("required", "optional") for n in (definition.get(section) or {})]
    return {"servers": sorted(infos), "models": models, "nodes": nodes}
