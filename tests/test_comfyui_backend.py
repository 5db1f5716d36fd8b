"""The ComfyUI backend against the test server: rendering, pipelining, failures, restarts, cancel."""
from __future__ import annotations

import io
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import requests
from PIL import Image

from studio.config import ComfyUIModel, ModelSettings, StudioConfig, builtin_config
from studio.machine import MachineSettings
from studio.spec import Spec
from tests.comfyui_server import ComfyServer
from tests.comfyui_server.fixtures import comfy, wait_for
from win_side.backends import make_backend
from win_side.backends.base import (
    BackendOptions,
    BackendUnavailable,
    Cancelled,
    RenderFailed,
    RenderRequest,
    RenderResult,
)
from win_side.backends.comfyui import ComfyLane, ComfyUIBackend

__all__ = ["comfy"]
CONFIG = builtin_config()


def request(slug: str, model: str = "z-image-turbo", batch: str = "b1", config: StudioConfig = CONFIG,
            **fields: Any) -> RenderRequest:
    settings = config.models[model]
    values: dict[str, Any] = dict(model=model, prompt=f"a harbor at dawn, {slug}", seed=1234, width=512,
                                  height=384, steps=settings.steps, cfg=settings.cfg, sampler=settings.sampler,
                                  scheduler=settings.scheduler)
    values.update(fields)
    spec = Spec(**values)
    return RenderRequest(batch, slug, spec, spec.hash, settings)


def make(tmp_path: Path, *urls: str, window: int = 2, config: StudioConfig = CONFIG,
         timeout: Optional[float] = None) -> ComfyUIBackend:
    options = BackendOptions(config=config, studio_root=tmp_path, state_dir=tmp_path / "state",
                             window=window, comfyui_urls=list(urls), timeout_seconds=timeout)
    backend = make_backend("comfyui", options)
    assert isinstance(backend, ComfyUIBackend)
    return backend


@pytest.fixture
def backend(tmp_path: Path, comfy: ComfyServer) -> Iterator[ComfyUIBackend]:
    made = make(tmp_path / "studio", comfy.url)
    yield made
    made.close()


def lane_of(backend: ComfyUIBackend) -> ComfyLane:
    return backend.lanes[0]


def in_thread(lane: ComfyLane, req: RenderRequest, cancel: Optional[threading.Event] = None) -> dict:
    """Render in a thread; the returned dict gets 'result' or 'error' when it ends."""
    box: dict = {}

    def go() -> None:
        try:
            box["result"] = lane.render(req, cancel or threading.Event())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    box["thread"] = threading.Thread(target=go, daemon=True)
    box["thread"].start()
    return box


def finished(box: dict, timeout: float = 20.0) -> Any:
    box["thread"].join(timeout)
    assert not box["thread"].is_alive(), "render did not finish"
    if "error" in box:
        raise box["error"]
    return box["result"]


# ------------------------------------------------------------------ rendering
def test_render_returns_comfyuis_png_with_the_spec_embedded(backend: ComfyUIBackend, comfy: ComfyServer) -> None:
    req = request("harbor-at-dawn")
    fractions: list[float] = []
    result = lane_of(backend).render(req, threading.Event(), fractions.append)
    files = comfy.output_files()
    assert [f.relative_to(comfy.root / "output").as_posix() for f in files] == \
        [f"renderloop/b1/harbor-at-dawn-{req.spec_hash[7:19]}_00001_.png"]
    assert result.png == files[0].read_bytes()  # ComfyUI's bytes, untouched
    png = Image.open(io.BytesIO(result.png))
    assert png.size == (512, 384)
    embedded = json.loads(png.text["renderloop"])
    assert embedded == {"batch": "b1", "slug": "harbor-at-dawn", "spec_hash": req.spec_hash,
                        "spec": req.spec.model_dump(mode="json")}
    assert json.loads(png.text["prompt"])["27"]["inputs"]["text"] == req.spec.prompt
    assert result.backend_ids["server"] == comfy.url
    assert result.backend_ids["prompt_id"] == comfy.timeline[0].prompt_id
    assert 0.04 <= result.render_seconds < 1.0
    assert result.started_at <= result.finished_at
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0


def test_window_keeps_the_gpu_busy(tmp_path: Path) -> None:
    with ComfyServer(tmp_path / "c", render_seconds=0.1) as server:
        backend = make(tmp_path / "studio", server.url, window=2)
        lane = lane_of(backend)
        todo = [request(f"img-{i}") for i in range(8)]
        lock = threading.Lock()
        most = [0]

        def worker() -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    req = todo.pop(0)
                lane.render(req, threading.Event())
                running, pending = lane.client.queue()
                with lock:
                    most[0] = max(most[0], len(running) + len(pending))

        threads = [threading.Thread(target=worker) for _ in range(lane.window)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        backend.close()
        gaps = server.idle_gaps()
    assert len(server.timeline) == 8
    assert statistics.median(gaps) < 0.01, gaps
    assert most[0] <= 2  # never more than the window on the server


# ------------------------------------------------------------------ failures
def test_preflight_fails_models_whose_files_the_server_lacks(tmp_path: Path) -> None:
    with ComfyServer(tmp_path / "c", models=["z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors",
                                             "ae.safetensors"]) as server:
        backend = make(tmp_path / "studio", server.url)
        reqs = [request("zit"), request("dev-1", "flux-dev"), request("dev-2", "flux-dev")]
        failures = backend.preflight(reqs)
        backend.close()
    assert set(failures) == {("b1", "dev-1"), ("b1", "dev-2")}
    failure = failures[("b1", "dev-1")]
    assert failure.kind == "missing-model"
    for file in ("flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors"):
        assert file in failure.message
    assert "ae.safetensors" not in failure.message
    assert not lane_of(backend).accepts(reqs[1]) and lane_of(backend).accepts(reqs[0])


def test_preflight_with_two_servers_fails_only_what_neither_has(tmp_path: Path) -> None:
    with ComfyServer(tmp_path / "a", models=["flux1-dev.safetensors", "clip_l.safetensors",
                                             "t5xxl_fp16.safetensors", "ae.safetensors"]) as a, \
            ComfyServer(tmp_path / "b", models=[]) as b:
        backend = make(tmp_path / "studio", a.url, b.url)
        failures = backend.preflight([request("dev", "flux-dev"), request("q", "qwen-image")])
        lane_a, lane_b = backend.lanes
        with pytest.raises(BackendUnavailable, match="leaving dev to a server that has them"):
            lane_b.render(request("dev", "flux-dev"), threading.Event())
        result = lane_a.render(request("dev", "flux-dev"), threading.Event())
        backend.close()
    assert list(failures) == [("b1", "q")]
    assert f"ComfyUI at {a.url} lacks" in failures[("b1", "q")].message
    assert f"ComfyUI at {b.url} lacks" in failures[("b1", "q")].message
    assert result.png.startswith(b"\x89PNG")


def test_preflight_skips_a_server_that_is_down(tmp_path: Path) -> None:
    backend = make(tmp_path, "http://127.0.0.1:9")
    assert backend.preflight([request("x")]) == {}
    backend.close()


def test_refused_graph_fails_that_image_and_others_go_on(backend: ComfyUIBackend) -> None:
    lane = lane_of(backend)
    with pytest.raises(RenderFailed) as caught:
        lane.render(request("bad", sampler="no-such-sampler"), threading.Event())
    assert caught.value.kind == "invalid-spec"
    assert "node 3 (KSampler) input 'sampler_name': sampler_name: 'no-such-sampler' not in" in caught.value.message
    assert lane.render(request("good"), threading.Event()).png.startswith(b"\x89PNG")


def test_out_of_memory_fails_that_image_and_others_go_on(backend: ComfyUIBackend, comfy: ComfyServer) -> None:
    comfy.fail_next_oom()
    lane = lane_of(backend)
    with pytest.raises(RenderFailed) as caught:
        lane.render(request("big"), threading.Event())
    assert caught.value.kind == "out-of-memory"
    assert "KSampler (node 3): torch.OutOfMemoryError: Allocation on device" in caught.value.message
    assert caught.value.backend_ids["server"] == comfy.url
    assert lane.render(request("small"), threading.Event()).png.startswith(b"\x89PNG")


def test_cpu_out_of_memory_is_out_of_memory(backend: ComfyUIBackend, comfy: ComfyServer) -> None:
    """Issue 11: torch on the CPU says so with DefaultCPUAllocator (ComfyUI's --cpu, or offloaded weights)."""
    comfy.fail_next("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                    "you tried to allocate 4194304000 bytes.", "RuntimeError", "VAEDecode")
    with pytest.raises(RenderFailed) as caught:
        lane_of(backend).render(request("huge"), threading.Event())
    assert caught.value.kind == "out-of-memory"
    assert caught.value.message.startswith("out of memory in VAEDecode (node 8): RuntimeError: ")


def test_execution_error_carries_comfyuis_message(backend: ComfyUIBackend, comfy: ComfyServer) -> None:
    comfy.fail_next("Error while deserializing header: header too small\n",
                    "safetensors._safetensors_rust.SafetensorError", "VAELoader")
    with pytest.raises(RenderFailed) as caught:
        lane_of(backend).render(request("corrupt"), threading.Event())
    assert caught.value.kind == "backend-error"
    assert caught.value.message == ("VAELoader (node 29) failed: safetensors._safetensors_rust.SafetensorError: "
                                    "Error while deserializing header: header too small")


def test_a_model_without_comfyui_settings_is_invalid(backend: ComfyUIBackend) -> None:
    config = StudioConfig(models={"cloud-only": ModelSettings()})
    with pytest.raises(RenderFailed, match="model 'cloud-only' has no 'comfyui' settings"):
        lane_of(backend).render(request("c", "cloud-only", config=config), threading.Event())
    assert make(Path("."), "http://127.0.0.1:9", config=config).preflight(
        [request("c", "cloud-only", config=config)])[("b1", "c")].kind == "invalid-spec"


# ------------------------------------------------------------- resilience
def test_restart_mid_render_resubmits_the_lost_prompt(tmp_path: Path) -> None:
    with ComfyServer(tmp_path / "c", render_seconds=1.0) as server:
        backend = make(tmp_path / "studio", server.url)
        box = in_thread(lane_of(backend), request("lost"))
        wait_for(lambda: server.engine.running, what="the prompt to run")
        server.restart(down_seconds=0.5)
        result = finished(box)
        backend.close()
        assert server.posted_prompts() == 2
        assert result.backend_ids["prompt_id"] == server.timeline[-1].prompt_id
        assert len(server.output_files()) == 1


def test_dropped_websocket_falls_back_to_polling_and_reconnects(tmp_path: Path) -> None:
    with ComfyServer(tmp_path / "c", render_seconds=0.6) as server:
        backend = make(tmp_path / "studio", server.url)
        lane = lane_of(backend)
        box = in_thread(lane, request("dropped"))
        wait_for(lambda: server.engine.running, what="the prompt to run")
        epoch = lane.events.epoch
        server.drop_sockets()
        result = finished(box)
        assert server.posted_prompts() == 1 and result.png.startswith(b"\x89PNG")
        wait_for(lambda: lane.events.connected and lane.events.epoch > epoch, what="the socket to come back")
        backend.close()


def test_without_a_websocket_renders_by_polling(tmp_path: Path) -> None:
    with ComfyServer(tmp_path / "c", render_seconds=0.1) as server:
        server.ws_enabled = False
        backend = make(tmp_path / "studio", server.url)
        result = lane_of(backend).render(request("polled"), threading.Event())
        backend.close()
    assert result.png.startswith(b"\x89PNG") and not lane_of(backend).events.connected


def test_a_server_that_is_down_is_unavailable_at_once(tmp_path: Path, comfy: ComfyServer) -> None:
    backend = make(tmp_path, comfy.url)
    comfy.go_down()
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=f"cannot reach ComfyUI at {comfy.url}"):
        lane_of(backend).render(request("down"), threading.Event())
    assert time.monotonic() - started < 2.0
    comfy.come_back()
    assert lane_of(backend).render(request("back"), threading.Event()).png.startswith(b"\x89PNG")
    backend.close()


def test_a_server_that_hangs_is_given_up_after_a_bounded_time(tmp_path: Path, comfy: ComfyServer) -> None:
    backend = make(tmp_path, comfy.url)
    lane = lane_of(backend)
    lane.client.read_timeout = 0.5
    comfy.hang_http()
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="did not answer POST /prompt within 0.5 s"):
        lane.render(request("hung"), threading.Event())
    assert time.monotonic() - started < 4.0
    comfy.hang_http(False)
    backend.close()


@pytest.mark.parametrize("path, body, status, kind, message", [
    ("/prompt", b"<html><body>Bad Gateway</body></html>", 200, "backend-error", "not JSON: <html><body>Bad Gateway"),
    ("/prompt", b'["a list"]', 200, "backend-error", "answered POST /prompt with ['a list']"),
    ("/prompt", b"Server got itself in trouble", 500, "backend-error", "answered POST /prompt with 500"),
    ("/view", b"GIF89a not a png", 200, "backend-error", "that are not a PNG"),
    ("/history", b"<html>oops</html>", 200, "backend-error", "not JSON"),
])
def test_garbage_answers_are_clear_errors(backend: ComfyUIBackend, comfy: ComfyServer, path: str, body: bytes,
                                          status: int, kind: str, message: str) -> None:
    comfy.garbage(path, body, status=status, times=99)
    lane = lane_of(backend)
    if path == "/history":
        lane.events.close()  # polling reads /history: make it the only way to learn the outcome
    with pytest.raises(RenderFailed) as caught:
        lane.render(request("garbled"), threading.Event())
    assert caught.value.kind == kind and message in caught.value.message


def test_one_garbled_history_answer_is_survived(backend: ComfyUIBackend, comfy: ComfyServer) -> None:
    comfy.garbage("/history", b"<html>proxy hiccup</html>", times=1)
    assert lane_of(backend).render(request("hiccup"), threading.Event()).png.startswith(b"\x89PNG")


def test_a_proxy_saying_bad_gateway_is_temporary(backend: ComfyUIBackend, comfy: ComfyServer) -> None:
    comfy.garbage("/prompt", b"<html>502</html>", status=502)
    with pytest.raises(BackendUnavailable, match="answered 502"):
        lane_of(backend).render(request("proxy"), threading.Event())


# ------------------------------------------------------- cancel, timeout, cache
def test_cancel_deletes_queued_and_interrupts_running_prompts(tmp_path: Path) -> None:
    with ComfyServer(tmp_path / "c", render_seconds=5.0) as server:
        backend = make(tmp_path / "studio", server.url)
        lane = lane_of(backend)
        cancel = threading.Event()
        boxes = [in_thread(lane, request(f"c{i}"), cancel) for i in range(2)]
        wait_for(lambda: server.engine.running and len(server.engine.pending) == 1, what="one running, one queued")
        running = server.engine.running.prompt_id
        started = time.monotonic()
        cancel.set()
        for box in boxes:
            with pytest.raises(Cancelled):
                finished(box)
        assert time.monotonic() - started < 2.0
        entry = wait_for(lambda: requests.get(f"{server.url}/history/{running}", timeout=5).json(),
                         what="the interrupted prompt's history")[running]
        assert [m[0] for m in entry["status"]["messages"]][-1] == "execution_interrupted"
        assert requests.get(server.url + "/queue", timeout=5).json() == {"queue_running": [], "queue_pending": []}
        assert server.output_files() == []
        backend.close()


def test_a_render_that_never_ends_times_out(tmp_path: Path, comfy: ComfyServer) -> None:
    backend = make(tmp_path, comfy.url, timeout=0.5)
    comfy.hang_next()
    with pytest.raises(RenderFailed) as caught:
        lane_of(backend).render(request("stuck"), threading.Event())
    assert caught.value.kind == "timeout"
    assert lane_of(backend).render(request("next"), threading.Event()).png.startswith(b"\x89PNG")
    backend.close()


def test_the_same_spec_again_is_served_from_comfyuis_cache(backend: ComfyUIBackend, comfy: ComfyServer) -> None:
    lane = lane_of(backend)
    first = lane.render(request("twice"), threading.Event())
    second = lane.render(request("twice"), threading.Event())
    assert second.png == first.png and len(comfy.output_files()) == 1
    assert not first.cached and first.render_seconds > 0
    assert second.cached  # issue 11: said so, not passed off as a 0.0 s render


def test_a_cached_result_whose_file_is_gone_is_rendered_again(backend: ComfyUIBackend, comfy: ComfyServer) -> None:
    lane = lane_of(backend)
    first = lane.render(request("gone"), threading.Event())
    comfy.output_files()[0].unlink()
    again = lane.render(request("gone"), threading.Event())
    assert again.png.startswith(b"\x89PNG") and again.backend_ids != first.backend_ids
    assert len(comfy.output_files()) == 1 and comfy.posted_prompts() == 3


def test_newer_comfyui_prompt_ids_are_accepted(tmp_path: Path) -> None:
    with ComfyServer(tmp_path / "c", strict_prompt_id=True) as server:
        backend = make(tmp_path / "studio", server.url)
        assert lane_of(backend).render(request("uuid"), threading.Event()).png.startswith(b"\x89PNG")
        backend.close()


# ------------------------------------------------------------ user workflows
def test_user_workflow_renders_with_its_bindings(tmp_path: Path) -> None:
    from tests.test_comfyui_workflow import SDXL

    studio = tmp_path / "studio"
    (studio / "workflows").mkdir(parents=True)
    (studio / "workflows" / "sdxl.api.json").write_text(json.dumps(SDXL), encoding="utf-8")
    comfy_settings = ComfyUIModel(workflow="workflows/sdxl.api.json",
                                  bind={"prompt": "Positive.text", "seed": "3.seed", "width": "5.width",
                                        "height": "5.height"})
    config = StudioConfig(models={"my-sdxl": ModelSettings(comfyui=comfy_settings)})
    with ComfyServer(tmp_path / "c", models=["sd_xl_base_1.0.safetensors"]) as server:
        backend = make(studio, server.url, config=config)
        req = request("mine", "my-sdxl", config=config, width=768, height=512)
        assert backend.preflight([req]) == {}
        result = lane_of(backend).render(req, threading.Event())
        backend.close()
    png = Image.open(io.BytesIO(result.png))
    graph = json.loads(png.text["prompt"])
    assert png.size == (768, 512)
    assert graph["6"]["inputs"]["text"] == req.spec.prompt and graph["3"]["inputs"]["seed"] == 1234
    assert graph["9"]["inputs"]["filename_prefix"] == f"renderloop/b1/mine-{req.spec_hash[7:19]}"


def test_backend_reads_servers_from_the_machine_settings_when_none_given(tmp_path: Path) -> None:
    machine = MachineSettings.model_validate({"worker": {
        "comfyui": ["127.0.0.1:8188", "http://127.0.0.1:8188/", "http://gpu2:8188"], "window": 3}})
    options = BackendOptions(config=CONFIG, studio_root=tmp_path, state_dir=tmp_path / "state", machine=machine,
                             window=3)
    backend = make_backend("comfyui", options)
    assert isinstance(backend, ComfyUIBackend)
    assert [lane.name for lane in backend.lanes] == ["http://127.0.0.1:8188", "http://gpu2:8188"]
    assert [lane.window for lane in backend.lanes] == [3, 3]
    assert len({lane.client_id for lane in backend.lanes}) == 2
    backend.close()


def test_results_fit_the_render_record(backend: ComfyUIBackend) -> None:
    from studio.record import RenderRecord

    req = request("recorded")
    result: RenderResult = lane_of(backend).render(req, threading.Event())
    record = RenderRecord(batch="b1", slug="recorded", status="done", spec=req.spec, spec_hash=req.spec_hash,
                          backend="comfyui", backend_ids=result.backend_ids, worker="w",
                          started_at=result.started_at, finished_at=result.finished_at,
                          render_seconds=result.render_seconds)
    assert record.backend_ids["prompt_id"] == result.backend_ids["prompt_id"]
