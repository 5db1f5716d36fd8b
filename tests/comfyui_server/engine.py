"""The executing half of the test server: queue, executor thread, history, cache, files.

Mirrors ComfyUI 0.3.64 (``execution.py``, ``main.py:prompt_worker``,
``folder_paths.get_save_image_path``, ``nodes.SaveImage``) closely enough
that a client cannot tell the difference in what it sees: message order and
shapes, history entries, file numbering, the execution cache.  Nodes do no
real work: a sampler waits the configured render time, sending progress.
"""
from __future__ import annotations

import heapq
import io
import itertools
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from PIL import Image, PngImagePlugin

SAMPLERS = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
MAX_HISTORY = 10000
RenderTime = Union[float, Callable[[dict], float]]


@dataclass
class Entry:
    number: float
    prompt_id: str
    prompt: dict
    extra_data: dict
    outputs: list[str]

    def as_list(self) -> list:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


@dataclass
class Fault:
    """An injected failure for the next prompt that executes."""

    kind: str  # "error" | "hang"
    exception_type: str = "Exception"
    message: str = "injected failure"
    node_class: Optional[str] = None  # the node that fails; default: the sampler or the output


class Interrupted(Exception):
    pass


class Aborted(Exception):
    """The server "restarted" while this prompt ran: it vanishes without a trace."""


class NodeError(Exception):
    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


@dataclass
class Timing:
    prompt_id: str
    start: float  # time.perf_counter()
    end: float
    model: str = ""  # the model files its loaders name ("" when it loads none)
    switched: bool = False  # it loaded them: the model of the previous execution differed


@dataclass
class Engine:
    output_dir: Path
    temp_dir: Path
    send: Callable[[Optional[str], str, Any], None]  # (sid or None for everyone, type, data)
    send_binary: Callable[[Optional[str], bytes], None]
    wants_metadata: Callable[[str], bool]
    render_seconds: RenderTime = 0.0
    load_seconds: float = 0.0  # charged when a prompt's model differs from the one loaded
    previews: bool = True
    lock: threading.Condition = field(default_factory=threading.Condition)
    pending: list = field(default_factory=list)
    running: Optional[Entry] = None
    history: dict[str, dict] = field(default_factory=dict)
    number: int = 0
    cache: dict[str, Any] = field(default_factory=dict)
    generation: int = 0
    client_id: Optional[str] = None
    last_node_id: Optional[str] = None
    faults: list[Fault] = field(default_factory=list)
    loaded: str = ""  # the model in "VRAM": what the last execution loaded
    timeline: list[Timing] = field(default_factory=list)
    interrupt_flag: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False
    _seq: Any = field(default_factory=itertools.count)

    # ----------------------------------------------------------------- queue
    def start(self) -> None:
        self._thread = threading.Thread(target=self._worker, name="comfy-executor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.generation += 1
            self.interrupt_flag.set()
            self.lock.notify_all()

    def next_number(self, front: bool) -> int:
        with self.lock:
            number = -self.number if front else self.number
            self.number += 1
            return number

    def put(self, entry: Entry) -> None:
        with self.lock:
            heapq.heappush(self.pending, (entry.number, next(self._seq), entry))
            self.lock.notify_all()
        self.queue_updated()

    def queue_remaining(self) -> int:
        with self.lock:
            return len(self.pending) + (1 if self.running else 0)

    def queue_updated(self) -> None:
        self.send(None, "status", {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}})

    def queue_lists(self) -> tuple[list, list]:
        with self.lock:
            running = [self.running.as_list()] if self.running else []
            pending = [item[2].as_list() for item in self.pending]
            return running, pending

    def delete(self, prompt_ids: list[str]) -> None:
        with self.lock:
            self.pending = [item for item in self.pending if item[2].prompt_id not in prompt_ids]
            heapq.heapify(self.pending)
        self.queue_updated()

    def clear(self) -> None:
        with self.lock:
            self.pending = []
        self.queue_updated()

    def interrupt(self, prompt_id: Optional[str]) -> None:
        with self.lock:
            if prompt_id and (self.running is None or self.running.prompt_id != prompt_id):
                return  # targeted interrupt of a prompt that is not running: ignored
            self.interrupt_flag.set()

    def forget_everything(self) -> None:
        """What a restart loses: queue, running prompt, history, cache, numbering."""
        with self.lock:
            self.generation += 1
            self.pending = []
            self.running = None
            self.history = {}
            self.cache = {}
            self.number = 0
            self.client_id = None
            self.last_node_id = None
            self.loaded = ""
            self.interrupt_flag.set()
            self.lock.notify_all()

    # -------------------------------------------------------------- executor
    def _worker(self) -> None:
        while True:
            with self.lock:
                while not self.pending and not self.stopping:
                    self.lock.wait()
                if self.stopping:
                    return
                _, _, entry = heapq.heappop(self.pending)
                self.running = entry
                generation = self.generation
            self.queue_updated()
            start = time.perf_counter()
            model, loaded_before = model_of(entry.prompt), self.loaded
            try:
                result = self._execute(entry, generation)
            except Aborted:
                continue
            with self.lock:
                if generation != self.generation:
                    continue
                self.running = None
                if len(self.history) > MAX_HISTORY:
                    self.history.pop(next(iter(self.history)))
                self.history[entry.prompt_id] = {"prompt": entry.as_list(), **result}
                switched = bool(model) and model != loaded_before and self.loaded == model
                self.timeline.append(Timing(entry.prompt_id, start, time.perf_counter(), model, switched))
            self.queue_updated()
            if self.client_id is not None:
                self.send(self.client_id, "executing", {"node": None, "prompt_id": entry.prompt_id})

    def _execute(self, entry: Entry, generation: int) -> dict:
        self.interrupt_flag.clear()
        self.client_id = entry.extra_data.get("client_id")
        pid = entry.prompt_id
        messages: list = []
        order = _execution_order(entry.prompt, entry.outputs)
        signatures = {node: _signature(entry.prompt, node) for node in order}
        cached = [node for node in order if signatures[node] in self.cache]
        run = _Run(self, entry, generation, messages)
        run.message("execution_start", {"prompt_id": pid, "timestamp": _ms()})
        run.message("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _ms()})
        outputs: dict[str, Any] = {}
        fault = self.faults.pop(0) if self.faults else None
        fresh = [node for node in order if node not in cached]
        worker = _busy_node(entry.prompt, fresh)
        new_cache: dict[str, Any] = {}
        current: Optional[str] = None
        model = model_of(entry.prompt)
        try:
            if fresh and model and model != self.loaded:
                run.load(model)
            for node in order:
                ui = self.cache.get(signatures[node]) if node in cached else None
                if node in cached:
                    if ui:
                        outputs[node] = ui
                        run.send("executed", {"node": node, "display_node": node, "output": ui, "prompt_id": pid})
                    new_cache[signatures[node]] = ui
                    continue
                current = node
                ui = run.node(node, worker == node, fault)
                if ui:
                    outputs[node] = ui
                new_cache[signatures[node]] = ui
            run.progress_state()
            run.message("execution_success", {"prompt_id": pid, "timestamp": _ms()})
            success = True
        except Interrupted:
            run.message("execution_interrupted", {
                "prompt_id": pid, "node_id": current, "node_type": entry.prompt[current]["class_type"],
                "executed": list(run.executed), "timestamp": _ms(),
            }, broadcast=True)
            success = False
        except NodeError as exc:
            run.message("execution_error", {
                "prompt_id": pid, "node_id": current, "node_type": entry.prompt[current]["class_type"],
                "executed": list(run.executed), "exception_message": exc.message,
                "exception_type": exc.exception_type,
                "traceback": ['  File "/srv/ComfyUI/execution.py", line 496, in execute\n'],
                "current_inputs": {k: [v] for k, v in entry.prompt[current]["inputs"].items()
                                   if not isinstance(v, list)},
                "current_outputs": list(order), "timestamp": _ms(),
            })
            success = False
        with self.lock:
            if generation != self.generation:
                raise Aborted()
            if success:
                self.cache = new_cache
        meta = {node: {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}
                for node in outputs}
        self.last_node_id = None
        return {
            "outputs": outputs if success else {},
            "status": {"status_str": "success" if success else "error", "completed": success, "messages": messages},
            "meta": meta if success else {},
        }

    # ----------------------------------------------------------------- files
    def save_images(self, prefix: str, count: int, size: tuple[int, int], entry: Entry) -> list[dict]:
        output = os.path.realpath(self.output_dir)
        normalized = os.path.normpath(prefix)
        subfolder = os.path.dirname(normalized)
        basename = os.path.basename(normalized)
        folder = os.path.join(output, subfolder)
        if os.path.commonpath((output, os.path.abspath(folder))) != output:
            raise NodeError(
                "Exception",
                "**** ERROR: Saving image outside the output folder is not allowed.\n"
                f" full_output_folder: {os.path.abspath(folder)}\n         output_dir: {output}\n"
                f"         commonpath: {os.path.commonpath((output, os.path.abspath(folder)))}\n",
            )
        os.makedirs(folder, exist_ok=True)
        counter = _next_counter(folder, basename)
        images = []
        for index in range(count):
            name = f"{basename}_{counter:05}_.png"
            Path(folder, name).write_bytes(make_png(size, entry, index))
            images.append({"filename": name, "subfolder": subfolder, "type": "output"})
            counter += 1
        return images


class _Run:
    """One prompt executing: sends its messages, remembers them for the history."""

    def __init__(self, engine: Engine, entry: Entry, generation: int, messages: list) -> None:
        self.engine = engine
        self.entry = entry
        self.generation = generation
        self.messages = messages
        self.executed: list[str] = []
        self.states: dict[str, dict] = {}

    def send(self, kind: str, data: dict) -> None:
        self._check()
        if self.engine.client_id is not None:
            self.engine.send(self.engine.client_id, kind, data)

    def message(self, kind: str, data: dict, broadcast: bool = False) -> None:
        self.messages.append([kind, data])
        if self.engine.client_id is not None or broadcast:
            self.engine.send(self.engine.client_id, kind, data)

    def progress_state(self) -> None:
        self._check()
        self.engine.send(self.engine.client_id, "progress_state",
                         {"prompt_id": self.entry.prompt_id, "nodes": json.loads(json.dumps(self.states))})

    def _state(self, node: str, value: float, maximum: float, state: str) -> None:
        self.states[node] = {
            "value": value, "max": maximum, "state": state, "node_id": node,
            "prompt_id": self.entry.prompt_id, "display_node_id": node,
            "parent_node_id": None, "real_node_id": node,
        }

    def _check(self) -> None:
        if self.generation != self.engine.generation:
            raise Aborted()

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.engine.interrupt_flag.wait(seconds):
            self._check()
            raise Interrupted()
        self._check()
        if self.engine.interrupt_flag.is_set():
            raise Interrupted()

    def load(self, model: str) -> None:
        """Unload the model in VRAM and load this one: the configured load time."""
        self.engine.loaded = ""
        self._sleep(self.engine.load_seconds)
        self.engine.loaded = model

    def node(self, node: str, busy: bool, fault: Optional[Fault]) -> Optional[dict]:
        spec = self.entry.prompt[node]
        pid = self.entry.prompt_id
        self._state(node, 0.0, 1.0, "running")
        self.progress_state()
        self.engine.last_node_id = node
        self.send("executing", {"node": node, "display_node": node, "prompt_id": pid})
        failing = fault is not None and (fault.node_class == spec["class_type"] or (fault.node_class is None and busy))
        if failing and fault.kind == "hang":
            while True:
                self._sleep(0.05)
        if busy:
            self._work(node, spec)
        if failing:
            raise NodeError(fault.exception_type, fault.message)
        ui = self._output(node, spec)
        if ui is not None:
            self.send("executed", {"node": node, "display_node": node, "output": ui, "prompt_id": pid})
        self.executed.append(node)
        self._state(node, 1.0, 1.0, "finished")
        self.progress_state()
        return ui

    def _work(self, node: str, spec: dict) -> None:
        total = self.engine.render_seconds
        seconds = total(self.entry.prompt) if callable(total) else float(total)
        if spec["class_type"] not in SAMPLERS:  # only samplers report progress
            self._sleep(seconds)
            return
        steps = spec["inputs"].get("steps")
        steps = steps if isinstance(steps, int) and 0 < steps <= 200 else 1
        for step in range(1, steps + 1):
            self._sleep(seconds / steps)
            self._state(node, step, steps, "running")
            self.progress_state()
            self.send("progress", {"value": step, "max": steps, "prompt_id": self.entry.prompt_id, "node": node})
            if self.engine.previews:
                self._preview(node)

    def _preview(self, node: str) -> None:
        sid = self.engine.client_id
        if sid is None:
            return
        if self.engine.wants_metadata(sid):
            meta = json.dumps({"node_id": node, "prompt_id": self.entry.prompt_id, "display_node_id": node,
                               "parent_node_id": None, "real_node_id": node, "image_type": "image/png"}).encode()
            frame = (4).to_bytes(4, "big") + len(meta).to_bytes(4, "big") + meta + PREVIEW_PNG
        else:
            frame = (1).to_bytes(4, "big") + (2).to_bytes(4, "big") + PREVIEW_PNG
        self.engine.send_binary(sid, frame)

    def _output(self, node: str, spec: dict) -> Optional[dict]:
        kind = spec["class_type"]
        if kind == "SaveImage":
            size, count = _image_size(self.entry.prompt, spec["inputs"].get("images"))
            return {"images": self.engine.save_images(str(spec["inputs"]["filename_prefix"]), count, size, self.entry)}
        if kind == "PreviewImage":
            size, count = _image_size(self.entry.prompt, spec["inputs"].get("images"))
            name = f"ComfyUI_temp_{uuid.uuid4().hex[:5]}_00001_.png"
            self.engine.temp_dir.mkdir(parents=True, exist_ok=True)
            (self.engine.temp_dir / name).write_bytes(make_png(size, self.entry, 0))
            return {"images": [{"filename": name, "subfolder": "", "type": "temp"}]}
        if kind == "SaveImageWebsocket" and self.engine.client_id is not None:
            size, count = _image_size(self.entry.prompt, spec["inputs"].get("images"))
            for index in range(count):
                frame = (1).to_bytes(4, "big") + (2).to_bytes(4, "big") + make_png(size, self.entry, index, text=False)
                self.engine.send_binary(self.engine.client_id, frame)
        return None


# ---------------------------------------------------------------- helpers
MODEL_FILE = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")


def model_of(prompt: dict) -> str:
    """What a prompt loads: the model files its loader nodes name, as one key ("" when none)."""
    files = sorted(
        str(value) for spec in prompt.values() if isinstance(spec, dict) and "Loader" in str(spec.get("class_type"))
        for value in (spec.get("inputs") or {}).values() if isinstance(value, str) and value.endswith(MODEL_FILE)
    )
    return "+".join(files)


def _ms() -> int:
    return int(time.time() * 1000)


def _execution_order(prompt: dict, outputs: list[str]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(node: str) -> None:
        if node in seen:
            return
        seen.add(node)
        for value in prompt[node].get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2 and value[0] in prompt:
                visit(value[0])
        order.append(node)

    for output in sorted(outputs, key=_id_key):
        visit(output)
    return order


def _id_key(node: str) -> tuple:
    return (0, int(node), "") if str(node).isdigit() else (1, 0, str(node))


def _signature(prompt: dict, node: str, depth: int = 0) -> str:
    spec = prompt[node]
    inputs = {}
    for name, value in sorted(spec.get("inputs", {}).items()):
        if isinstance(value, list) and len(value) == 2 and value[0] in prompt and depth < 200:
            inputs[name] = ["link", _signature(prompt, value[0], depth + 1), value[1]]
        else:
            inputs[name] = value
    return json.dumps([spec["class_type"], inputs], sort_keys=True, default=str)


def _busy_node(prompt: dict, fresh: list[str]) -> Optional[str]:
    """The node that takes the render time: the sampler, else the first output, else the last node."""
    for node in fresh:
        if prompt[node]["class_type"] in SAMPLERS:
            return node
    for node in fresh:
        if prompt[node]["class_type"] in ("SaveImage", "PreviewImage", "SaveImageWebsocket"):
            return node
    return fresh[-1] if fresh else None


def _image_size(prompt: dict, link: Any) -> tuple[tuple[int, int], int]:
    """Width, height and batch size of the image reaching a save node."""
    node = link[0] if isinstance(link, list) and link and link[0] in prompt else None
    width = height = None
    batch = 1
    for _ in range(100):
        if node is None:
            break
        inputs = prompt[node].get("inputs", {})
        if width is None and isinstance(inputs.get("width"), (int, float)) and isinstance(inputs.get("height"), (int, float)):
            width, height = int(inputs["width"]), int(inputs["height"])
        if isinstance(inputs.get("batch_size"), int):
            batch = inputs["batch_size"]
            break
        upstream = [v for k, v in inputs.items() if isinstance(v, list) and len(v) == 2 and v[0] in prompt
                    and k in ("image", "images", "samples", "latent_image", "pixels")]
        node = upstream[0][0] if upstream else None
    return (max(1, min(width or 64, 8192)), max(1, min(height or 64, 8192))), max(1, min(batch, 16))


def _next_counter(folder: str, basename: str) -> int:
    best = 0
    prefix_len = len(basename)
    for name in os.listdir(folder):
        head = name[: prefix_len + 1]
        if os.path.normcase(head[:-1]) != os.path.normcase(basename) or head[-1:] != "_":
            continue
        try:
            best = max(best, int(name[prefix_len + 1:].split("_")[0]))
        except ValueError:
            continue
    return best + 1


def make_png(size: tuple[int, int], entry: Entry, index: int, text: bool = True) -> bytes:
    """A real PNG of ``size`` whose colour depends on the graph, with ComfyUI's text chunks."""
    digest = uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(entry.prompt, sort_keys=True, default=str) + str(index)).bytes
    image = Image.new("RGB", size, (digest[0], digest[1], digest[2]))
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("prompt", json.dumps(entry.prompt))
        for key, value in (entry.extra_data.get("extra_pnginfo") or {}).items():
            info.add_text(key, json.dumps(value))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, compress_level=1)
    return out.getvalue()


def _tiny_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (40, 40, 40)).save(out, format="PNG")
    return out.getvalue()


PREVIEW_PNG = _tiny_png()
