"""One websocket per ComfyUI server, shared by every render of the lane.

A reader thread receives ComfyUI's messages on ``/ws?clientId=`` and hands
each to the :class:`Watch` of its prompt_id.  The done signal is
``executing`` with ``node: null`` for that prompt_id (sent after the
history entry is written; ``execution_success`` comes before it).  When the
socket drops, the stream reconnects with the same clientId and bumps
``epoch``, so that renders check ``/history`` for anything they missed;
while it is down they poll.  Binary frames (previews) are ignored.  A frame,
or a message in fragments, over ``MAX_ANSWER_BYTES`` is refused before its
payload is read: the socket is dropped and opened again.

Every read has a deadline and a cap, however the server trickles its bytes:
the handshake answer must arrive whole within ``HANDSHAKE_SECONDS`` and
``MAX_HANDSHAKE_BYTES``, and each message once it has begun within
``MESSAGE_SECONDS`` (:class:`_Guarded`, the socket websocket-client is given).
"""
from __future__ import annotations

import base64
import json
import logging
import select
import socket
import ssl
import threading
import time
from typing import Any, Optional
from urllib.parse import SplitResult, unquote, urlsplit

import websocket
from websocket._abnf import continuous_frame, frame_buffer

from studio.limits import MAX_ANSWER_BYTES
from studio.machine import public_url
from win_side.backends.http import size_text
from win_side.throttle import Throttle

log = logging.getLogger("renderloop.comfyui")

CONNECT_TIMEOUT = 5.0
PING_EVERY = 10.0  # a socket silent this long is pinged...
DEAD_AFTER = 25.0  # ...and given up when nothing came back for this long
RECONNECT = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
HANDSHAKE_SECONDS = 10.0  # the whole handshake answer, however it trickles
MAX_HANDSHAKE_BYTES = 64 * 1024  # ComfyUI's is a few hundred bytes
MESSAGE_SECONDS = 30.0  # one message (or frame), from its first byte to its last


class Watch:
    """What the socket said about one prompt, and an event that wakes its render."""

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.changed = threading.Event()
        self.done = False  # executing {node: null}: history is written
        self.fraction: Optional[float] = None

    def _poke(self) -> None:
        self.changed.set()


def _basic(parts: SplitResult) -> str:
    """The basic-auth value of the user and password in a URL, as requests makes it from the same URL."""
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode("latin-1", "replace")).decode("ascii")


class EventStream:
    def __init__(self, http_url: str, client_id: str) -> None:
        base = http_url.rstrip("/")
        scheme = "wss" if base.startswith("https://") else "ws"
        parts = urlsplit(base)
        self.url = public_url(base)  # what the log says
        self.ws_url = f"{scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}/ws?clientId={client_id}"
        # a user and password in the server's URL: sent as basic auth, as requests sends them over HTTP
        self._auth = [f"Authorization: {_basic(parts)}"] if parts.username is not None else []
        self._base = base
        self.client_id = client_id
        self.connected = False
        self.epoch = 0  # bumped at every (re)connection
        self._watches: dict[str, Watch] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._ws: Optional[websocket.WebSocket] = None
        self._was_connected = False
        self.problem: Optional[str] = None  # why the last try to open the socket failed

    # ------------------------------------------------------------- watches
    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"comfyui-ws {self.url}", daemon=True)
                self._thread.start()

    def watch(self, prompt_id: str) -> Watch:
        self.start()
        watch = Watch(prompt_id)
        with self._lock:
            self._watches[prompt_id] = watch
        return watch

    def unwatch(self, prompt_id: str) -> None:
        with self._lock:
            self._watches.pop(prompt_id, None)

    def close(self) -> None:
        self._closing.set()
        ws = self._ws
        if ws is not None:
            try:
                ws.abort()
            except Exception:
                pass
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    # ------------------------------------------------------------ messages
    def handle(self, message: Any) -> None:
        """Dispatch one decoded text message to the watch of its prompt."""
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return
        kind, data = message.get("type"), message["data"]
        prompt_id = data.get("prompt_id")
        if kind == "executing" and prompt_id is None:
            return  # sent on reconnect while running: {node} only, nothing to act on
        with self._lock:
            watch = self._watches.get(prompt_id) if isinstance(prompt_id, str) else None
        if watch is None:
            return
        if kind == "executing" and data.get("node") is None:
            watch.done = True
        elif kind == "progress":
            watch.fraction = _fraction(data)
        elif kind not in ("execution_start", "execution_error", "execution_interrupted"):
            return  # those three only wake the render: the history says how it ended
        watch._poke()

    def _poke_all(self) -> None:
        with self._lock:
            watches = list(self._watches.values())
        for watch in watches:
            watch._poke()

    # -------------------------------------------------------------- socket
    def _run(self) -> None:
        reconnect = Throttle(RECONNECT)
        while not self._closing.is_set():
            try:
                ws = self._connect()
            except Exception as exc:  # refused, timed out, handshake answered 404, too long or too slow...
                if str(exc) != self.problem:  # once per reason, not at every try
                    log.info("ComfyUI at %s: websocket not opened (%s); polling /history until it is",
                             self.url, exc)
                    self.problem = str(exc)
                self._set_connected(False, exc)
                reconnect.fail()
                reconnect.wait(self._closing)
                continue
            reconnect.succeed()
            self.problem = None
            bound(ws)
            self._ws = ws
            self._set_connected(True)
            try:
                self._read(ws)
            except Exception as exc:
                self._set_connected(False, exc)
            finally:
                self._ws = None
                try:
                    ws.abort()
                    ws.close(timeout=0)
                except Exception:
                    pass
            self._set_connected(False)

    def _connect(self) -> websocket.WebSocket:
        """The websocket, its handshake answer read within a deadline and a cap."""
        parts = urlsplit(self._base)
        secure = parts.scheme == "https"
        host = parts.hostname or "127.0.0.1"
        raw = socket.create_connection((host, parts.port or (443 if secure else 80)), timeout=CONNECT_TIMEOUT)
        try:
            if secure:
                raw = ssl.create_default_context().wrap_socket(raw, server_hostname=host)
            guarded = _Guarded(raw, HANDSHAKE_SECONDS, MAX_HANDSHAKE_BYTES, "the websocket handshake answer")
            ws = websocket.create_connection(
                self.ws_url, timeout=CONNECT_TIMEOUT, skip_utf8_validation=True, enable_multithread=True,
                socket=guarded, header=self._auth,
            )
        except BaseException:
            raw.close()
            raise
        guarded.limit(None, None, "")  # frames and messages are capped by bound(); each read timed by _read
        return ws

    def _read(self, ws: websocket.WebSocket) -> None:
        guarded = ws.sock
        if guarded is None:  # closed between connecting and reading
            raise ConnectionError("the websocket is closed")
        sock = guarded.raw if isinstance(guarded, _Guarded) else guarded
        heard = time.monotonic()
        pinged = False
        while not self._closing.is_set():
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
            if not pending:
                ready, _, _ = select.select([sock], [], [], 1.0)
                if not ready:
                    silent = time.monotonic() - heard
                    if silent > DEAD_AFTER:
                        raise ConnectionError(f"no answer for {silent:.0f} s")
                    if silent > PING_EVERY and not pinged:
                        ws.ping()
                        pinged = True
                    continue
            if isinstance(guarded, _Guarded):
                guarded.limit(MESSAGE_SECONDS, None, "a websocket message")
            opcode, payload = ws.recv_data(control_frame=True)
            heard, pinged = time.monotonic(), False
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:
                try:
                    self.handle(json.loads(payload))
                except (ValueError, RecursionError):
                    log.debug("ComfyUI at %s sent a text frame that is not JSON: %r", self.url, payload[:80])

    def _set_connected(self, connected: bool, reason: Optional[Exception] = None) -> None:
        changed = connected != self.connected
        self.connected = connected
        if connected:
            self.epoch += 1
            if self._was_connected:
                log.info("ComfyUI at %s: websocket back; checking the history for anything missed", self.url)
            self._was_connected = True
        elif changed and not self._closing.is_set():
            log.info("ComfyUI at %s: websocket lost (%s); polling /history until it is back",
                     self.url, reason or "closed")
        if changed:
            self._poke_all()


class _Guarded:
    """The socket websocket-client reads through: each read within what is left of a deadline and a byte budget.

    Everything else (send, fileno, shutdown, close...) is the real socket's.
    Running out raises :class:`websocket.WebSocketException` naming what was
    read, which drops the connection (it is opened again on the backoff).
    """

    def __init__(self, raw: socket.socket, seconds: Optional[float], budget: Optional[int], what: str) -> None:
        self.raw = raw
        self.deadline: Optional[float] = None
        self.seconds: Optional[float] = None
        self.budget: Optional[int] = None
        self.cap: Optional[int] = None
        self.what = what
        self.limit(seconds, budget, what)

    def limit(self, seconds: Optional[float], budget: Optional[int], what: str) -> None:
        """From now on: at most ``seconds`` and ``budget`` bytes more for ``what`` (None: no limit)."""
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.budget = self.cap = budget
        self.what = what

    def recv(self, bufsize: int) -> bytes:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise websocket.WebSocketException(f"{self.what} took more than {self.seconds:g} s; given up")
            self.raw.settimeout(min(left, CONNECT_TIMEOUT))
        if self.budget is not None:
            bufsize = max(1, min(bufsize, self.budget + 1))
        try:
            data = self.raw.recv(bufsize)
        except socket.timeout:
            if self.deadline is not None and self.deadline <= time.monotonic():
                raise websocket.WebSocketException(f"{self.what} took more than {self.seconds:g} s; given up") from None
            raise
        finally:
            if self.deadline is not None:
                self.raw.settimeout(CONNECT_TIMEOUT)
        if self.budget is not None:
            self.budget -= len(data)
            if self.budget < 0:
                raise websocket.WebSocketException(
                    f"{self.what} is longer than renderloop's limit of {size_text(self.cap or 0)}; refused")
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class _BoundedFrames(frame_buffer):
    """websocket-client's frame reader, refusing a frame over the cap from its header."""

    def recv_length(self) -> None:
        super().recv_length()
        if self.length is not None and self.length > MAX_ANSWER_BYTES:
            raise websocket.WebSocketPayloadException(
                f"a websocket frame of {self.length} bytes, more than renderloop's limit of "
                f"{size_text(MAX_ANSWER_BYTES)}; refused")


class _BoundedMessages(continuous_frame):
    """websocket-client's reassembly of fragments, refusing a message that grows over the cap."""

    def add(self, frame: websocket.ABNF) -> None:
        super().add(frame)
        if self.cont_data and len(self.cont_data[1]) > MAX_ANSWER_BYTES:
            self.cont_data = None
            raise websocket.WebSocketPayloadException(
                f"a websocket message of more than renderloop's limit of {size_text(MAX_ANSWER_BYTES)}; refused")


def bound(ws: websocket.WebSocket) -> None:
    """Cap what ``ws`` reads: each frame, and each message made of fragments."""
    ws.frame_buffer = _BoundedFrames(ws._recv, True)
    ws.cont_frame = _BoundedMessages(False, True)


def _fraction(data: dict) -> Optional[float]:
    try:
        value, maximum = float(data["value"]), float(data["max"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, min(1.0, value / maximum)) if maximum > 0 else None
