"""A hostile HTTP server on 127.0.0.1: answers of gigabytes made lazily, trickles, silence.

Paths (anything after them is ignored, so any API path can be pointed here):

* ``/huge``: 3 GB of zeros, no Content-Length (ends when the connection closes)
* ``/huge-announced``: the same, announcing its 3 GB in Content-Length
* ``/drip``: one byte every ``drip_seconds``, for ever
* ``/silent``: reads the request and never answers
* ``/gzip``: a small JSON body marked ``Content-Encoding: gzip``
* ``/bytes/N``: N bytes, announced

Every request's line and headers are kept (``seen``), to check what was sent
where.  Nothing big is ever held in memory: the same 1 MiB block is written
again and again.
"""
from __future__ import annotations

import gzip
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from tests.comfyui_server.ws import accept_key

THREE_GB = 3 * 1024 ** 3
BLOCK = b"\0" * (1024 * 1024)


def zeros(total: int = THREE_GB) -> Any:
    """A generator of ``total`` zero bytes in 1 MiB blocks (for ComfyServer.stream)."""
    def chunks() -> Any:
        left = total
        while left > 0:
            block = BLOCK if left >= len(BLOCK) else BLOCK[:left]
            left -= len(block)
            yield block
    return chunks


def drip(every: float, byte: bytes = b" ") -> Any:
    """A generator of one byte every ``every`` seconds, for ever."""
    def chunks() -> Any:
        while True:
            yield byte
            time.sleep(every)
    return chunks


class HostileServer:
    def __init__(self, drip_seconds: float = 1.0) -> None:
        self.drip_seconds = drip_seconds
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.closing = threading.Event()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.owner = self  # type: ignore[attr-defined]
        self.server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "HostileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def do_PUT(self) -> None:
        self.do_POST()

    def _answer(self) -> None:
        owner: HostileServer = self.server.owner  # type: ignore[attr-defined]
        owner.seen.append((f"{self.command} {self.path}", dict(self.headers.items())))
        path = self.path.split("?")[0]
        self.close_connection = True
        try:
            if path.startswith("/huge-announced"):
                self._stream(zeros(), length=THREE_GB)
            elif path.startswith("/huge"):
                self._stream(zeros())
            elif path.startswith("/drip"):
                self._stream(drip(owner.drip_seconds), stop=owner.closing)
            elif path.startswith("/silent"):
                owner.closing.wait(120)
            elif path.startswith("/gzip"):
                body = gzip.compress(b'{"queue_running": [], "queue_pending": []}')
                self._head(200, len(body), {"Content-Encoding": "gzip"})
                self.wfile.write(body)
            elif path.startswith("/bytes/"):
                size = int(path.split("/")[2])
                self._head(200, size)
                self.wfile.write(b"x" * size)
            else:
                self._head(404, 0)
        except OSError:  # the client gave up: that is what is tested
            pass

    def _head(self, status: int, length: int | None, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if length is not None:
            self.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()

    def _stream(self, chunks: Any, length: int | None = None, stop: threading.Event | None = None) -> None:
        self._head(200, length)
        for chunk in chunks():
            if stop is not None and stop.is_set():
                return
            self.wfile.write(chunk)
            self.wfile.flush()


def upgrade(request: bytes) -> bytes:
    """The 101 answer to a websocket ``request``, up to the blank line that ends its headers."""
    key = next(line.split(b":", 1)[1].strip().decode() for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key"))
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode())


class RawServer:
    """A TCP server on 127.0.0.1 that reads a request and hands the connection to ``talk``."""

    def __init__(self, talk: Callable[["RawServer", socket.socket, bytes], None]) -> None:
        self.talk = talk
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.sent = 0
        self.closing = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            self.talk(self, conn, request)
        except OSError:
            pass
        finally:
            conn.close()

    def trickle(self, conn: socket.socket, every: float, byte: bytes = b"x") -> None:
        while not self.closing.is_set():
            conn.sendall(byte)
            self.sent += 1
            time.sleep(every)

    def close(self) -> None:
        self.closing.set()
        self.listener.close()
