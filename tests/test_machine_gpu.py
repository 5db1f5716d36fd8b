"""Every GPU-box setting from this machine (issue 14 under issue 9's rule): a flag, the environment, or
machine.yaml, never the repository; `renderloop config` shows each with where it came from; a models folder
that goes missing is named before each batch, not reported as missing model files."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest

from studio.layout import Studio
from studio.machine import FLAGS, BackendName, leaves
from tests.comfyui_server import ComfyServer
from tests.helpers import Sandbox, cli, config_rows, git
from win_side.backends import BACKENDS
from win_side.repo import WorkerRepo
from win_side.worker import WorkerOptions, machine_settings, push_interval

ZIT_FILES = ["z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors", "ae.safetensors"]
ONE_IMAGE = """\
version: 1
model: z-image-turbo
prompts:
  - slug: {slug}
    prompt: a lighthouse in fog
"""
GPU_SETTINGS = {  # machine.yaml key -> (text in the file, the value the worker uses)
    "backend": ("fal", "fal"),
    "comfyui": ("[http://127.0.0.1:8190, 'gpu2:8188']", ["http://127.0.0.1:8190", "http://gpu2:8188"]),
    "comfyui_start": ("'C:\\pinokio\\api\\comfy.git\\start.bat'", "C:\\pinokio\\api\\comfy.git\\start.bat"),
    "models_dir": ("'E:\\ComfyUI\\models'", "E:\\ComfyUI\\models"),
    "notify": ("https://ntfy.sh/my-studio", "https://ntfy.sh/my-studio"),
    "notify_format": ("ntfy", "ntfy"),
    "poll": ("30", 30.0),
    "backstop": ("120", 120.0),
    "window": ("3", 3),
    "log_file": ("'C:\\renderloop\\worker.log'", "C:\\renderloop\\worker.log"),
    "push_interval": ("20", 20.0),
    "backend_wait": ("5", 5.0),
    "name": ("studio-pc", "studio-pc"),
    "fal_url": ("https://queue.fal.example", "https://queue.fal.example"),
    "fal_timeout": ("900", 900.0),
}


def machine_yaml(text: str) -> Path:
    path = Path(os.environ["RENDERLOOP_MACHINE_CONFIG"])
    path.write_text(text, encoding="utf-8")
    return path


def test_every_worker_setting_is_in_machine_yaml_and_every_flag_has_one() -> None:
    worker = {leaf[1] for leaf in leaves() if leaf[0] == "worker"}
    assert worker == set(GPU_SETTINGS)
    flagged = {"backend", "comfyui", "comfyui_start", "models_dir", "notify", "notify_format", "poll", "window", "log_file",
               "push_interval", "backend_wait", "name", "fal_url"}
    assert {key.split(".", 1)[1] for key in FLAGS if key.startswith("worker.")} == flagged
    assert {"mac.wake.mac", "mac.wake.broadcast", "mac.wake.port"} <= set(FLAGS)  # `renderloop wake`'s target
    assert set(BACKENDS) == set(typing.get_args(BackendName))  # the names the settings take: each one built


def test_the_worker_reads_each_setting_from_machine_yaml_the_environment_over_it_and_a_flag_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine_yaml("worker:\n" + "".join(f"  {key}: {text}\n" for key, (text, _) in GPU_SETTINGS.items()))
    from_file = machine_settings(WorkerOptions(repo=tmp_path)).worker
    for key, (_, value) in GPU_SETTINGS.items():
        assert getattr(from_file, key) == value, key
    monkeypatch.setenv("RENDERLOOP_WORKER_PUSH_INTERVAL", "6")
    monkeypatch.setenv("RENDERLOOP_WORKER_MODELS_DIR", "/mnt/models")
    monkeypatch.setenv("RENDERLOOP_WORKER_LOG_FILE", "/var/log/renderloop.log")
    from_env = machine_settings(WorkerOptions(repo=tmp_path))
    assert (from_env.worker.push_interval, from_env.worker.models_dir) == (6.0, "/mnt/models")
    assert from_env.source("worker.push_interval") == "env" and from_env.source("worker.poll") == "file"
    flagged = machine_settings(WorkerOptions(repo=tmp_path, push_interval=0.0, models_dir="/media/x",
                                             log_file="/tmp/w.log", notify_format="slack", backend_wait=1.0,
                                             comfyui_start="comfy --port 8190", notify="http://127.0.0.1:9/hook"))
    worker = flagged.worker
    assert (worker.push_interval, worker.models_dir, worker.log_file, worker.notify_format, worker.backend_wait,
            worker.comfyui_start, worker.notify) == (0.0, "/media/x", "/tmp/w.log", "slack", 1.0,
                                                     "comfy --port 8190", "http://127.0.0.1:9/hook")
    assert {flagged.source(f"worker.{k}") for k in ("push_interval", "models_dir", "log_file")} == {"flag"}


def test_the_push_spacing_is_the_machines_and_defaults_to_6_a_minute_to_a_hosted_remote(sandbox: Sandbox) -> None:
    repo = WorkerRepo(Studio.at(sandbox.worker))
    git(sandbox.worker, "remote", "set-url", "origin", "https://git.example.com/studio.git")
    unset = machine_settings(WorkerOptions(repo=sandbox.worker)).worker.push_interval
    assert push_interval(repo, unset) == 10.0  # at most 6 pushes a minute
    machine_yaml("worker:\n  push_interval: 30\n")
    assert push_interval(repo, machine_settings(WorkerOptions(repo=sandbox.worker)).worker.push_interval) == 30.0
    bad = machine_yaml("worker:\n  push_interval: -1\n")
    result = cli("worker", "--repo", str(sandbox.worker), "--once", "--backend", "placeholder")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{bad}:2: worker.push_interval: Input should be greater than or equal to 0 (got -1)")


def test_config_shows_every_gpu_setting_with_where_it_came_from(tmp_path: Path) -> None:
    path = machine_yaml("worker:\n  push_interval: 20\n  models_dir: /mnt/enc/models\n"
                        "  comfyui_start: /opt/comfy/run.sh\nmac:\n  wake: {mac: 'AA:BB:CC:DD:EE:FF'}\n")
    env = {**os.environ, "RENDERLOOP_WORKER_LOG_FILE": "/var/log/rl.log",
           "RENDERLOOP_WORKER_NOTIFY": "https://ntfy.sh/secret-topic-123"}
    result = cli("config", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    rows = config_rows(result.stdout)
    assert rows["worker.push_interval"] == ["20.0", "file"]
    assert rows["worker.models_dir"] == ["/mnt/enc/models", "file"]
    assert rows["worker.comfyui_start"] == ["/opt/comfy/run.sh", "file"]
    assert rows["worker.log_file"] == ["/var/log/rl.log", "env"]
    assert rows["worker.notify"] == ["https://ntfy.sh/…", "(path", "hidden)", "env"]
    assert rows["worker.notify_format"] == ["json", "default"]
    assert rows["worker.backend_wait"] == ["60.0", "default"]
    assert rows["mac.wake.mac"] == ["AA:BB:CC:DD:EE:FF", "file"]
    assert rows["mac.wake.port"] == ["9", "default"]
    assert "secret-topic-123" not in result.stdout
    unset = cli("config", cwd=tmp_path, env={**os.environ, "RENDERLOOP_MACHINE_CONFIG": str(path) + ".none"})
    line = next(line for line in unset.stdout.splitlines() if line.startswith("worker.push_interval"))
    assert "(not set: 0 s to a remote on this disk, 10 s (at most 6 pushes a minute) to any other)" in line


def _wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _push_batch(sandbox: Sandbox, name: str) -> None:
    sandbox.write(f"batches/{name}.yaml", ONE_IMAGE.format(slug=f"{name}-one"))
    git(sandbox.mac, "add", f"batches/{name}.yaml")
    git(sandbox.mac, "commit", "-q", "-m", f"batch {name}")
    for _ in range(10):  # the worker may push its renders in between: pull them, as a person does
        if git(sandbox.mac, "push", "-q", check=False).returncode == 0:
            return
        git(sandbox.mac, "pull", "-q")
    raise AssertionError("the batch could not be pushed")


@pytest.mark.skipif(sys.platform == "win32", reason="the worker is stopped with SIGTERM")
def test_a_models_folder_gone_between_batches_is_named_and_its_batch_waits(sandbox: Sandbox, tmp_path: Path) -> None:
    """ComfyUI, the models folder and the log file from machine.yaml only; the drive goes away after the
    first batch: the second waits, named as such (no missing-model record), and renders once it is back."""
    drive = tmp_path / "Encrypted" / "models"
    drive.mkdir(parents=True)
    log_file = tmp_path / "logs" / "worker.log"
    with ComfyServer(tmp_path / "comfyui", models=ZIT_FILES, render_seconds=0.05) as server:
        machine_yaml(f"worker:\n  comfyui: [{server.url}]\n  models_dir: '{drive}'\n  log_file: '{log_file}'\n"
                     "  name: studio-pc\n")
        _push_batch(sandbox, "first")
        worker = subprocess.Popen([sys.executable, "-m", "renderloop", "worker", "--repo", str(sandbox.worker)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            first = sandbox.worker / "renders" / "first" / "first-one.png"
            _wait_for(first.exists, 60, "the first batch")
            drive.rename(drive.with_name("models-away"))  # the drive is locked again
            _push_batch(sandbox, "second")
            named = (f"the models folder {drive} is missing (is its drive mounted or unlocked?): "
                     "nothing is rendered until it is there; 1 image(s) of second wait for it")
            _wait_for(lambda: log_file.is_file() and named in log_file.read_text(encoding="utf-8"), 60,
                      "the models folder named in the log file")
            time.sleep(1.0)
            assert not (sandbox.worker / "renders" / "second").exists()  # no failure record: nothing is lost
            drive.with_name("models-away").rename(drive)
            _wait_for((sandbox.worker / "renders" / "second" / "second-one.png").exists, 90, "the second batch")
        finally:
            worker.send_signal(signal.SIGTERM)
            _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    text = log_file.read_text(encoding="utf-8")
    assert "missing-model" not in text and "missing-model" not in stderr
    assert named in stderr  # the console says it too


def test_the_backend_is_the_machines_too(sandbox: Sandbox) -> None:
    _push_batch(sandbox, "hero")
    machine_yaml("worker:\n  backend: placeholder\n")
    result = cli("worker", "--repo", str(sandbox.worker), "--once")
    assert result.returncode == 0, result.stderr
    record = (sandbox.worker / "renders" / "hero" / "hero-one.json").read_text(encoding="utf-8")
    assert '"backend": "placeholder"' in record or '"backend":"placeholder"' in record
    bad = machine_yaml("worker:\n  backend: sh\n")
    refused = cli("worker", "--repo", str(sandbox.worker), "--once")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"{bad}:2: worker.backend: Input should be 'comfyui', 'fal', 'mflux' or "
                                     "'placeholder'")
