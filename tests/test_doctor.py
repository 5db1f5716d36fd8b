"""`renderloop doctor`: one line per check (ok, warn, FAIL), exit 1 when something blocks the loop."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from studio.shims import shim
from tests.comfyui_server import ComfyServer
from tests.helpers import Sandbox, cli, git

PYTHON_POSIX = Path(sys.executable).as_posix()

ZIT_FILES = ["z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors", "ae.safetensors"]
FAKE_KEY = "fal-test-3b9f0c2e7d41aa55:not-a-real-secret"


def _lines(output: str) -> dict[str, str]:
    """Each line by its first words after the status, with the status checked."""
    found = {}
    for line in output.splitlines():
        status, _, text = line.partition("  ")
        assert status.strip() in ("ok", "warn", "FAIL"), line
        found[text.strip()] = status.strip()
    return found


def _status(lines: dict[str, str], start: str) -> str:
    matches = [status for text, status in lines.items() if text.startswith(start)]
    assert len(matches) == 1, (start, lines)
    return matches[0]


def test_the_worker_box_with_its_comfyui(sandbox: Sandbox, tmp_path: Path) -> None:
    env = {**os.environ, "FAL_KEY": FAKE_KEY}
    with ComfyServer(tmp_path / "comfyui", models=ZIT_FILES) as server:
        result = cli("doctor", "--worker", "--comfyui", server.url, "-C", str(sandbox.worker), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert FAKE_KEY not in result.stdout + result.stderr
    assert FAKE_KEY[:8] not in result.stdout + result.stderr
    lines = _lines(result.stdout)
    assert _status(lines, "Python 3.") == "ok"
    assert _status(lines, "git 2.") == "ok"
    assert _status(lines, "git identity: renderloop worker <worker@example.com>") == "ok"
    assert _status(lines, "remote origin (") == "ok"
    assert _status(lines, f"ComfyUI at {server.url} answers; ready for z-image-turbo") == "ok"
    lacks = [text for text in lines if text.startswith(f"ComfyUI at {server.url} lacks for flux-schnell:")]
    assert len(lacks) == 1 and "flux1-schnell.safetensors" in lacks[0] and lines[lacks[0]] == "warn"
    assert _status(lines, f"FAL_KEY set ({len(FAKE_KEY)} characters)") == "ok"
    assert _status(lines, "mflux") in ("ok", "warn")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_comfyui_that_does_not_answer_blocks_the_worker(sandbox: Sandbox) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = cli("doctor", "--worker", "--comfyui", url, "--repo", str(sandbox.worker))
    assert result.returncode == 1
    assert _status(_lines(result.stdout), f"ComfyUI at {url} not answering") == "FAIL"


def test_the_persons_clone(sandbox: Sandbox) -> None:
    result = cli("doctor", cwd=sandbox.mac)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = _lines(result.stdout)
    assert _status(lines, "hooks enabled and current") == "ok"
    assert _status(lines, "git identity: Ana Tester <ana@example.com>") == "ok"
    assert not any(text.startswith("ComfyUI") for text in lines)  # not the worker
    assert _status(lines, "FAL_KEY not set") == "warn"


def test_a_fresh_clone_without_hooks_and_a_remote_that_is_gone(sandbox: Sandbox, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(sandbox.remote), str(fresh))
    hooks = cli("doctor", cwd=fresh)
    assert hooks.returncode == 0, hooks.stdout
    assert _status(_lines(hooks.stdout), f"hooks: not installed in {fresh / '.git' / 'hooks'}: pre-commit") == "warn"
    assert "renderloop init ." in hooks.stdout
    (sandbox.mac / "hooks" / "pre-commit").write_text("#!/bin/sh\nPYTHON=python3\nexit 0\n")  # a pulled change
    refused = cli("doctor", cwd=sandbox.mac)  # never installed: said, with the way out
    assert _status(_lines(refused.stdout), "hooks: hooks/pre-commit is not renderloop's hook") == "warn"
    assert "(it would run other commands on this machine): delete it and `renderloop init .` writes" in refused.stdout
    text = (sandbox.mac / ".git" / "hooks" / "pre-commit").read_text()  # another Python's hooks: stale
    (sandbox.mac / "hooks" / "pre-commit").write_text(shim("pre-commit"))
    (sandbox.mac / ".git" / "hooks" / "pre-commit").write_text(text.replace(f"PYTHON='{PYTHON_POSIX}'", "PYTHON='/old/python'"))
    stale = cli("doctor", cwd=sandbox.mac)
    assert _status(_lines(stale.stdout), "hooks: not as `renderloop init .` would install them now") == "warn"
    assert "(hooks/ changed, or another Python): pre-commit" in stale.stdout
    git(fresh, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    gone = cli("doctor", cwd=fresh)
    assert gone.returncode == 1
    assert _status(_lines(gone.stdout), "remote origin (") == "FAIL"


def test_no_git_identity_blocks_the_persons_machine(sandbox: Sandbox, tmp_path: Path) -> None:
    empty = tmp_path / "empty.gitconfig"
    empty.write_text("")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(empty)}
    env.pop("EMAIL", None)
    git(sandbox.mac, "config", "--unset-all", "user.name", check=False)
    person = cli("doctor", cwd=sandbox.mac, env=env)
    assert person.returncode == 1
    assert _status(_lines(person.stdout), "git identity: user.name and user.email not set") == "FAIL"
    worker = cli("doctor", "--worker", "--backend", "placeholder", "--comfyui", "127.0.0.1:9", cwd=sandbox.mac,
                 env=env)
    assert _status(_lines(worker.stdout), "git identity: user.name and user.email not set") == "warn"
