"""A ComfyUI test server: the HTTP and websocket API of ComfyUI 0.3.64 on 127.0.0.1.

Faithful to the captures in ``shared/comfyui``: endpoints, answers, message
order and shapes, node validation against a real ``/object_info``, file
numbering, the execution cache, restart behaviour.  Nodes do no real work: a
prompt takes ``render_seconds`` and writes a real PNG of the requested size
carrying the graph and ``extra_pnginfo`` as text chunks.

Failures can be injected: an execution error (out of memory...), a prompt
that hangs, a restart (queue and history lost, files kept), sockets dropped
mid-render, HTTP requests that hang, garbage answers.  ``timeline`` records
(prompt_id, start, end) of every execution, for GPU idle-gap measurements;
a prompt whose model (the files its loaders name) differs from the one
loaded before it first waits ``load_seconds`` (a model switch, marked in the
timeline); ``submissions`` the wall-clock arrival of every accepted ``POST /prompt``,
for push-to-dispatch latency measured from another process.

Stdlib only (``http.server`` + a small websocket), so it runs anywhere the
tests do, Windows included.
"""
from __future__ import annotations

import copy
import json
import os
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import parse_qs, urlsplit

from tests.comfyui_server import validate
from tests.comfyui_server.engine import Engine, Entry, Fault, RenderTime
from tests.comfyui_server.ws import Closed, WebSocket, accept_key

_REPO = Path(__file__).resolve().parents[2]
# The ComfyUI ground truth: ../shared/comfyui beside the repository when it is
# there (the team's copy), else the copy kept in tests/data/comfyui (a fresh
# clone); tests/test_comfyui_data.py checks that the two agree.
VENDORED = _REPO / "tests" / "data" / "comfyui"
_TEAM_COPY = _REPO.parent / "shared" / "comfyui"
SHARED = Path(os.environ.get("RENDERLOOP_COMFYUI_SHARED") or (_TEAM_COPY if _TEAM_COPY.is_dir() else VENDORED))

# The default file names of the four built-in graphs (workflows/*.api.json).
DEFAULT_MODELS = (
    "flux1-schnell.safetensors", "flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors",
    "ae.safetensors", "z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors",
    "qwen_image_fp8_e4m3fn.safetensors", "qwen_2.5_vl_7b_fp8_scaled.safetensors", "qwen_image_vae.safetensors",
)
SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_object_info_cache: dict[Path, dict] = {}


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the ComfyUI ground truth lives in ../shared/comfyui beside the "
            "repository or in tests/data/comfyui (or set RENDERLOOP_COMFYUI_SHARED)"
        )
    return path


def load_object_info(path: Optional[Path] = None) -> dict:
    path = path or shared_file("object_info.json")
    if path not in _object_info_cache:
        _object_info_cache[path] = json.loads(path.read_text(encoding="utf-8"))
    return _object_info_cache[path]


def install_models(object_info: dict, models: Iterable[str]) -> dict:
    """``object_info`` with every model-file combo listing ``models``, as a server with them installed."""
    info = copy.deepcopy(object_info)
    files = sorted(set(models))
    for node in info.values():
        for section in ("required", "optional"):
            for spec in (node["input"].get(section) or {}).values():
                if isinstance(spec[0], list) and spec[0] in ([], ["pixel_space"]):
                    spec[0] = files + spec[0]
                elif spec[0] == "COMBO" and len(spec) > 1 and spec[1].get("options") == []:
                    spec[1]["options"] = list(files)
    return info


class ComfyServer:
    """Start with ``ComfyServer(root).start()``; ``url`` is where it listens."""

    def __init__(
        self,
        root: Path,
        *,
        models: Iterable[str] = DEFAULT_MODELS,
        render_seconds: RenderTime = 0.0,
        load_seconds: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        previews: bool = True,
        strict_prompt_id: bool = False,
        object_info: Optional[Path] = None,
    ) -> None:
        self.root = Path(root)
        self.host = host
        self.port = port
        self.strict_prompt_id = strict_prompt_id
        self.object_info = install_models(load_object_info(object_info), models)
        self._object_info_bytes = _json_bytes(self.object_info)
        self.system_stats = json.loads(shared_file("system_stats.json").read_text(encoding="utf-8"))
        self.sockets: dict[str, WebSocket] = {}
        self.socket_flags: dict[str, dict] = {}
        self._sockets_lock = threading.Lock()
        self.engine = Engine(
            output_dir=self.root / "output", temp_dir=self.root / "temp",
            send=self._send_json, send_binary=self._send_binary, wants_metadata=self._wants_metadata,
            render_seconds=render_seconds, load_seconds=load_seconds, previews=previews,
        )
        self.ws_enabled = True
        self.requests: list[tuple[str, str]] = []  # (method, path) of every HTTP request
        self.authorizations: list[tuple[str, Optional[str]]] = []  # (path, Authorization header) of each
        self.submissions: list[tuple[str, float]] = []  # (prompt_id, time.time() the POST /prompt arrived)
        self._garbage: dict[str, list] = {}
        self._hang = threading.Event()
        self._release = threading.Event()
        self._http: Optional[_HTTPServer] = None
        self._serve_thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ComfyServer":
        self.root.mkdir(parents=True, exist_ok=True)
        self.engine.start()
        self._listen()
        return self

    def close(self) -> None:
        self._release.set()
        self.go_down()
        self.engine.stop()

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _listen(self) -> None:
        with self._lock:
            self._http = _HTTPServer((self.host, self.port), _Handler)
            self._http.owner = self
            self.port = self._http.server_address[1]
            self._serve_thread = threading.Thread(
                target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, name="comfy-http", daemon=True
            )
            self._serve_thread.start()

    def go_down(self) -> None:
        """Stop answering: close the port, every connection and every websocket."""
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.shutdown()
            http.server_close()
            http.close_connections()
        self.drop_sockets()

    def come_back(self) -> None:
        self._listen()

    def restart(self, down_seconds: float = 0.0) -> None:
        """A ComfyUI restart: queue, running prompt, history and cache lost; files on disk kept."""
        self.go_down()
        self.engine.forget_everything()
        if down_seconds > 0:
            time.sleep(down_seconds)
        self.come_back()

    # ---------------------------------------------------------- injections
    def fail_next(self, message: str = "injected failure", exception_type: str = "Exception",
                  node_class: Optional[str] = None) -> None:
        self.engine.faults.append(Fault("error", exception_type, message, node_class))

    def fail_next_oom(self) -> None:
        self.fail_next("Allocation on device ", "torch.OutOfMemoryError", "KSampler")

    def hang_next(self) -> None:
        self.engine.faults.append(Fault("hang"))

    def drop_sockets(self) -> None:
        with self._sockets_lock:
            sockets = list(self.sockets.values())
            self.sockets.clear()
        for ws in sockets:
            ws.close()

    def garbage(self, path: str, body: bytes, status: int = 200, content_type: str = "text/html",
                times: int = 1) -> None:
        """Answer the next ``times`` requests whose path starts with ``path`` with ``body``."""
        self._garbage[path] = [status, content_type, body, times]

    def stream(self, path: str, chunks: Any, *, length: Optional[int] = None, status: int = 200,
               content_type: str = "application/json", times: int = 1) -> None:
        """Answer the next ``times`` requests under ``path`` with what ``chunks()`` yields, as it comes.

        ``length`` is the Content-Length announced; None announces none (the
        answer ends when the connection closes): a huge or trickling answer is
        made lazily, never held in memory.
        """
        self._garbage[path] = [status, content_type, chunks, times, length]

    def hang_http(self, on: bool = True) -> None:
        """While on, every HTTP request is held without an answer."""
        if on:
            self._release.clear()
            self._hang.set()
        else:
            self._hang.clear()
            self._release.set()

    # ------------------------------------------------------------- queries
    @property
    def timeline(self) -> list:
        return list(self.engine.timeline)

    def switches(self) -> int:
        """How many executions loaded a model (the first load counts: nothing was loaded before it)."""
        return sum(1 for timing in self.timeline if timing.switched)

    def idle_gaps(self) -> list[float]:
        """Seconds the "GPU" sat idle between consecutive executions."""
        times = self.timeline
        return [b.start - a.end for a, b in zip(times, times[1:])]

    def posted_prompts(self) -> int:
        return sum(1 for method, path in self.requests if method == "POST" and path == "/prompt")

    def output_files(self) -> list[Path]:
        folder = self.engine.output_dir
        return sorted(p for p in folder.rglob("*.png")) if folder.exists() else []

    # ----------------------------------------------------------- websocket
    def _send_json(self, sid: Optional[str], kind: str, data: Any) -> None:
        text = json.dumps({"type": kind, "data": data})
        for ws in self._targets(sid):
            self._deliver(ws, lambda: ws.send_text(text))

    def _send_binary(self, sid: Optional[str], data: bytes) -> None:
        for ws in self._targets(sid):
            self._deliver(ws, lambda: ws.send_binary(data))

    def _targets(self, sid: Optional[str]) -> list[WebSocket]:
        with self._sockets_lock:
            if sid is None:
                return list(self.sockets.values())
            ws = self.sockets.get(sid)
            return [ws] if ws is not None else []

    def _deliver(self, ws: WebSocket, action) -> None:
        try:
            action()
        except Closed:
            with self._sockets_lock:
                for sid, known in list(self.sockets.items()):
                    if known is ws:
                        del self.sockets[sid]

    def _wants_metadata(self, sid: str) -> bool:
        return bool(self.socket_flags.get(sid, {}).get("supports_preview_metadata"))

    # ------------------------------------------------------------ /prompt
    def post_prompt(self, body: dict) -> tuple[int, Any]:
        engine = self.engine
        if "number" in body:
            number = float(body["number"])
        else:
            number = engine.next_number(bool(body.get("front")))
        if "prompt" not in body:
            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided",
                     "extra_info": {}}
            return 400, {"error": error, "node_errors": {}}
        prompt = body["prompt"]
        if self.strict_prompt_id and body.get("prompt_id") is not None:
            text = body["prompt_id"]
            if not isinstance(text, str) or not _UUID.fullmatch(text):
                error = {"type": "invalid_prompt_id", "message": "Invalid prompt_id format",
                         "details": f"prompt_id must be a valid UUID: {text!r}", "extra_info": {}}
                return 400, {"error": error, "node_errors": {}}
        prompt_id = str(body["prompt_id"]) if body.get("prompt_id") is not None else str(uuid.uuid4())
        ok, error, outputs, node_errors = validate.validate_prompt(self.object_info, prompt)
        extra_data = body.get("extra_data") if isinstance(body.get("extra_data"), dict) else {}
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if not ok:
            return 400, {"error": error, "node_errors": node_errors}
        engine.put(Entry(number, prompt_id, prompt, extra_data, outputs))
        return 200, {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ComfyServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def owner(self) -> ComfyServer:
        return self.server.owner

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # ------------------------------------------------------------ plumbing
    def _dispatch(self, method: str) -> None:
        self.arrived = time.time()  # request line and headers read: the wall-clock arrival
        owner = self.owner
        parts = urlsplit(self.path)
        path = parts.path[4:] if parts.path.startswith("/api/") else parts.path
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        owner.requests.append((method, path))
        owner.authorizations.append((path, self.headers.get("Authorization")))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
        if owner._hang.is_set():
            owner._release.wait()
            self.close_connection = True
            return
        if self._garbage(path):
            return
        try:
            route = _ROUTES.get((method, path)) or self._prefixed(method, path)
            if route is None:
                return self._reply(404, b"", None)
            route(self, path, query, body)
        except _BadJSON:
            self._reply(500, b"500 Internal Server Error\n\nServer got itself in trouble",
                        "text/plain; charset=utf-8")

    def _prefixed(self, method: str, path: str):
        for prefix, route in _PREFIX_ROUTES.get(method, ()):
            if path.startswith(prefix):
                return route
        return None

    def _garbage(self, path: str) -> bool:
        for prefix, rule in list(self.owner._garbage.items()):
            if path.startswith(prefix) and rule[3] > 0:
                rule[3] -= 1
                if callable(rule[2]):
                    self._stream(rule[0], rule[1], rule[2], rule[4])
                else:
                    self._reply(rule[0], rule[2], rule[1])
                return True
        return False

    def _reply(self, status: int, body: bytes, content_type: Optional[str], headers: Optional[dict] = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _stream(self, status: int, content_type: str, chunks: Any, length: Optional[int]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in chunks():
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:  # the client gave up: that is the point
            pass

    def _json(self, data: Any, status: int = 200) -> None:
        self._reply(status, _json_bytes(data), "application/json; charset=utf-8")

    @staticmethod
    def _body(body: bytes, required: bool = True) -> Any:
        if not body and not required:
            return {}
        try:
            return json.loads(body)
        except ValueError:
            if required:
                raise _BadJSON() from None
            return {}

    # -------------------------------------------------------------- routes
    def get_prompt(self, path: str, query: dict, body: bytes) -> None:
        self._json({"exec_info": {"queue_remaining": self.owner.engine.queue_remaining()}})

    def post_prompt(self, path: str, query: dict, body: bytes) -> None:
        data = self._body(body)
        if not isinstance(data, dict):
            raise _BadJSON()
        status, answer = self.owner.post_prompt(data)
        if status == 200:
            self.owner.submissions.append((answer["prompt_id"], self.arrived))
        self._json(answer, status)

    def get_queue(self, path: str, query: dict, body: bytes) -> None:
        running, pending = self.owner.engine.queue_lists()
        self._json({"queue_running": running, "queue_pending": pending})

    def post_queue(self, path: str, query: dict, body: bytes) -> None:
        data = self._body(body)
        if data.get("clear"):
            self.owner.engine.clear()
        if "delete" in data:
            self.owner.engine.delete(list(data["delete"]))
        self._reply(200, b"", None)

    def post_interrupt(self, path: str, query: dict, body: bytes) -> None:
        data = self._body(body, required=False)
        self.owner.engine.interrupt(data.get("prompt_id") if isinstance(data, dict) else None)
        self._reply(200, b"", None)

    def post_free(self, path: str, query: dict, body: bytes) -> None:
        self._reply(200, b"", None)

    def get_history(self, path: str, query: dict, body: bytes) -> None:
        engine = self.owner.engine
        with engine.lock:
            history = dict(engine.history)
        if path.startswith("/history/"):
            prompt_id = path[len("/history/"):]
            return self._json({prompt_id: history[prompt_id]} if prompt_id in history else {})
        items = list(history.items())
        if query.get("max_items", "").isdigit():
            items = items[-int(query["max_items"]):]
        self._json(dict(items))

    def post_history(self, path: str, query: dict, body: bytes) -> None:
        data = self._body(body)
        engine = self.owner.engine
        with engine.lock:
            if data.get("clear"):
                engine.history.clear()
            for prompt_id in data.get("delete", []):
                engine.history.pop(prompt_id, None)
        self._reply(200, b"", None)

    def get_view(self, path: str, query: dict, body: bytes) -> None:
        name = query.get("filename")
        if name is None:
            return self._reply(404, b"", None)
        if not name or name[0] == "/" or ".." in name:
            return self._reply(400, b"", None)
        engine = self.owner.engine
        folders = {"output": engine.output_dir, "temp": engine.temp_dir, "input": self.owner.root / "input"}
        kind = query.get("type", "output")
        if kind not in folders:
            return self._reply(400, b"", None)
        base = os.path.realpath(folders[kind])
        folder = base
        if "subfolder" in query:
            folder = os.path.join(base, query["subfolder"])
            if os.path.commonpath((os.path.abspath(folder), base)) != base:
                return self._reply(403, b"", None)
        file = os.path.join(folder, os.path.basename(name))
        if not os.path.isfile(file):
            return self._reply(404, b"", None)
        data = Path(file).read_bytes()
        self._reply(200, data, "image/png", {"Content-Disposition": f'filename="{os.path.basename(name)}"'})

    def get_object_info(self, path: str, query: dict, body: bytes) -> None:
        if path == "/object_info":
            return self._reply(200, self.owner._object_info_bytes, "application/json; charset=utf-8")
        node = path[len("/object_info/"):]
        info = self.owner.object_info
        self._json({node: info[node]} if node in info else {})

    def get_system_stats(self, path: str, query: dict, body: bytes) -> None:
        self._json(self.owner.system_stats)

    def get_features(self, path: str, query: dict, body: bytes) -> None:
        self._json(SERVER_FEATURES)

    def get_embeddings(self, path: str, query: dict, body: bytes) -> None:
        self._json([])

    def get_timeline(self, path: str, query: dict, body: bytes) -> None:
        """Not ComfyUI: the execution timeline, for benchmarks running the server in another process."""
        self._json([[t.prompt_id, t.start, t.end, t.model, t.switched] for t in self.owner.timeline])

    def get_submissions(self, path: str, query: dict, body: bytes) -> None:
        """Not ComfyUI: [prompt_id, wall-clock arrival] of every accepted POST /prompt."""
        self._json([[prompt_id, at] for prompt_id, at in list(self.owner.submissions)])

    def get_clock(self, path: str, query: dict, body: bytes) -> None:
        """Not ComfyUI: [perf_counter, time.time] read together, to put the timeline on the wall clock."""
        self._json([time.perf_counter(), time.time()])

    def get_ws(self, path: str, query: dict, body: bytes) -> None:
        owner = self.owner
        key = self.headers.get("Sec-WebSocket-Key")
        if not owner.ws_enabled or not key or "websocket" not in (self.headers.get("Upgrade") or "").lower():
            return self._reply(404 if not owner.ws_enabled else 400, b"", None)
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        ws = WebSocket(self.connection)
        sid = query.get("clientId") or uuid.uuid4().hex
        with owner._sockets_lock:
            owner.sockets[sid] = ws  # a reconnect with the same clientId replaces the old socket
            owner.socket_flags[sid] = {}
        engine = owner.engine
        try:
            ws.send_text(json.dumps({"type": "status", "data": {
                "status": {"exec_info": {"queue_remaining": engine.queue_remaining()}}, "sid": sid}}))
            if engine.client_id == sid and engine.last_node_id is not None:
                ws.send_text(json.dumps({"type": "executing", "data": {"node": engine.last_node_id}}))
            first = True
            while not ws.closed:
                frame = ws.receive()
                if frame is None:
                    continue
                opcode, payload = frame
                if opcode == 1 and first:
                    try:
                        message = json.loads(payload)
                    except ValueError:
                        message = {}
                    if isinstance(message, dict) and message.get("type") == "feature_flags":
                        owner.socket_flags[sid] = message.get("data") or {}
                        ws.send_text(json.dumps({"type": "feature_flags", "data": SERVER_FEATURES}))
                first = False
        except Closed:
            pass
        finally:
            ws.close()
            with owner._sockets_lock:
                if owner.sockets.get(sid) is ws:
                    del owner.sockets[sid]


class _BadJSON(Exception):
    pass


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data).encode("utf-8")


_ROUTES = {
    ("GET", "/prompt"): _Handler.get_prompt,
    ("POST", "/prompt"): _Handler.post_prompt,
    ("GET", "/queue"): _Handler.get_queue,
    ("POST", "/queue"): _Handler.post_queue,
    ("POST", "/interrupt"): _Handler.post_interrupt,
    ("POST", "/free"): _Handler.post_free,
    ("GET", "/history"): _Handler.get_history,
    ("POST", "/history"): _Handler.post_history,
    ("GET", "/view"): _Handler.get_view,
    ("GET", "/object_info"): _Handler.get_object_info,
    ("GET", "/system_stats"): _Handler.get_system_stats,
    ("GET", "/features"): _Handler.get_features,
    ("GET", "/embeddings"): _Handler.get_embeddings,
    ("GET", "/ws"): _Handler.get_ws,
    ("GET", "/_test/timeline"): _Handler.get_timeline,
    ("GET", "/_test/submissions"): _Handler.get_submissions,
    ("GET", "/_test/clock"): _Handler.get_clock,
}
_PREFIX_ROUTES = {
    "GET": (("/history/", _Handler.get_history), ("/object_info/", _Handler.get_object_info)),
}
