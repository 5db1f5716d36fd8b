"""ComfyUI's answers turned into renderloop's failures: one clear line, the detail kept.

Pure functions over the shapes recorded in ``shared/comfyui`` (node_errors
of a refused /prompt, the status of a history entry, /object_info), so
they are tested against the captures themselves.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from win_side.backends.base import RenderFailed
from win_side.backends.comfyui.client import Rejected
from win_side.backends.comfyui.graphs import Graph

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
OOM_MARKERS = ("outofmemoryerror", "out of memory", "allocation on device", "not enough memory",
               "defaultcpuallocator")
GPU_MARKERS = ("cuda", "allocation on device", "outofmemoryerror", "hip ", "mps")


def is_model_file(class_type: str, value: Any) -> bool:
    """A combo value that names a model file (what a server lacks when it is not listed)."""
    return isinstance(value, str) and (value.lower().endswith(MODEL_EXTENSIONS) or "Loader" in class_type)


def as_dict(value: Any) -> dict:
    """``value`` when ComfyUI answered a mapping there, else an empty one."""
    return value if isinstance(value, dict) else {}


def one_line(text: Any, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ------------------------------------------------------------- /prompt
def rejected(exc: Rejected, url: str, ids: dict) -> RenderFailed:
    """A refused graph: ``missing-model`` when only model files are missing, else ``invalid-spec``."""
    missing: list[str] = []
    problems: list[str] = []
    for node_id, info in exc.node_errors.items():
        if not isinstance(info, dict):
            continue
        class_type = str(info.get("class_type", "?"))
        for error in info.get("errors") or []:
            if not isinstance(error, dict):
                continue
            extra = as_dict(error.get("extra_info"))
            name, value = extra.get("input_name"), extra.get("received_value")
            if error.get("type") == "value_not_in_list" and is_model_file(class_type, value):
                missing.append(f"{value} ({class_type} {name})")
                continue
            details = str(error.get("details") or "")
            text = details if details and details != name else str(error.get("message") or error.get("type"))
            where = f"node {node_id} ({class_type})" + (f" input {name!r}" if name else "")
            problems.append(f"{where}: {one_line(text, 160)}")
    detail = {"error": exc.error, "node_errors": exc.node_errors}
    if missing and not problems:
        return RenderFailed("missing-model", f"ComfyUI at {url} does not list {', '.join(missing)}",
                            detail=detail, backend_ids=ids)
    if problems or missing:
        return RenderFailed("invalid-spec", f"ComfyUI at {url} refused the graph: {'; '.join(problems + missing)}",
                            detail=detail, backend_ids=ids)
    error = exc.error
    text = one_line(f"{error.get('message', 'refused')}" + (f": {error['details']}" if error.get("details") else ""))
    return RenderFailed("invalid-spec", f"ComfyUI at {url} refused the graph: {text}", detail=detail, backend_ids=ids)


def blocking_errors(node_errors: dict, save_node: str) -> dict:
    """The node_errors of a 200 answer that keep our SaveImage from running."""
    return {node: info for node, info in node_errors.items()
            if isinstance(info, dict) and save_node in (info.get("dependent_outputs") or [save_node])}


# ------------------------------------------------------------- history
def status_events(status: dict) -> dict[str, dict]:
    """The status messages of a history entry by kind (execution_start, execution_error...)."""
    events: dict[str, dict] = {}
    for message in status.get("messages") or []:
        if isinstance(message, (list, tuple)) and len(message) == 2 and isinstance(message[1], dict):
            events[str(message[0])] = message[1]
    return events


def render_seconds(events: dict[str, dict]) -> Optional[float]:
    """From execution_start to execution_success, by ComfyUI's own clock."""
    start = events.get("execution_start", {}).get("timestamp")
    end = (events.get("execution_success") or events.get("execution_error") or {}).get("timestamp")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)) and end >= start:
        return round((end - start) / 1000, 3)
    return None


def answered_from_cache(events: dict[str, dict], save_node: str) -> bool:
    """ComfyUI executed nothing for the image: its SaveImage was answered from the execution cache."""
    cached = events.get("execution_cached", {}).get("nodes")
    return isinstance(cached, list) and save_node in [str(node) for node in cached]


def execution_failed(events: dict[str, dict], status: dict, url: str, ids: dict) -> RenderFailed:
    error = events.get("execution_error")
    if error is not None:
        exception_type = str(error.get("exception_type") or "")
        message = one_line(error.get("exception_message") or exception_type or "execution error")
        where = f"{error.get('node_type', '?')} (node {error.get('node_id', '?')})"
        detail = {key: error.get(key) for key in ("node_id", "node_type", "exception_type", "exception_message")}
        detail["traceback"] = (error.get("traceback") or [])[-2:]
        if any(marker in f"{exception_type} {message}".lower() for marker in OOM_MARKERS):
            text = f"{exception_type} {message}".lower()
            memory = "GPU memory" if any(marker in text for marker in GPU_MARKERS) else "memory"
            return RenderFailed("out-of-memory", f"out of {memory} in {where}: {exception_type}: {message}",
                                detail=detail, backend_ids=ids)
        return RenderFailed("backend-error", f"{where} failed: {exception_type}: {message}",
                            detail=detail, backend_ids=ids)
    if "execution_interrupted" in events:
        interrupted = events["execution_interrupted"]
        return RenderFailed("backend-error", f"interrupted on ComfyUI at {url} (in {interrupted.get('node_type')})",
                            detail=interrupted, backend_ids=ids)
    return RenderFailed("backend-error", f"ComfyUI at {url} reports {status.get('status_str')!r} without details",
                        detail=status, backend_ids=ids)


def output_image(entry: dict, save_node: str, url: str, ids: dict) -> dict:
    outputs = as_dict(entry.get("outputs"))
    node = as_dict(outputs.get(save_node))
    images = [i for i in node.get("images") or [] if isinstance(i, dict) and isinstance(i.get("filename"), str)]
    if not images:
        raise RenderFailed("backend-error", f"ComfyUI at {url} finished but lists no image for node {save_node}",
                           detail={"outputs": outputs}, backend_ids=ids)
    return images[0]


# ----------------------------------------------------------- preflight
def combo_options(info: dict, name: str) -> Optional[list]:
    inputs = as_dict(info.get("input"))
    for section in ("required", "optional"):
        spec = (inputs.get(section) or {}).get(name)
        if isinstance(spec, list) and spec:
            if isinstance(spec[0], list):
                return spec[0]
            if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
                return list(spec[1].get("options") or [])
    return None


def lacking(graph: Graph, infos: dict[str, Optional[dict]], fetch: Callable[[str], Optional[dict]]) -> list[str]:
    """What a server lacks to run ``graph``: node types it does not have, model files it does not list."""
    lacks: list[str] = []
    for node in graph.nodes.values():
        class_type = node["class_type"]
        if class_type not in infos:
            infos[class_type] = fetch(class_type)
        info = infos[class_type]
        if info is None:
            lacks.append(f"node type {class_type}")
            continue
        for name, value in node["inputs"].items():
            options = combo_options(info, name)
            if options is not None and is_model_file(class_type, value) and value not in options:
                lacks.append(f"{value} ({class_type} {name})")
    return sorted(set(lacks))


def preflight_failure(model: str, answered: list[tuple[str, list[str]]]) -> RenderFailed:
    """The failure for a model that no answering server can render."""
    nodes_missing = any(item.startswith("node type ") for _, lacks in answered for item in lacks)
    servers = "; ".join(f"ComfyUI at {url} lacks {', '.join(lacks)}" for url, lacks in answered)
    hint = ("install the custom nodes the workflow uses" if nodes_missing
            else f"put the files in ComfyUI's models folders or change models.{model}.comfyui in renderloop.yaml")
    return RenderFailed("invalid-spec" if nodes_missing else "missing-model", f"{servers} ({hint})",
                        detail={url: lacks for url, lacks in answered})
