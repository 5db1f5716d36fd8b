"""A small server-side websocket (RFC 6455): enough for ComfyUI's ``/ws``.

Text and binary frames out, text frames in (``feature_flags``), pings
answered with pongs, close handshake.  Writes from several threads go
through one lock.
"""
from __future__ import annotations

import base64
import hashlib
import select
import socket
import struct
import threading
from typing import Optional

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


class Closed(Exception):
    pass


class WebSocket:
    def __init__(self, sock: socket.socket) -> None:
        # Read straight from the socket: a client sends nothing before the 101
        # answer, so the HTTP handler's buffer holds no frame bytes.
        self.sock = sock
        self.sock.settimeout(10)
        self._lock = threading.Lock()
        self.closed = False

    def send_text(self, text: str) -> None:
        self._send(TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        self._send(BINARY, data)

    def _send(self, opcode: int, payload: bytes) -> None:
        header = bytearray([0x80 | opcode])
        size = len(payload)
        if size < 126:
            header.append(size)
        elif size < 1 << 16:
            header.append(126)
            header += struct.pack(">H", size)
        else:
            header.append(127)
            header += struct.pack(">Q", size)
        with self._lock:
            if self.closed:
                raise Closed()
            try:
                self.sock.sendall(bytes(header) + payload)
            except OSError as exc:
                self.closed = True
                raise Closed() from exc

    def receive(self) -> Optional[tuple[int, bytes]]:
        """The next data frame (opcode, payload); None at a quiet moment; raises Closed."""
        if self.closed:
            raise Closed()
        try:
            ready, _, _ = select.select([self.sock], [], [], 0.5)
        except (OSError, ValueError) as exc:
            raise Closed() from exc
        if not ready:
            return None
        opcode, payload = self._read_frame()
        if opcode == PING:
            self._send(PONG, payload)
            return None
        if opcode == PONG:
            return None
        if opcode == CLOSE:
            try:
                self._send(CLOSE, payload[:2])
            except Closed:
                pass
            self.close()
            raise Closed()
        if opcode == CONTINUATION:
            return None
        return opcode, payload

    def _read_frame(self) -> tuple[int, bytes]:
        first, second = self._exact(2)
        opcode = first & 0x0F
        masked = second & 0x80
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack(">H", self._exact(2))
        elif size == 127:
            (size,) = struct.unpack(">Q", self._exact(8))
        mask = self._exact(4) if masked else b"\0\0\0\0"
        data = bytearray(self._exact(size))
        for i in range(size):
            data[i] ^= mask[i % 4]
        return opcode, bytes(data)

    def _exact(self, size: int) -> bytes:
        chunks = []
        while size:
            try:
                chunk = self.sock.recv(size)
            except (OSError, ValueError) as exc:
                raise Closed() from exc
            if not chunk:
                raise Closed()
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        with self._lock:
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
