"""The fal backend against a fal test server of our own on 127.0.0.1."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from studio.config import FalModel, builtin_config
from studio.errors import FatalError
from studio.record import RenderRecord
from studio.spec import Spec
from tests.fal_server import FalServer, FalState
from tests.helpers import BATCH_YAML, Sandbox, cli, git
from win_side.backends import make_backend
from win_side.backends.base import BackendOptions, BackendUnavailable, Cancelled, RenderFailed, RenderRequest
from win_side.backends.fal import FalBackend, FalLane, Retry, cost_usd, payload

KEY = "fal-test-key-4b1e9c0d7a"  # a string found nowhere else, to search files for
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fal(monkeypatch: pytest.MonkeyPatch):
    server = FalServer(FalState(key=KEY, render_seconds=0.2)).start()
    monkeypatch.setenv("FAL_KEY", KEY)
    yield server
    server.stop()


def make_request(model: str = "flux-schnell", slug: str = "harbor", prompt: str = "a harbor at dawn",
                 width: int = 1344, height: int = 768, negative: str = "") -> RenderRequest:
    settings = builtin_config().models[model]
    spec = Spec(model=model, prompt=prompt, negative=negative, seed=1234, width=width, height=height,
                steps=settings.steps)
    return RenderRequest("b1", slug, spec, spec.hash, settings)


def with_fal(request: RenderRequest, **changes) -> RenderRequest:
    assert request.settings.fal is not None
    fal = request.settings.fal.model_copy(update=changes)
    return RenderRequest(request.batch, request.slug, request.spec, request.spec_hash,
                         request.settings.model_copy(update={"fal": fal}))


def fast_lane(tmp_path: Path, server: FalServer) -> FalLane:
    options = BackendOptions(config=builtin_config(), studio_root=tmp_path, state_dir=tmp_path / "state",
                             fal_url=server.url)
    lane = FalBackend(options).lanes[0]
    lane.poll, lane.poll_cap = 0.05, 0.1
    lane.client.retry = Retry(base=0.01, cap=0.05, attempts=6)
    return lane


def progress_file(tmp_path: Path, slug: str = "harbor") -> Path:
    return tmp_path / "state" / "fal" / "b1" / f"{slug}.json"


def paths_seen(server: FalServer, method: str) -> list[str]:
    return [path for m, path, _ in server.state.seen if m == method]


# -- the protocol ----------------------------------------------------------------------------


def test_render_follows_fals_queue_protocol(tmp_path: Path, fal: FalServer) -> None:
    lane = fast_lane(tmp_path, fal)
    result = lane.render(make_request(), threading.Event())

    (submitted,) = fal.state.submissions
    assert submitted.endpoint == "fal-ai/flux/schnell"
    assert submitted.payload == {
        "prompt": "a harbor at dawn", "seed": 1234, "image_size": {"width": 1344, "height": 768},
        "num_inference_steps": 4, "num_images": 1, "output_format": "png",
    }
    rid = submitted.request_id
    # the status and response URLs the submission returned: without the endpoint's path /schnell
    assert paths_seen(fal, "POST") == ["/fal-ai/flux/schnell"]
    assert set(paths_seen(fal, "GET")) == {
        f"/fal-ai/flux/requests/{rid}/status", f"/fal-ai/flux/requests/{rid}", f"/files/{rid}.png"
    }
    # the key went to the queue, never along with the image download
    for method, path, auth in fal.state.seen:
        assert auth == (None if path.startswith("/files/") else f"Key {KEY}"), (method, path)
    with Image.open(io.BytesIO(result.png)) as image:
        assert image.format == "PNG" and image.size == (1344, 768)
    assert result.backend_ids == {"endpoint": "fal-ai/flux/schnell", "request_id": rid}
    assert result.cost_usd == pytest.approx(0.003)
    assert result.started_at <= result.finished_at


def test_the_test_server_refuses_urls_rebuilt_from_the_endpoint(fal: FalServer) -> None:
    """Guards the test above: a client building URLs from the endpoint would fail."""
    submit = requests.post(f"{fal.url}/fal-ai/flux/schnell", json={"prompt": "x"},
                           headers={"Authorization": f"Key {KEY}"}, timeout=5).json()
    rebuilt = f"{fal.url}/fal-ai/flux/schnell/requests/{submit['request_id']}/status"
    assert requests.get(rebuilt, headers={"Authorization": f"Key {KEY}"}, timeout=5).status_code == 404
    assert requests.get(submit["status_url"], headers={"Authorization": f"Key {KEY}"}, timeout=5).ok


def test_negative_prompt_goes_only_to_models_that_use_one() -> None:
    qwen = make_request("qwen-image", negative="blurry")
    assert payload(qwen, qwen.settings.fal)["negative_prompt"] == "blurry"
    schnell = make_request("flux-schnell", negative="blurry")
    assert "negative_prompt" not in payload(schnell, schnell.settings.fal)


def test_extra_arguments_from_renderloop_yaml_are_sent() -> None:
    request = with_fal(make_request(), arguments={"enable_safety_checker": False, "acceleration": "high"})
    body = payload(request, request.settings.fal)
    assert body["enable_safety_checker"] is False and body["acceleration"] == "high"
    assert body["output_format"] == "png"


@pytest.mark.parametrize(
    ("model", "size", "expected"),
    [
        ("flux-schnell", (1024, 1024), 0.003),
        ("flux-dev", (1024, 1024), 0.025),
        ("flux-dev", (2048, 2048), 0.1),
        ("z-image-turbo", (1344, 768), 0.005),
        ("qwen-image", (1328, 1328), 0.04),  # 1.68 MP: billed as 2
    ],
)
def test_cost_per_megapixel_from_renderloop_yaml(model: str, size: tuple[int, int], expected: float) -> None:
    fal = builtin_config().models[model].fal
    assert fal is not None
    assert cost_usd(fal, *size) == pytest.approx(expected)


def test_cost_can_be_proportional() -> None:
    fal = FalModel(endpoint="fal-ai/flux/dev", usd_per_mp=0.025, round_up_mp=False)
    assert cost_usd(fal, 1024, 512) == pytest.approx(0.0125)


# -- retries and failures ------------------------------------------------------------------------


def test_429_and_5xx_are_retried_with_backoff(tmp_path: Path, fal: FalServer, caplog) -> None:
    fal.state.faults = {"submit": [429, 503], "status": [500, 429], "result": [502], "file": [503]}
    lane = fast_lane(tmp_path, fal)
    with caplog.at_level("WARNING", logger="renderloop.fal"):
        result = lane.render(make_request(), threading.Event())
    assert result.png.startswith(b"\x89PNG")
    assert len(fal.state.submissions) == 1
    assert all(not queue for queue in fal.state.faults.values())  # every fault was met and retried
    assert "fal answered 429" in caplog.text and "will try again in" in caplog.text


def test_a_server_that_keeps_failing_is_unavailable_not_a_failed_image(tmp_path: Path, fal: FalServer) -> None:
    fal.state.faults = {"submit": [503] * 20}
    lane = fast_lane(tmp_path, fal)
    with pytest.raises(BackendUnavailable) as unavailable:
        lane.render(make_request(), threading.Event())
    assert "503" in str(unavailable.value) and "tried 6 times" in str(unavailable.value)
    assert fal.state.submissions == []


def test_rejected_input_fails_the_image_with_fals_reason(tmp_path: Path, fal: FalServer) -> None:
    lane = fast_lane(tmp_path, fal)
    with pytest.raises(RenderFailed) as failed:
        lane.render(make_request(prompt="REJECT this"), threading.Event())
    assert failed.value.kind == "invalid-spec"
    assert "fal answered 422: prompt: prompt rejected" in failed.value.message
    assert not progress_file(tmp_path).exists()


def test_garbage_instead_of_an_image_is_a_backend_error(tmp_path: Path, fal: FalServer) -> None:
    fal.state.bad_image = True
    lane = fast_lane(tmp_path, fal)
    with pytest.raises(RenderFailed) as failed:
        lane.render(make_request(), threading.Event())
    assert failed.value.kind == "backend-error"
    assert "not an image" in failed.value.message


def test_a_wrong_key_is_reported_without_failing_images(tmp_path: Path, fal: FalServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", "wrong-key")
    lane = fast_lane(tmp_path, fal)
    with pytest.raises(BackendUnavailable) as refused:
        lane.render(make_request(), threading.Event())
    assert "fal refused the key in FAL_KEY (401)" in str(refused.value)
    assert "wrong-key" not in str(refused.value)


def test_without_fal_key_the_backend_says_how_to_set_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    with pytest.raises(FatalError) as missing:
        make_backend("fal", BackendOptions(config=builtin_config(), studio_root=tmp_path, state_dir=tmp_path))
    assert "FAL_KEY is not set" in str(missing.value)


def test_the_key_goes_only_to_the_queue_host(tmp_path: Path, fal: FalServer) -> None:
    client = fast_lane(tmp_path, fal).client
    assert client.headers_for(f"{fal.url}/fal-ai/flux/requests/x/status") == {"Authorization": f"Key {KEY}"}
    assert client.headers_for("https://v3.fal.media/files/x.png") == {}
    assert client.headers_for(fal.url.replace("127.0.0.1", "localhost") + "/x") == {}


def test_models_without_a_fal_endpoint_fail_in_preflight(tmp_path: Path, fal: FalServer) -> None:
    backend = FalBackend(BackendOptions(config=builtin_config(), studio_root=tmp_path, state_dir=tmp_path,
                                        fal_url=fal.url))
    request = make_request()
    bare = RenderRequest("b1", "bare", request.spec, request.spec_hash,
                         request.settings.model_copy(update={"fal": None}))
    failures = backend.preflight([request, bare])
    assert list(failures) == [("b1", "bare")]
    assert failures[("b1", "bare")].kind == "missing-model"


# -- waiting: bounded, cancellable, resumable -------------------------------------------------------


def test_the_wait_per_image_is_bounded(tmp_path: Path, fal: FalServer) -> None:
    fal.state.render_seconds = 60
    lane = fast_lane(tmp_path, fal)
    lane.timeout = 0.4  # this machine's worker.fal_timeout
    t0 = time.monotonic()
    with pytest.raises(RenderFailed) as failed:
        lane.render(make_request(), threading.Event())
    assert failed.value.kind == "timeout"
    assert time.monotonic() - t0 < 3
    assert fal.state.cancels == [fal.state.submissions[0].request_id]  # no charge for an image never fetched
    assert not progress_file(tmp_path).exists()


def stop_while_waiting(lane: FalLane, fal: FalServer, after: float = 0.3) -> None:
    """Submit an image that takes long, and stop the render while it waits (a worker stopping)."""
    fal.state.render_seconds = 60
    cancel = threading.Event()
    threading.Timer(after, cancel.set).start()
    with pytest.raises(Cancelled):
        lane.render(make_request(), cancel)


def test_a_stopping_worker_keeps_the_request_for_its_restart(tmp_path: Path, fal: FalServer) -> None:
    stop_while_waiting(fast_lane(tmp_path, fal), fal)
    assert progress_file(tmp_path).exists()
    assert fal.state.cancels == []

    fal.state.render_seconds = 0
    result = fast_lane(tmp_path, fal).render(make_request(), threading.Event())
    assert len(fal.state.submissions) == 1
    assert result.backend_ids["request_id"] == fal.state.submissions[0].request_id


def test_a_changed_spec_does_not_reattach(tmp_path: Path, fal: FalServer) -> None:
    lane = fast_lane(tmp_path, fal)
    lane.render(make_request(), threading.Event())
    lane.render(make_request(prompt="another prompt"), threading.Event())
    lane.render(make_request(prompt="another prompt"), threading.Event())  # finished just now: re-used
    assert [s.payload["prompt"] for s in fal.state.submissions] == ["a harbor at dawn", "another prompt"]


def test_a_request_fal_forgot_is_submitted_again(tmp_path: Path, fal: FalServer) -> None:
    lane = fast_lane(tmp_path, fal)
    stop_while_waiting(lane, fal, after=0.2)
    fal.state.requests.clear()  # fal no longer knows it
    fal.state.render_seconds = 0
    lane.render(make_request(), threading.Event())
    assert len(fal.state.submissions) == 2


SUBMIT_AND_WAIT = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from tests.test_fal import make_request
    from studio.config import builtin_config
    from win_side.backends.base import BackendOptions
    from win_side.backends.fal import FalBackend
    options = BackendOptions(config=builtin_config(), studio_root=Path({tmp!r}), state_dir=Path({state!r}),
                             fal_url={url!r})
    FalBackend(options).lanes[0].render(make_request(), threading.Event())
""")


def test_a_killed_worker_reattaches_and_pays_once(tmp_path: Path, fal: FalServer) -> None:
    fal.state.render_seconds = 60
    script = SUBMIT_AND_WAIT.format(repo=str(REPO), tmp=str(tmp_path), state=str(tmp_path / "state"), url=fal.url)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        while not (progress_file(tmp_path).exists() and fal.state.submissions):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)  # it is polling now
    finally:
        proc.kill()
        proc.wait(10)
    assert len(fal.state.submissions) == 1

    fal.state.render_seconds = 0
    result = fast_lane(tmp_path, fal).render(make_request(), threading.Event())
    assert len(fal.state.submissions) == 1  # re-attached: one submission, one payment
    assert result.backend_ids["request_id"] == fal.state.submissions[0].request_id


# -- the worker with --backend fal, end to end -----------------------------------------------------


def commit_batch(sandbox: Sandbox) -> None:
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    git(sandbox.mac, "add", "batches/hero.yaml")
    git(sandbox.mac, "commit", "-q", "--no-verify", "-m", "batch hero")
    git(sandbox.mac, "push", "-q")


def worker_env() -> dict[str, str]:
    env = os.environ.copy()
    env["FAL_KEY"] = KEY
    return env


def test_worker_renders_through_fal_records_cost_and_never_writes_the_key(sandbox: Sandbox, fal: FalServer) -> None:
    commit_batch(sandbox)
    result = cli("worker", "-C", str(sandbox.worker), "--backend", "fal", "--fal-url", fal.url, "--once",
                 env=worker_env())
    assert result.returncode == 0, result.stderr

    folder = sandbox.worker / "renders" / "hero"
    records = {p.stem: RenderRecord.model_validate_json(p.read_bytes()) for p in folder.glob("*.json")}
    assert set(records) == {"harbor-at-dawn", "feedback-ledger-taxonomy", "night-train"}
    for record in records.values():
        assert record.status == "done" and record.backend == "fal"
        assert record.backend_ids["request_id"] in fal.state.requests
    assert records["harbor-at-dawn"].cost_usd == pytest.approx(0.005)  # z-image-turbo, 512x384: 1 MP
    assert records["night-train"].cost_usd == pytest.approx(0.003)  # flux-schnell
    assert records["night-train"].backend_ids["endpoint"] == "fal-ai/flux/schnell"
    assert len(fal.state.submissions) == 3
    assert git(sandbox.remote, "log", "--format=%s", "main").stdout.count("render(hero)") == 3
    # the request ids were kept in the worker's private state, inside .git
    assert list((sandbox.worker / ".git").rglob("fal/hero/*.json"))
    # the key is in no file anywhere, nor in what the worker printed
    for path in sandbox.root.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in result.stdout + result.stderr


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_worker_killed_mid_render_reattaches_on_restart(sandbox: Sandbox, fal: FalServer) -> None:
    commit_batch(sandbox)
    fal.state.render_seconds = 60
    proc = subprocess.Popen(
        [sys.executable, "-m", "renderloop", "worker", "-C", str(sandbox.worker), "--backend", "fal",
         "--fal-url", fal.url, "--window", "3"],
        env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while len(fal.state.submissions) < 3 or not all(r.polls for r in fal.state.requests.values()):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    fal.state.render_seconds = 0
    result = cli("worker", "-C", str(sandbox.worker), "--backend", "fal", "--fal-url", fal.url, "--once",
                 env=worker_env())
    assert result.returncode == 0, result.stderr
    assert len(fal.state.submissions) == 3  # each image paid for once
    assert "re-attaching to fal request" in result.stderr
    records = list((sandbox.worker / "renders" / "hero").glob("*.json"))
    assert len(records) == 3
