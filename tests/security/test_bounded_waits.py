"""Issue 9, item 4 (what was left): the ComfyUI websocket handshake and each message have a size cap and a
deadline, and the worker's webhook POST goes through the bounded HTTP helper, never holding up a render.

Real servers on 127.0.0.1 that send an endless handshake header, trickle it a byte at a time, trickle a
message once the socket is open, or trickle and flood a webhook's answer.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Iterator

import pytest
import requests

from tests.security.hostile_http import HostileServer, RawServer, upgrade
from tests.helpers import Sandbox
from tests.security.helpers import posix_only
from tests.security.test_network import MiB, PeakRss, publish_batch
from win_side import notify
from win_side.backends import http
from win_side.backends.comfyui import events
from win_side.backends.comfyui.events import EventStream
from win_side.notify import BatchEnded, Notifier


def endless(start: bytes, block: bytes) -> Callable[[RawServer, socket.socket, bytes], None]:
    """A handshake answer that begins with ``start`` and then repeats ``block`` for ever."""
    def talk(server: RawServer, conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n" + start)
        while not server.closing.is_set():
            conn.sendall(block)
            server.sent += len(block)
    return talk


endless_header = endless(b"X-Pad: ", b"a" * 65536)  # one line that never ends
endless_header_lines = endless(b"", b"X-Pad: a\r\n" * 6554)  # lines that never end


def trickled_handshake(server: RawServer, conn: socket.socket, request: bytes) -> None:
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
    server.trickle(conn, 0.2)


def trickled_message(server: RawServer, conn: socket.socket, request: bytes) -> None:
    conn.sendall(upgrade(request))
    conn.sendall(bytes([0x81, 100]))  # a text frame of 100 bytes...
    server.trickle(conn, 0.2, b" ")  # ...one byte every 0.2 s


def lost_reasons(caplog: pytest.LogCaptureFixture, url: str) -> list[str]:
    """Why the log says the socket was lost, or never opened."""
    prefixes = (f"ComfyUI at {url}: websocket lost (", f"ComfyUI at {url}: websocket not opened (")
    return [m[len(p):].split("); polling")[0] for m in (r.getMessage() for r in caplog.records)
            for p in prefixes if m.startswith(p)]


@pytest.fixture
def quick_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "HANDSHAKE_SECONDS", 1.0)
    monkeypatch.setattr(events, "MESSAGE_SECONDS", 1.0)


def run_stream(server: RawServer, seconds: float, connections: int = 2) -> float:
    """Start an EventStream on ``server`` until it connected ``connections`` times; how long closing took."""
    stream = EventStream(server.url, "client")
    try:
        stream.start()
        deadline = time.monotonic() + seconds
        while server.connections < connections and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        began = time.monotonic()
        stream.close()
        closed = time.monotonic() - began
        server.close()
    return closed


@pytest.mark.parametrize("talk", [endless_header, endless_header_lines], ids=["one-line", "many-lines"])
def test_an_endless_handshake_header_is_refused_at_64_kib(caplog: pytest.LogCaptureFixture, talk: Callable) -> None:
    server = RawServer(talk)
    with PeakRss() as rss, caplog.at_level("INFO", logger="renderloop.comfyui"):
        run_stream(server, 10)
    assert server.connections >= 2  # dropped, then tried again on the backoff
    assert rss.grew < 50 * MiB
    assert "the websocket handshake answer is longer than renderloop's limit of 64 KiB; refused" in lost_reasons(
        caplog, server.url)


def test_a_trickled_handshake_is_given_up_at_its_deadline(caplog: pytest.LogCaptureFixture,
                                                          quick_limits: None) -> None:
    server = RawServer(trickled_handshake)
    began = time.monotonic()
    with caplog.at_level("INFO", logger="renderloop.comfyui"):
        closed = run_stream(server, 10)
    assert server.connections >= 2 and time.monotonic() - began < 6  # not one byte every 0.2 s for ever
    assert closed < 2.5
    assert "the websocket handshake answer took more than 1 s; given up" in lost_reasons(caplog, server.url)


def test_a_trickled_message_drops_the_socket_at_its_deadline(caplog: pytest.LogCaptureFixture,
                                                            quick_limits: None) -> None:
    server = RawServer(trickled_message)
    began = time.monotonic()
    with caplog.at_level("INFO", logger="renderloop.comfyui"):
        run_stream(server, 10)
    assert server.connections >= 2 and time.monotonic() - began < 6  # 100 bytes at 0.2 s would be 20 s
    assert "a websocket message took more than 1 s; given up" in lost_reasons(caplog, server.url)


def test_the_default_limits_are_what_the_docs_say() -> None:
    assert (events.HANDSHAKE_SECONDS, events.MAX_HANDSHAKE_BYTES, events.MESSAGE_SECONDS) == (10.0, 65536, 30.0)
    assert (notify.TIMEOUT, notify.MAX_ANSWER) == (10.0, 65536)


# -- the webhook --------------------------------------------------------------------------------


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer(drip_seconds=0.2) as server:
        yield server


def test_a_webhook_trickling_its_answer_is_given_up_at_the_whole_request_deadline(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notify, "TIMEOUT", 1.0)
    began = time.monotonic()
    with pytest.raises(http.OutOfTime):
        notify.http_post(hostile.url + "/drip/hook", {"Content-Type": "application/json"}, b"{}")
    assert time.monotonic() - began < 2.0  # one byte every 0.2 s would never end


def test_a_webhook_that_never_answers_is_a_timeout_at_the_deadline(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notify, "TIMEOUT", 1.0)
    began = time.monotonic()
    with pytest.raises(requests.Timeout):  # the deadline's, or the socket's with what was left of it
        notify.http_post(hostile.url + "/silent/hook", {}, b"{}")
    assert time.monotonic() - began < 2.0


def test_a_webhook_answering_3_gb_is_cut_at_64_kib_in_small_memory(hostile: HostileServer) -> None:
    with PeakRss() as rss, pytest.raises(http.TooLarge):
        notify.http_post(hostile.url + "/huge/hook", {}, b"{}")
    assert rss.grew < 50 * MiB
    with pytest.raises(http.TooLarge):
        notify.http_post(hostile.url + "/huge-announced/hook", {}, b"{}")


def test_a_trickling_webhook_never_holds_up_the_renders_that_tell_it(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(notify, "TIMEOUT", 0.5)
    notifier = Notifier(hostile.url + "/drip/s3cr3t", delays=(0.1,), attempts=2).start()
    with caplog.at_level("WARNING", logger="renderloop.worker"):
        began = time.monotonic()
        for index in range(50):  # the worker's progress calls tell() as each batch ends
            notifier.tell(BatchEnded(f"b{index}", 1, 0, 1, "studio-pc"))
        told = time.monotonic() - began
        time.sleep(1.5)
        began = time.monotonic()
        notifier.stop(timeout=2.0)
        stopped = time.monotonic() - began
    assert told < 0.1 and stopped < 2.5
    warned = [r.getMessage() for r in caplog.records]
    assert any(f"notify: could not tell {hostile.url} that b0 ended" in m and "given up after 2 tries" in m
               for m in warned), warned
    assert not any("s3cr3t" in m for m in warned)


@posix_only
def test_a_signal_ends_the_worker_within_a_second_while_its_webhook_trickles(
    sandbox: Sandbox, hostile: HostileServer,
) -> None:
    publish_batch(sandbox)
    worker = subprocess.Popen(
        [sys.executable, "-m", "renderloop", "worker", "--repo", str(sandbox.worker), "--backend", "placeholder",
         "--name", "studio-pc", "--notify", hostile.url + "/drip/s3cr3t"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(line.startswith("POST /drip") for line, _ in hostile.seen):
            time.sleep(0.05)
        assert hostile.seen, "the worker never told the webhook"
        time.sleep(0.5)  # well inside the trickling answer
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    assert took < 1.5, f"exited {took:.2f} s after SIGTERM"
    assert worker.returncode == 0, err
    assert (sandbox.worker / "renders/hero/fine.png").exists() and "s3cr3t" not in out + err
