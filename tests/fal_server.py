"""A fal test server on 127.0.0.1 that follows fal's queue protocol.

- ``POST /{endpoint}`` with ``Authorization: Key <key>`` queues a request and
  answers ``request_id``, ``status_url``, ``response_url`` and ``cancel_url``,
  built as fal builds them: from the app id (owner/alias) only, so an
  endpoint with a path (``fal-ai/flux/schnell``) does not appear in them.
  A client that rebuilds the URLs from the endpoint gets 404.
- ``GET .../requests/{id}/status`` answers IN_QUEUE, IN_PROGRESS (202) and
  COMPLETED (200) as time passes (``render_seconds`` per request).
- ``GET .../requests/{id}`` answers the result: ``images[0].url`` points at
  ``/files/{id}.png``, a real PNG of the requested size.
- ``PUT .../requests/{id}/cancel`` records a cancellation.

Faults for tests: ``faults[kind]`` is a list of HTTP codes answered before
the real answer (kind: submit, status, result, file); a prompt containing
``REJECT`` is answered 422 on its result, as fal answers invalid input.
Everything the server saw is kept for assertions.
"""
from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

from PIL import Image


@dataclass
class QueuedRequest:
    request_id: str
    app: str  # owner/alias, as in fal's URLs
    endpoint: str
    payload: dict[str, Any]
    submitted: float
    polls: int = 0
    cancelled: bool = False


@dataclass
class FalState:
    key: str
    render_seconds: float = 0.2
    requests: dict[str, QueuedRequest] = field(default_factory=dict)
    submissions: list[QueuedRequest] = field(default_factory=list)
    faults: dict[str, list[int]] = field(default_factory=dict)
    seen: list[tuple[str, str, Optional[str]]] = field(default_factory=list)  # method, path, Authorization
    cancels: list[str] = field(default_factory=list)
    bad_image: bool = False  # answer garbage instead of a PNG
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault(self, kind: str) -> Optional[int]:
        with self.lock:
            queue = self.faults.get(kind)
            return queue.pop(0) if queue else None


_REQUEST = re.compile(r"^/(?P<app>[^/]+/[^/]+)/requests/(?P<id>[0-9a-f-]+)(?P<rest>/status|/cancel)?$")
_FILE = re.compile(r"^/files/(?P<id>[0-9a-f-]+)\.png$")


class FalHandler(BaseHTTPRequestHandler):
    server: "FalServer"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def state(self) -> FalState:
        return self.server.state

    def _record(self) -> None:
        with self.state.lock:
            self.state.seen.append((self.command, self.path, self.headers.get("Authorization")))

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        if code == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(raw)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Key {self.state.key}":
            self._send(401, {"detail": "Invalid API key"})
            return False
        return True

    def _faulted(self, kind: str) -> bool:
        code = self.state.fault(kind)
        if code is None:
            return False
        self._send(code, {"detail": f"injected {code}"})
        return True

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._record()
        if not self._authorized() or self._faulted("submit"):
            return
        endpoint = self.path.strip("/")
        parts = endpoint.split("/")
        if len(parts) < 2:
            self._send(404, {"detail": "Application not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        request_id = str(uuid.uuid4())
        app = "/".join(parts[:2])
        queued = QueuedRequest(request_id, app, endpoint, payload, time.monotonic())
        with self.state.lock:
            self.state.requests[request_id] = queued
            self.state.submissions.append(queued)
        base = f"{self.server.url}/{app}/requests/{request_id}"
        self._send(200, {
            "request_id": request_id,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
            "queue_position": 0,
            "status": "IN_QUEUE",
        })

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        match = _FILE.match(self.path)
        if match:
            self._file(match.group("id"))
            return
        if not self._authorized():
            return
        queued, rest = self._find()
        if queued is None:
            return
        if rest == "/status":
            if not self._faulted("status"):
                self._status(queued)
        elif not self._faulted("result"):
            self._result(queued)

    def do_PUT(self) -> None:  # noqa: N802
        self._record()
        if not self._authorized():
            return
        queued, rest = self._find()
        if queued is None or rest != "/cancel":
            return
        queued.cancelled = True
        with self.state.lock:
            self.state.cancels.append(queued.request_id)
        self._send(202, {"status": "CANCELLATION_REQUESTED"})

    def _find(self) -> tuple[Optional[QueuedRequest], str]:
        match = _REQUEST.match(self.path.split("?")[0])
        queued = self.state.requests.get(match.group("id")) if match else None
        if match is None or queued is None or queued.app != match.group("app"):
            self._send(404, {"detail": "Request not found"})
            return None, ""
        return queued, match.group("rest") or ""

    def _phase(self, queued: QueuedRequest) -> str:
        elapsed = time.monotonic() - queued.submitted
        if elapsed >= self.state.render_seconds:
            return "COMPLETED"
        return "IN_QUEUE" if queued.polls < 1 else "IN_PROGRESS"

    def _status(self, queued: QueuedRequest) -> None:
        phase = self._phase(queued)
        queued.polls += 1
        base = f"{self.server.url}/{queued.app}/requests/{queued.request_id}"
        body: dict[str, Any] = {"status": phase, "request_id": queued.request_id, "response_url": base}
        if phase == "IN_QUEUE":
            body["queue_position"] = 0
        self._send(200 if phase == "COMPLETED" else 202, body)

    def _result(self, queued: QueuedRequest) -> None:
        if self._phase(queued) != "COMPLETED":
            self._send(400, {"detail": "Request is still in progress"})
            return
        if "REJECT" in str(queued.payload.get("prompt", "")):
            self._send(422, {"detail": [{"loc": ["body", "prompt"], "msg": "prompt rejected", "type": "value_error"}]})
            return
        size = queued.payload.get("image_size") or {"width": 1024, "height": 768}
        self._send(200, {
            "images": [{
                "url": f"{self.server.url}/files/{queued.request_id}.png",
                "width": size["width"], "height": size["height"], "content_type": "image/png",
            }],
            "seed": queued.payload.get("seed"),
            "prompt": queued.payload.get("prompt"),
            "timings": {"inference": self.state.render_seconds},
            "has_nsfw_concepts": [False],
        })

    def _file(self, request_id: str) -> None:
        queued = self.state.requests.get(request_id)
        if queued is None:
            self._send(404, {"detail": "File not found"})
            return
        if self._faulted("file"):
            return
        if self.state.bad_image:
            self._send(200, b"<html>not an image</html>", "text/html")
            return
        size = queued.payload.get("image_size") or {"width": 1024, "height": 768}
        self._send(200, png_bytes(size["width"], size["height"], queued.payload.get("seed", 0)), "image/png")


def png_bytes(width: int, height: int, seed: int) -> bytes:
    shade = int(seed) % 200 + 30
    image = Image.new("RGB", (width, height), (shade, 90, 255 - shade))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class FalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: FalState) -> None:
        super().__init__(("127.0.0.1", 0), FalHandler)
        self.state = state
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "FalServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


if __name__ == "__main__":  # a server for trying the backend by hand: python -m tests.fal_server KEY
    import sys

    server = FalServer(FalState(key=sys.argv[1] if len(sys.argv) > 1 else "test-key")).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
