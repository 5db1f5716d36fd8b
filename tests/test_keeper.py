"""ComfyUI kept alive (``--comfyui-start``): started when not answering, restarted after a crash on the
capped backoff, stopped with the worker; a missing models folder named as such. Against the ComfyUI test
server started by a stand-in launcher, killed for real."""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import BATCH_YAML, Sandbox, cli, git
from win_side.keeper import ComfyKeeper, answering, start_argv

LAUNCHER = Path(__file__).resolve().parent / "comfyui_launcher.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(port: int, root: Path, pid_file: Path | None = None) -> str:
    """The launcher's command line; the server keeps its files in ``root`` (the test's folder)."""
    root.mkdir(exist_ok=True)
    extra = f" --pid-file {pid_file}" if pid_file else ""
    return f"{sys.executable} {LAUNCHER} {port} {root}{extra}"


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(sys.platform == "win32", reason="the launcher is killed with SIGKILL")
def test_the_keeper_starts_restarts_after_a_crash_and_stops_comfyui(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    pid_file = tmp_path / "server.pid"
    assert not answering(url)
    keeper = ComfyKeeper(_command(port, tmp_path / "comfyui", pid_file), url, delays=(0.5, 1.0), check_every=0.2, ready_timeout=60)
    with caplog.at_level(logging.INFO, logger="renderloop.worker"):
        keeper.start()
        try:
            assert keeper.wait_ready(60), "ComfyUI was not started"
            assert answering(url) and keeper.starts == 1
            first = int(pid_file.read_text())
            assert keeper.proc is not None
            os.kill(keeper.proc.pid, signal.SIGKILL)  # the launcher crashes...
            os.kill(first, signal.SIGKILL)  # ...and its server with it
            deadline = time.monotonic() + 60
            while keeper.starts < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert keeper.wait_ready(60) and keeper.starts == 2, "ComfyUI was not restarted"
            assert answering(url)
            second = int(pid_file.read_text())
            assert second != first
        finally:
            keeper.stop()
    assert _gone(second), "the server the keeper started outlived the worker"
    assert not answering(url)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith(f"ComfyUI does not answer at {url}: starting it: ") for line in lines)
    assert sum("ComfyUI is ready at" in line for line in lines) == 2
    assert any("exited with code -9; will try again in 0.5 s" in line for line in lines), lines
    assert any("stopping the ComfyUI this worker started" in line for line in lines)


def test_a_comfyui_someone_else_runs_is_left_alone(tmp_path: Path) -> None:
    from tests.comfyui_server.server import DEFAULT_MODELS, ComfyServer

    server = ComfyServer(tmp_path, models=DEFAULT_MODELS, render_seconds=0.01, port=0).start()
    try:
        keeper = ComfyKeeper(f"{sys.executable} -c 'raise SystemExit(3)'", server.url, check_every=0.1).start()
        assert keeper.wait_ready(10)
        time.sleep(0.5)
        keeper.stop()
        assert keeper.starts == 0 and answering(server.url)
    finally:
        server.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_the_worker_starts_comfyui_renders_and_stops_it(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    git(sandbox.mac, "add", "batches/hero.yaml")
    git(sandbox.mac, "commit", "-q", "-m", "batch hero")
    git(sandbox.mac, "push", "-q")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    pid_file = tmp_path / "server.pid"
    result = cli("worker", "--repo", str(sandbox.worker), "--once", "--comfyui", url,
                 "--comfyui-start", _command(port, tmp_path / "comfyui", pid_file), "--models-dir", str(tmp_path), timeout=240)
    assert result.returncode == 0, result.stderr
    assert "ComfyUI is ready at" in result.stderr
    assert "3 rendered, 0 failed" in result.stderr
    assert _gone(int(pid_file.read_text())) and not answering(url)


def test_a_missing_models_folder_is_named_as_such(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    git(sandbox.mac, "add", "batches/hero.yaml")
    git(sandbox.mac, "commit", "-q", "-m", "batch hero")
    git(sandbox.mac, "push", "-q")
    drive = tmp_path / "Encrypted" / "models"
    result = cli("worker", "--repo", str(sandbox.worker), "--once", "--models-dir", str(drive),
                 "--comfyui", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"renderloop: error: the models folder {drive} is missing (is its drive mounted or unlocked?): "
        "nothing is rendered until it is there")
    assert "missing-model" not in result.stderr
    assert not (sandbox.worker / "renders" / "hero").exists()  # no failure records for files that are not lost


def test_the_start_command_runs_without_a_shell() -> None:
    assert start_argv("/opt/ComfyUI/venv/bin/python main.py --port 8188", windows=False) == [
        "/opt/ComfyUI/venv/bin/python", "main.py", "--port", "8188"]
    assert start_argv("'/My Apps/comfy.sh' --listen; rm -rf /", windows=False) == [
        "/My Apps/comfy.sh", "--listen;", "rm", "-rf", "/"]  # words, never a shell: ';' is an argument
    assert start_argv(r'"C:\pinokio\api\comfy.git\start.bat"', windows=True) == [
        "cmd", "/c", r"C:\pinokio\api\comfy.git\start.bat"]
    assert start_argv(r"C:\ComfyUI_windows_portable\run_nvidia_gpu.CMD --fast", windows=True) == [
        "cmd", "/c", r"C:\ComfyUI_windows_portable\run_nvidia_gpu.CMD", "--fast"]
    assert start_argv(r'"C:\Program Files\Python\python.exe" main.py', windows=True) == [
        r"C:\Program Files\Python\python.exe", "main.py"]
