"""A worker's first start on a fresh box: no git identity, no origin, no backend, a commit that fails."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from tests.helpers import BATCH_YAML, Sandbox, cli, git


def _commit_batch(sandbox: Sandbox) -> None:
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    git(sandbox.mac, "add", "batches/hero.yaml")
    git(sandbox.mac, "commit", "-q", "-m", "batch: hero")
    git(sandbox.mac, "push", "-q")


def _no_identity(tmp_path: Path) -> dict[str, str]:
    """A box where git has never been told who anyone is."""
    home = tmp_path / "fresh-home"
    home.mkdir()
    empty = home / "empty.gitconfig"
    empty.write_text("[protocol \"file\"]\n\tallow = always\n")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("GIT_") and name not in ("EMAIL", "USERPROFILE")}
    env.update(HOME=str(home), USERPROFILE=str(home), GIT_CONFIG_GLOBAL=str(empty), GIT_CONFIG_NOSYSTEM="1")
    return env


def test_a_worker_with_no_git_identity_commits_as_itself(sandbox: Sandbox, tmp_path: Path) -> None:
    _commit_batch(sandbox)
    git(sandbox.worker, "config", "--unset", "user.name")
    git(sandbox.worker, "config", "--unset", "user.email")
    env = _no_identity(tmp_path)
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once",
                 "--name", "Studio_PC", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Please tell me who you are" not in result.stderr
    said = [line for line in (result.stdout + result.stderr).splitlines() if "identity" in line]
    assert len(said) == 1 and "renderloop worker Studio_PC <studio-pc@renderloop.invalid>" in said[0], said
    authors = git(sandbox.remote, "log", "--format=%an <%ae>|%cn <%ce>", "-3", "main").stdout.splitlines()
    assert authors == ["renderloop worker Studio_PC <studio-pc@renderloop.invalid>|"
                       "renderloop worker Studio_PC <studio-pc@renderloop.invalid>"] * 3


def test_a_worker_with_its_own_identity_keeps_it(sandbox: Sandbox) -> None:
    _commit_batch(sandbox)
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once")
    assert result.returncode == 0, result.stderr
    assert "identity" not in result.stdout + result.stderr
    assert git(sandbox.remote, "log", "--format=%ae", "-1", "main").stdout.strip() == "worker@example.com"


def test_a_worker_clone_with_no_origin_says_nothing_was_pushed(sandbox: Sandbox) -> None:
    _commit_batch(sandbox)
    git(sandbox.worker, "pull", "-q")
    git(sandbox.worker, "remote", "remove", "origin")
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if "origin" in line]
    assert len(lines) == 1 and "nothing was pushed" in lines[0] and "3 new commits" in lines[0], result.stderr
    # nothing left to render: still says it, and --once has nothing unpushed of its own
    again = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once")
    assert again.returncode == 0, again.stderr
    assert "nothing was pushed" in again.stderr
    # --no-push asked for it: no word
    quiet = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once", "--no-push")
    assert quiet.returncode == 0 and "pushed" not in quiet.stderr


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_once_gives_up_on_a_backend_that_never_answers(sandbox: Sandbox) -> None:
    _commit_batch(sandbox)
    url = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    result = cli("worker", "--repo", str(sandbox.worker), "--comfyui", url, "--once", "--backend-wait", "3",
                 timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert 3 <= elapsed < 30
    assert f"ComfyUI at {url} not answering; giving up in 3 s" in result.stderr, result.stderr
    assert "renderloop: error:" in result.stderr.strip().splitlines()[-1]
    assert not (sandbox.worker / "renders" / "hero").exists()  # nothing recorded as failed


def test_once_exits_non_zero_when_a_render_cannot_be_committed(sandbox: Sandbox) -> None:
    _commit_batch(sandbox)
    # every commit of this clone fails: signing with a program that is not there
    git(sandbox.worker, "config", "commit.gpgSign", "true")
    git(sandbox.worker, "config", "gpg.program", str(sandbox.root / "no-such-gpg"))
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "3 finished render(s) could not be written" in result.stderr, result.stderr
    assert "cannot run" in result.stderr and "-m render(" not in result.stderr  # git's reason, not its command line
