"""Issue 9, item 4 (the network): every answer from a backend is capped, every request has a deadline,
and a stop ends any wait at once.

Real HTTP and websocket servers on 127.0.0.1: answers of 3 GB made lazily
(never allocated), servers that trickle a byte at a time or never answer.
Each case checks the exact failure, that memory stayed small, and that the
worker goes on.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import psutil
import pytest
import requests

from studio.config import builtin_config
from studio.limits import MAX_ANSWER_BYTES, MAX_PNG_BYTES
from studio.record import RenderRecord
from studio.spec import Spec
from tests.comfyui_server import ComfyServer
from tests.fal_server import FalServer, FalState
from tests.helpers import Sandbox, git
from tests.security.helpers import GOOD, posix_only
from tests.security.hostile_http import THREE_GB, HostileServer, RawServer, drip, upgrade, zeros
from win_side.backends import http, make_backend
from win_side.backends.base import BackendOptions, Cancelled, RenderFailed, RenderRequest
from win_side.backends.comfyui import ComfyUIBackend
from win_side.backends.comfyui.client import BadAnswer, ComfyClient, OutOfTime, ServerDown, Stopping
from win_side.backends.comfyui.events import EventStream
from win_side.backends.fal import FalClient, FalLane, JobFiles, Retry

CONFIG = builtin_config()
ZIT_FILES = ["z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors", "ae.safetensors"]
MiB = 1024 * 1024
KEY = "fal-secret-key-0123456789"


class PeakRss:
    """The peak resident memory of a process while the block runs (sampled every 5 ms), above its start."""

    def __init__(self, pid: Optional[int] = None) -> None:
        self.process = psutil.Process(pid or os.getpid())
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.005)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def grew(self) -> int:
        return self.peak - self.start


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer(drip_seconds=0.25) as server:
        yield server


def session() -> requests.Session:
    made = requests.Session()
    made.trust_env = False
    return made


# -- the one helper ---------------------------------------------------------------------------


def test_a_3_gb_answer_without_a_length_is_cut_at_the_cap_in_small_memory(hostile: HostileServer) -> None:
    with PeakRss() as rss, pytest.raises(http.TooLarge) as caught:
        http.fetch(session(), "GET", hostile.url + "/huge", limit=MAX_ANSWER_BYTES, seconds=30)
    assert str(caught.value) == "more than renderloop's limit of 16 MiB"
    assert rss.grew < 100 * MiB


def test_a_3_gb_answer_announced_is_refused_before_its_body_is_read(hostile: HostileServer) -> None:
    with PeakRss() as rss, pytest.raises(http.TooLarge) as caught:
        http.fetch(session(), "GET", hostile.url + "/huge-announced", limit=MAX_PNG_BYTES, seconds=30)
    assert str(caught.value) == f"more than renderloop's limit of 512 MiB ({THREE_GB} bytes announced)"
    assert rss.grew < 50 * MiB


def test_an_answer_exactly_at_the_cap_is_read_whole(hostile: HostileServer) -> None:
    answer = http.fetch(session(), "GET", hostile.url + "/bytes/4096", limit=4096, seconds=10)
    assert answer.status_code == 200 and answer.content == b"x" * 4096


def test_one_byte_over_the_cap_is_refused(hostile: HostileServer) -> None:
    with pytest.raises(http.TooLarge, match=r"^more than renderloop's limit of 4 KiB \(4097 bytes announced\)$"):
        http.fetch(session(), "GET", hostile.url + "/bytes/4097", limit=4096, seconds=10)


def test_a_trickle_is_cut_at_the_whole_request_deadline(hostile: HostileServer) -> None:
    started = time.monotonic()
    with pytest.raises(http.OutOfTime) as caught:
        http.fetch(session(), "GET", hostile.url + "/drip", limit=MAX_ANSWER_BYTES, seconds=1.5)
    took = time.monotonic() - started
    assert 1.5 <= took < 2.0  # a per-read timeout never fires: a byte comes every 0.25 s
    assert str(caught.value).startswith("not complete within 1.5 s (")


def test_a_silent_server_is_a_timeout_at_the_whole_request_deadline(hostile: HostileServer) -> None:
    """No answer at all is what it always was (requests' Timeout: the server is down, try later)."""
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        http.fetch(session(), "GET", hostile.url + "/silent", limit=1000, seconds=1.0)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("path", ["/drip", "/silent"])
def test_a_stop_ends_the_wait_within_a_tenth_of_a_second(hostile: HostileServer, path: str) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(http.Stopped):
        http.fetch(session(), "GET", hostile.url + path, limit=1000, seconds=60, stop=(None, stop))
    assert 0.5 <= time.monotonic() - started < 0.65


def test_a_stop_already_set_sends_nothing(hostile: HostileServer) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(http.Stopped):
        http.fetch(session(), "GET", hostile.url + "/bytes/1", limit=10, seconds=5, stop=(stop,))
    assert hostile.seen == []


def test_compression_is_not_asked_for_and_refused_when_sent(hostile: HostileServer) -> None:
    with pytest.raises(http.Unusable, match=r"^the answer is compressed \(gzip\), which renderloop did not ask for$"):
        http.fetch(session(), "GET", hostile.url + "/gzip", limit=1000, seconds=5)
    assert hostile.seen[0][1]["Accept-Encoding"] == "identity"


# -- ComfyUI's client: every endpoint --------------------------------------------------------


CALLS = {
    "GET /history": lambda c: c.history("abc"),
    "GET /queue": lambda c: c.queue(),
    "GET /object_info/KSampler": lambda c: c.object_info("KSampler"),
    "POST /prompt": lambda c: c.submit({}, "client", "abc", {}),
    "GET /view": lambda c: c.view({"filename": "a.png"}),
}


@pytest.mark.parametrize("what", list(CALLS))
def test_a_3_gb_comfyui_answer_is_a_bad_answer_naming_the_cap(hostile: HostileServer, what: str) -> None:
    client = ComfyClient(hostile.url + "/huge")
    cap = "512 MiB" if what == "GET /view" else "16 MiB"
    with PeakRss() as rss, pytest.raises(BadAnswer) as caught:
        CALLS[what](client)
    path = what.split(" ", 1)[1].split("/")[1]
    assert str(caught.value).startswith(f"ComfyUI at {hostile.url}/huge answered {what.split()[0]} /{path}")
    assert str(caught.value).endswith(f"with more than renderloop's limit of {cap}; refused")
    assert rss.grew < (600 if what == "GET /view" else 100) * MiB


@pytest.mark.parametrize("what", list(CALLS))
def test_a_trickling_comfyui_answer_runs_out_of_time(hostile: HostileServer, what: str) -> None:
    client = ComfyClient(hostile.url + "/drip", read_timeout=1.0, view_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(OutOfTime) as caught:
        CALLS[what](client)
    assert time.monotonic() - started < 1.5
    assert f"ComfyUI at {hostile.url}/drip did not finish answering {what.split()[0]} /" in str(caught.value)
    assert ": not complete within 1 s (" in str(caught.value)


def test_the_workers_stop_ends_a_comfyui_request_as_stopping(hostile: HostileServer) -> None:
    stop = threading.Event()
    client = ComfyClient(hostile.url + "/silent", stop=stop)
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Stopping) as caught:
        client.history("abc")
    assert time.monotonic() - started < 0.45
    assert isinstance(caught.value, ServerDown)  # the lane treats it as a server it cannot use now
    assert str(caught.value) == f"ComfyUI at {hostile.url}/silent: GET /history/abc given up, the worker is stopping"


def test_a_withdrawal_while_stopping_takes_at_most_a_third_of_a_second(hostile: HostileServer) -> None:
    stop = threading.Event()
    stop.set()
    client = ComfyClient(hostile.url + "/silent", stop=stop)
    started = time.monotonic()
    with pytest.raises(ServerDown):
        client.delete(["abc"])
    assert time.monotonic() - started < 0.5
    assert hostile.seen and hostile.seen[0][0] == "POST /silent/queue"  # still sent


# -- ComfyUI's lane: the image fails, the lane goes on ---------------------------------------


def request(slug: str) -> RenderRequest:
    settings = CONFIG.models["z-image-turbo"]
    spec = Spec(model="z-image-turbo", prompt=f"a harbor, {slug}", seed=1, width=512, height=384,
                steps=settings.steps, cfg=settings.cfg, sampler=settings.sampler, scheduler=settings.scheduler)
    return RenderRequest("b1", slug, spec, spec.hash, settings)


def comfy_backend(tmp_path: Path, url: str, timeout: Optional[float] = None) -> ComfyUIBackend:
    options = BackendOptions(config=CONFIG, studio_root=tmp_path, state_dir=tmp_path / "state", window=1,
                             comfyui_urls=[url], timeout_seconds=timeout)
    backend = make_backend("comfyui", options)
    assert isinstance(backend, ComfyUIBackend)
    return backend


@pytest.fixture
def comfy(tmp_path: Path) -> Iterator[ComfyServer]:
    with ComfyServer(tmp_path / "comfyui", render_seconds=0.05) as server:
        yield server


def test_a_3_gb_image_fails_that_image_only_in_small_memory(tmp_path: Path, comfy: ComfyServer) -> None:
    backend = comfy_backend(tmp_path, comfy.url)
    lane = backend.lanes[0]
    try:
        comfy.stream("/view", zeros(), length=THREE_GB, content_type="image/png")
        with PeakRss() as rss, pytest.raises(RenderFailed) as caught:
            lane.render(request("huge"), threading.Event())
        assert caught.value.kind == "backend-error"
        assert caught.value.message == (f"ComfyUI at {comfy.url} answered GET /view with more than renderloop's "
                                        f"limit of 512 MiB ({THREE_GB} bytes announced); refused")
        assert rss.grew < 50 * MiB
        assert lane.render(request("next"), threading.Event()).png.startswith(b"\x89PNG")  # the lane goes on
    finally:
        backend.close()


def test_a_3_gb_image_without_a_length_is_cut_at_512_mib(tmp_path: Path, comfy: ComfyServer) -> None:
    backend = comfy_backend(tmp_path, comfy.url)
    try:
        comfy.stream("/view", zeros(), content_type="image/png")
        with PeakRss() as rss, pytest.raises(RenderFailed) as caught:
            backend.lanes[0].render(request("huge"), threading.Event())
        assert caught.value.message == (f"ComfyUI at {comfy.url} answered GET /view with more than renderloop's "
                                        "limit of 512 MiB; refused")
        assert rss.grew < MAX_PNG_BYTES + 128 * MiB  # never the 3 GB (6.4 GB before)
    finally:
        backend.close()


def test_a_3_gb_history_fails_the_image_as_a_backend_error(tmp_path: Path, comfy: ComfyServer) -> None:
    backend = comfy_backend(tmp_path, comfy.url)
    try:
        comfy.stream("/history", zeros(), times=10)
        with PeakRss() as rss, pytest.raises(RenderFailed) as caught:
            backend.lanes[0].render(request("huge"), threading.Event())
        assert caught.value.kind == "backend-error"
        assert caught.value.message.startswith(f"ComfyUI at {comfy.url} answered GET /history/")
        assert caught.value.message.endswith("with more than renderloop's limit of 16 MiB; refused")
        assert rss.grew < 100 * MiB
    finally:
        backend.close()


@pytest.mark.parametrize("path", ["/view", "/history", "/prompt"])
def test_a_trickling_server_fails_the_render_as_timeout_at_the_deadline(
    tmp_path: Path, comfy: ComfyServer, path: str,
) -> None:
    """One byte a second for longer than the request's deadline: a timeout record, in deadline + a little."""
    backend = comfy_backend(tmp_path, comfy.url)
    lane = backend.lanes[0]
    lane.client.read_timeout = lane.client.view_timeout = 2.0
    try:
        comfy.stream(path, drip(1.0), times=10)
        started = time.monotonic()
        with pytest.raises(RenderFailed) as caught:
            lane.render(request("slow"), threading.Event())
        took = time.monotonic() - started
        assert caught.value.kind == "timeout"
        method = "POST" if path == "/prompt" else "GET"
        assert f"ComfyUI at {comfy.url} did not finish answering {method} {path}" in caught.value.message
        assert ": not complete within 2 s (" in caught.value.message
        assert took < 2.0 + 1.5
    finally:
        backend.close()


def test_the_render_deadline_holds_while_the_server_trickles(tmp_path: Path, comfy: ComfyServer) -> None:
    backend = comfy_backend(tmp_path, comfy.url, timeout=2.0)
    lane = backend.lanes[0]
    lane.client.read_timeout = 1.0
    comfy.hang_next()  # the prompt never finishes
    try:
        started = time.monotonic()
        with pytest.raises(RenderFailed) as caught:
            lane.render(request("slow"), threading.Event())
        assert caught.value.kind == "timeout"
        assert caught.value.message == f"no image from ComfyUI at {comfy.url} after 2 s"
        assert time.monotonic() - started < 2.0 + 1.5
    finally:
        backend.close()


def test_a_preflight_against_a_trickling_server_is_not_a_crash(tmp_path: Path, comfy: ComfyServer) -> None:
    backend = comfy_backend(tmp_path, comfy.url)
    backend.lanes[0].client.read_timeout = 1.0
    comfy.stream("/object_info", drip(0.2), times=50)
    try:
        started = time.monotonic()
        assert backend.preflight([request("a")]) == {}  # not answering: checked when it renders
        assert time.monotonic() - started < 2.5
    finally:
        backend.close()


def test_the_workers_stop_ends_a_preflight_at_once(tmp_path: Path, comfy: ComfyServer) -> None:
    stop = threading.Event()
    options = BackendOptions(config=CONFIG, studio_root=tmp_path, state_dir=tmp_path / "state", window=1,
                             comfyui_urls=[comfy.url], stop=stop)
    backend = make_backend("comfyui", options)
    comfy.hang_http()
    try:
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        assert backend.preflight([request("a")]) == {}
        assert time.monotonic() - started < 0.6
    finally:
        comfy.hang_http(False)
        backend.close()


# -- the websocket ----------------------------------------------------------------------------


class FrameServer(RawServer):
    """A websocket endpoint that, after the handshake, sends one frame header announcing ``length`` bytes
    and then trickles zeros."""

    def __init__(self, length: int, fragments: int = 0) -> None:
        self.length = length
        self.fragments = fragments
        super().__init__(FrameServer._frames)

    def _frames(self, conn: socket.socket, request: bytes) -> None:
        conn.sendall(upgrade(request))
        if self.fragments:
            block = b"\0" * (1024 * 1024)
            conn.sendall(bytes([0x01, 127]) + (len(block)).to_bytes(8, "big") + block)  # text, not final
            for _ in range(self.fragments):
                conn.sendall(bytes([0x00, 127]) + (len(block)).to_bytes(8, "big") + block)
        else:
            conn.sendall(bytes([0x82, 127]) + self.length.to_bytes(8, "big"))
            while not self.closing.is_set():
                conn.sendall(b"\0" * 65536)


@pytest.mark.parametrize("length,fragments,said", [
    (THREE_GB, 0, f"a websocket frame of {THREE_GB} bytes, more than renderloop's limit of 16 MiB; refused"),
    (0, 40, "a websocket message of more than renderloop's limit of 16 MiB; refused"),
])
def test_a_huge_websocket_message_drops_the_socket_not_the_memory(
    caplog: pytest.LogCaptureFixture, length: int, fragments: int, said: str,
) -> None:
    server = FrameServer(length, fragments)
    stream = EventStream(server.url, "client")
    try:
        with PeakRss() as rss, caplog.at_level("INFO", logger="renderloop.comfyui"):
            stream.start()
            deadline = time.monotonic() + 10
            while server.connections < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert server.connections >= 2  # dropped, then opened again
        assert rss.grew < 100 * MiB
        assert f"ComfyUI at {server.url}: websocket lost ({said}); polling /history until it is back" in [
            r.getMessage() for r in caplog.records]
    finally:
        stream.close()
        server.close()


# -- fal ----------------------------------------------------------------------------------------


def fal_request(slug: str = "a") -> RenderRequest:
    model = next(name for name, m in CONFIG.models.items() if m.fal is not None)
    settings = CONFIG.models[model]
    spec = Spec(model=model, prompt=f"a harbor, {slug}", seed=1, width=512, height=512, steps=settings.steps,
                cfg=settings.cfg, sampler=settings.sampler, scheduler=settings.scheduler)
    return RenderRequest("b1", slug, spec, spec.hash, settings)


def fal_client(url: str, stop: Optional[threading.Event] = None, seconds: float = 120.0) -> FalClient:
    return FalClient(url, KEY, Retry(base=0.01, cap=0.05, attempts=2), stop=stop, seconds=seconds)


@pytest.mark.parametrize("path,cap", [("/huge", "16 MiB"), ("/huge-announced", "16 MiB")])
def test_a_3_gb_fal_answer_fails_the_image_naming_the_cap(hostile: HostileServer, path: str, cap: str) -> None:
    client = fal_client(hostile.url)
    with PeakRss() as rss, pytest.raises(RenderFailed) as caught:
        client.call("GET", hostile.url + path, "b1/a: fal request 1", threading.Event())
    assert caught.value.kind == "backend-error"
    assert caught.value.message.startswith(f"b1/a: fal request 1: {hostile.url} answered with more than "
                                           f"renderloop's limit of {cap}")
    assert rss.grew < 100 * MiB


def test_a_3_gb_fal_image_is_refused_at_512_mib_and_gets_no_key(tmp_path: Path, hostile: HostileServer) -> None:
    lane = FalLane(fal_client("http://127.0.0.1:9"), JobFiles(tmp_path / "jobs"), window=1)
    with PeakRss() as rss, pytest.raises(RenderFailed) as caught:
        lane._download(hostile.url + "/huge-announced/x.png", "b1/a: downloading the image", threading.Event())
    assert caught.value.message == (f"b1/a: downloading the image: {hostile.url} answered with more than "
                                    f"renderloop's limit of 512 MiB ({THREE_GB} bytes announced); refused")
    assert rss.grew < 50 * MiB
    assert "Authorization" not in hostile.seen[0][1]  # the key goes to the queue host only
    assert KEY not in json.dumps(hostile.seen)


def test_a_trickling_fal_status_fails_the_image_as_timeout(hostile: HostileServer) -> None:
    client = fal_client(hostile.url, seconds=1.0)
    started = time.monotonic()
    with pytest.raises(RenderFailed) as caught:
        client.call("GET", hostile.url + "/drip/status", "b1/a: fal request 1", threading.Event())
    assert time.monotonic() - started < 1.5
    assert caught.value.kind == "timeout"
    assert caught.value.message.startswith(f"b1/a: fal request 1: {hostile.url} answered too slowly: "
                                           "not complete within 1 s (")


@pytest.mark.parametrize("which", ["render", "worker"])
def test_a_stop_ends_a_fal_wait_at_once(hostile: HostileServer, which: str) -> None:
    render, worker = threading.Event(), threading.Event()
    client = fal_client(hostile.url, stop=worker)
    threading.Timer(0.3, (render if which == "render" else worker).set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        client.call("GET", hostile.url + "/silent", "b1/a: fal request 1", render)
    assert time.monotonic() - started < 0.45


def test_the_fal_key_goes_only_to_the_queue_host(tmp_path: Path, hostile: HostileServer) -> None:
    """A result whose image URL points at another host: the download carries no key."""
    fal = FalServer(FalState(key=KEY, render_seconds=0.05)).start()
    try:
        lane = FalLane(fal_client(fal.url), JobFiles(tmp_path / "jobs"), window=1, poll=0.05)
        assert lane.render(fal_request(), threading.Event()).png.startswith(b"\x89PNG")  # the key was accepted
        lane._download(hostile.url + "/bytes/10", "b1/a: downloading the image", threading.Event())
    finally:
        fal.stop()
    assert [seen for seen, _ in hostile.seen] == ["GET /bytes/10"]
    assert "Authorization" not in hostile.seen[0][1] and KEY not in json.dumps(hostile.seen)


# -- the worker as a process ------------------------------------------------------------------


def publish_batch(sandbox: Sandbox, text: str = GOOD, name: str = "hero") -> None:
    sandbox.write(f"batches/{name}.yaml", text)
    git(sandbox.mac, "add", f"batches/{name}.yaml")
    git(sandbox.mac, "commit", "-q", "-m", f"batch {name}")
    git(sandbox.mac, "push", "-q")


TWO = GOOD + "  - slug: second\n    prompt: another fine image\n"


def start_worker(sandbox: Sandbox, url: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "renderloop", "worker", "--repo", str(sandbox.worker), "--backend", "comfyui",
         "--comfyui", url, "--once", "--window", "1", "--name", "studio-pc", "--log-file", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def test_the_worker_records_a_3_gb_answer_as_a_backend_error_and_goes_on(sandbox: Sandbox, tmp_path: Path) -> None:
    publish_batch(sandbox, TWO)
    with ComfyServer(tmp_path / "comfyui", models=ZIT_FILES, render_seconds=0.05) as server:
        server.stream("/view", zeros(), content_type="image/png")  # the first image only
        worker = start_worker(sandbox, server.url, tmp_path / "worker.log")
        with PeakRss(worker.pid) as rss:
            out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, out + err
    print(f"worker peak RSS with a 3 GB /view: {rss.peak / MiB:.0f} MiB")
    assert rss.peak < MAX_PNG_BYTES + 200 * MiB  # 6.4 GB before
    records = {slug: RenderRecord.model_validate_json((sandbox.worker / f"renders/hero/{slug}.json").read_bytes())
               for slug in ("fine", "second")}
    failed = [r for r in records.values() if r.status == "failed"]
    done = [r for r in records.values() if r.status == "done"]
    assert len(failed) == 1 and len(done) == 1  # the worker went on
    assert failed[0].error is not None and failed[0].error.kind == "backend-error"
    assert failed[0].error.message == (f"ComfyUI at {server.url} answered GET /view with more than renderloop's "
                                       "limit of 512 MiB; refused")
    assert git(sandbox.worker, "rev-parse", "HEAD").stdout == git(sandbox.remote, "rev-parse", "main").stdout


def test_the_worker_keeps_small_with_a_3_gb_history(sandbox: Sandbox, tmp_path: Path) -> None:
    publish_batch(sandbox)
    with ComfyServer(tmp_path / "comfyui", models=ZIT_FILES, render_seconds=0.05) as server:
        server.stream("/history", zeros(), times=100)
        worker = start_worker(sandbox, server.url, tmp_path / "worker.log")
        with PeakRss(worker.pid) as rss:
            out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, out + err
    print(f"worker peak RSS with a 3 GB /history: {rss.peak / MiB:.0f} MiB")
    assert rss.peak < 250 * MiB
    record = RenderRecord.model_validate_json((sandbox.worker / "renders/hero/fine.json").read_bytes())
    assert record.status == "failed" and record.error is not None and record.error.kind == "backend-error"
    assert record.error.message.endswith("with more than renderloop's limit of 16 MiB; refused")


@posix_only
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_worker_within_a_second_while_a_server_trickles(
    sandbox: Sandbox, tmp_path: Path, name: str,
) -> None:
    publish_batch(sandbox)
    with ComfyServer(tmp_path / "comfyui", models=ZIT_FILES, render_seconds=0.05) as server:
        server.stream("/", drip(1.0), times=1000)  # every request: one byte a second
        log = tmp_path / "worker.log"
        worker = start_worker(sandbox, server.url, log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not server.requests:  # the first answer the worker waits for
            time.sleep(0.05)
        time.sleep(1.0)  # well inside a trickling answer (each is cut only at the 30 s read timeout)
        sent = time.monotonic()
        worker.send_signal(getattr(signal, name))
        try:
            out, err = worker.communicate(timeout=30)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
        took = time.monotonic() - sent
    print(f"{name} while a server trickles: exited in {took:.2f} s")
    assert took < 1.5, f"exited {took:.2f} s after {name}"
    assert worker.returncode in (0, 1), out + err
    assert "Traceback" not in err
    assert not (sandbox.worker / "renders/hero/fine.png").exists()
