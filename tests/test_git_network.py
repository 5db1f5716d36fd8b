"""Git never waits for a person or a dead network: real remotes on 127.0.0.1 that ask or stay silent."""
from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from studio import git as studio_git
from tests.helpers import Sandbox, cli, git


class _AsksForPassword(BaseHTTPRequestHandler):
    """A smart-HTTP git server that wants credentials for everything."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="studio"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def asking_remote() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AsksForPassword)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/studio.git"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts every connection and never says a word (a half-open link after sleep)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if text in cmdline and process.pid != os.getpid():
            found.append(f"{process.pid}: {cmdline}")
    return found


def _worker_once(sandbox: Sandbox, url: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    git(sandbox.worker, "remote", "set-url", "origin", url)
    env = {**os.environ, studio_git.TIMEOUT_ENV: str(timeout)}
    started = time.monotonic()
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once", env=env, timeout=120)
    return result, time.monotonic() - started


def test_worker_once_with_a_remote_asking_for_credentials_fails_at_once(sandbox: Sandbox, asking_remote: str) -> None:
    result, took = _worker_once(sandbox, asking_remote, timeout=30)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"renderloop: error: cannot fetch: origin ({asking_remote}) asked for credentials"), last
    assert took < 30  # it did not wait for the deadline: nobody was asked


def test_worker_once_with_a_remote_that_never_answers_stops_at_its_deadline(
    sandbox: Sandbox, silent_port: int
) -> None:
    url = f"http://127.0.0.1:{silent_port}/studio.git"
    result, took = _worker_once(sandbox, url, timeout=3)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"renderloop: error: cannot fetch: origin ({url}) did not answer within 3 s", last
    assert took < 3 + 15  # the deadline, plus starting Python and the worker on a loaded machine
    assert _processes_mentioning(f"127.0.0.1:{silent_port}") == []  # git-remote-http died with git


def test_the_deadline_kills_the_whole_process_tree(tmp_path: Path, silent_port: int) -> None:
    git(tmp_path, "init", "-q")
    url = f"http://127.0.0.1:{silent_port}/studio.git"
    started = time.monotonic()
    with pytest.raises(studio_git.GitTimeout) as raised:
        studio_git.run(tmp_path, "fetch", url, "main", timeout=1)
    assert time.monotonic() - started < 8
    assert "got no answer within 1 s" in str(raised.value)
    # git runs git-remote-http, which holds the connection: killing git alone would leave it
    assert _processes_mentioning(f"127.0.0.1:{silent_port}") == []


def test_a_network_command_has_a_deadline_even_when_none_is_given(
    tmp_path: Path, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(tmp_path, "init", "-q")
    monkeypatch.setenv(studio_git.TIMEOUT_ENV, "1")
    with pytest.raises(studio_git.GitTimeout):
        studio_git.ls_remote_head(tmp_path, f"http://127.0.0.1:{silent_port}/x.git", "main")


def test_ssh_never_prompts(tmp_path: Path, silent_port: int) -> None:
    """An ssh remote that never answers: ssh in batch mode, and the deadline ends it."""
    git(tmp_path, "init", "-q")
    started = time.monotonic()
    with pytest.raises(studio_git.GitTimeout):
        studio_git.run(tmp_path, "ls-remote", f"ssh://git@127.0.0.1:{silent_port}/studio.git", timeout=2)
    assert time.monotonic() - started < 8
    assert _processes_mentioning(f"-p {silent_port}") == []  # ssh died with git


def test_the_environment_is_a_value_and_os_environ_is_never_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_DIR", "/elsewhere/.git")  # as inside a hook
    monkeypatch.setenv("GIT_INDEX_FILE", ".git/index.lock")
    before = dict(os.environ)
    studio_git.run_no_repository_code(tmp_path)
    env = studio_git.environment()
    assert dict(os.environ) == before
    assert "GIT_DIR" not in env and "GIT_INDEX_FILE" not in env
    settings = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}
    assert settings["core.hooksPath"] == str((tmp_path / "no-hooks").absolute())
    assert settings["core.fsmonitor"] == "false"
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GCM_INTERACTIVE"] == "never"
    assert "BatchMode=yes" in env["GIT_SSH_COMMAND"] and "ConnectTimeout=" in env["GIT_SSH_COMMAND"]
    # the askpass programs fail rather than answer
    for name in ("GIT_ASKPASS", "SSH_ASKPASS"):
        asked = subprocess.run([env[name], "Password for 'https://example.com': "], capture_output=True)
        assert asked.returncode != 0 and asked.stdout == b""
    studio_git.use_index(".git/index.lock")
    assert studio_git.environment()["GIT_INDEX_FILE"] == str(Path(".git/index.lock").absolute())


def test_a_configured_ssh_command_is_kept_and_made_non_interactive(tmp_path: Path) -> None:
    env = studio_git.environment(base={"PATH": "", "GIT_SSH_COMMAND": "ssh -i key"})
    assert env["GIT_SSH_COMMAND"].startswith("ssh -i key -o BatchMode=yes")
    env = studio_git.environment(base={"PATH": ""}, ssh_command="plink -batch")
    assert env["GIT_SSH_COMMAND"] == "plink -batch"  # not ssh: its options are its own
    env = studio_git.environment(base={"PATH": ""}, ssh_command='"C:/Program Files/OpenSSH/ssh.exe" -i k')
    assert "BatchMode=yes" in env["GIT_SSH_COMMAND"]


def test_the_cleared_variables_are_those_git_names_repository_local(tmp_path: Path) -> None:
    local = set(git(tmp_path, "rev-parse", "--local-env-vars").stdout.split())
    assert studio_git.REPOSITORY_VARS == local - {"GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT"}
