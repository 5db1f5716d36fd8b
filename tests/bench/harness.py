"""The benchmark rig: real git, the real worker and ComfyUI test servers, each in its own process.

A :class:`Rig` is a studio as it lives in production: a bare remote, the
person's clone (the Mac) and the worker's clone.  The bare remote logs every
ref update it receives (a ``post-receive`` hook writing a wall-clock time),
so "the last render commit reached the remote" is known to the millisecond
without polling.  :class:`ServerProcess` runs ``python -m tests.comfyui_server``
at a fixed render time; :class:`WorkerProcess` runs ``renderloop worker`` as a
person would.  Times that cross processes are wall-clock (``time.time()``);
GPU-side spans and gaps come from one server's own ``perf_counter`` timeline.
"""
from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import requests

from mac_side.init import init
from studio.record import RenderRecord
from tests.helpers import git
from tests.reliability.harness import wait_for

REPO = Path(__file__).resolve().parents[2]
MODEL = "z-image-turbo"  # installed on the test server by default; 8 sampler steps with previews

POST_RECEIVE = """#!/bin/sh
# renderloop benchmarks: when each ref update reached this remote.
while read old new ref; do
  echo "$(date +%s.%N) $new $ref" >> "{log}"
done
"""


def repeat(what: str, default: int) -> int:
    """How many times a scenario runs: ``RENDERLOOP_BENCH_<WHAT>`` or ``default``."""
    return max(1, int(os.environ.get(f"RENDERLOOP_BENCH_{what}", default)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def batch_yaml(slugs: list[str], tag: str, models: tuple[str, ...] = (MODEL,)) -> str:
    """A batch of ``slugs``; with several ``models``, prompt i uses models[i % len(models)]."""
    lines = ["version: 1", f"model: {MODEL}", "width: 512", "height: 384", "prompts:"]
    for index, slug in enumerate(slugs):
        lines += [f"  - slug: {slug}", f'    prompt: "{tag} benchmark image {index}, gouache"', f"    seed: {index + 1}"]
        if models[index % len(models)] != MODEL:
            lines.append(f"    model: {models[index % len(models)]}")
    return "\n".join(lines) + "\n"


@dataclass
class Push:
    at: float  # wall clock
    sha: str
    ref: str


@dataclass
class Rig:
    """Bare remote + the person's clone + the worker's clone, on real git."""

    root: Path
    remote: Path
    person: Path
    worker: Path
    pushes_log: Path
    counter: int = 0

    @classmethod
    def create(cls, root: Path, worker_url: Optional[str] = None) -> "Rig":
        """``worker_url``: the worker clone's origin (default: the bare repository's path, watched)."""
        seed = root / "seed"
        init(seed)
        remote = root / "remote.git"
        git(root, "clone", "--quiet", "--bare", str(seed), str(remote))
        pushes_log = root / "pushes.log"
        hook = remote / "hooks" / "post-receive"
        hook.write_text(POST_RECEIVE.format(log=pushes_log.as_posix()), encoding="utf-8", newline="\n")
        hook.chmod(0o755)
        person, worker = root / "person", root / "worker"
        git(root, "clone", "--quiet", str(remote), str(person))  # no hooks: the Mac side is not measured
        git(root, "clone", "--quiet", worker_url or str(remote), str(worker))
        git(worker, "config", "user.name", "renderloop worker")
        git(worker, "config", "user.email", "worker@example.com")
        return cls(root, remote, person, worker, pushes_log)

    def commit_batch(self, name: str, count: int, models: tuple[str, ...] = (MODEL,)) -> list[str]:
        """Pull the worker's commits, then commit ``batches/<name>.yaml`` with ``count`` prompts (not pushed)."""
        git(self.person, "pull", "--quiet", "--ff-only")
        slugs = [f"{name}-{i:03d}" for i in range(count)]
        path = self.person / "batches" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(batch_yaml(slugs, name, models), encoding="utf-8", newline="\n")
        git(self.person, "add", str(path))
        git(self.person, "commit", "--quiet", "--no-verify", "-m", f"batch {name}")
        return slugs

    def push(self) -> float:
        """The person's ``git push``; returns the wall-clock time it ended (t0)."""
        git(self.person, "push", "--quiet")
        return time.time()

    def pushes(self) -> list[Push]:
        if not self.pushes_log.exists():
            return []
        rows = []
        for line in self.pushes_log.read_text(encoding="utf-8").splitlines():
            at, sha, ref = line.split()
            rows.append(Push(float(at), sha, ref))
        return rows

    def rendered(self, batch: str, sha: str) -> int:
        """How many render commits of ``batch`` the remote's commit ``sha`` contains."""
        text = git(self.remote, "log", "--format=%s", f"--grep=^render({batch}): ", sha).stdout
        return len(text.splitlines())

    def statuses(self, batch: str) -> dict[str, int]:
        """How many of the batch's records (in the worker's clone) say done, failed..."""
        counts: dict[str, int] = {}
        for path in (self.worker / "renders" / batch).glob("*.json"):
            status = RenderRecord.model_validate_json(path.read_bytes()).status
            counts[status] = counts.get(status, 0) + 1
        return counts

    def wait_rendered(self, batch: str, count: int, timeout: float) -> Push:
        """Wait until the remote holds ``count`` render commits of ``batch``; the push that completed it."""
        checked = 0

        def complete() -> Optional[Push]:
            nonlocal checked
            pushes = self.pushes()
            for push in pushes[checked:]:
                if push.ref == "refs/heads/main" and self.rendered(batch, push.sha) >= count:
                    return push
            checked = len(pushes)
            return None

        return wait_for(complete, timeout, f"{count} render commits of {batch} on the remote", 0.05)  # type: ignore[return-value]


class ServerProcess:
    """``python -m tests.comfyui_server`` at a fixed render time, in its own process."""

    def __init__(self, root: Path, render_seconds: float, load_seconds: float = 0.0) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        self.log = (root / "server.log").open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.comfyui_server", "--port", str(self.port),
             "--render-seconds", str(render_seconds), "--load-seconds", str(load_seconds),
             "--root", str(root / "files")],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for(self._answers, 30, f"the test server at {self.url}", 0.05)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the test server exited with {self.proc.returncode}; see {self.root / 'server.log'}")
        try:
            return requests.get(self.url + "/prompt", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def timeline(self) -> list[tuple[str, float, float]]:
        """(prompt_id, start, end) of every execution, on the wall clock."""
        perf, wall = requests.get(self.url + "/_test/clock", timeout=10).json()
        rows = requests.get(self.url + "/_test/timeline", timeout=10).json()
        return [(prompt_id, start - perf + wall, end - perf + wall) for prompt_id, start, end, *_ in rows]

    def executions(self) -> list[tuple[str, float, float, str, bool]]:
        """(prompt_id, start, end, model, switched) of every execution, on the server's own clock."""
        return [tuple(row) for row in requests.get(self.url + "/_test/timeline", timeout=10).json()]

    def submissions(self) -> list[tuple[str, float]]:
        return [tuple(row) for row in requests.get(self.url + "/_test/submissions", timeout=10).json()]

    def close(self) -> None:
        _interrupt(self.proc)
        self.log.close()


class WorkerProcess:
    """``renderloop worker --backend comfyui`` on the rig's worker clone, until stopped."""

    def __init__(self, rig: Rig, urls: list[str], *extra: str, window: int = 2,
                 env: Optional[dict[str, str]] = None) -> None:
        self.log_path = rig.root / f"worker-{len(list(rig.root.glob('worker-*.log')))}.log"
        self.log = self.log_path.open("w", encoding="utf-8")
        servers = [arg for url in urls for arg in ("--comfyui", url)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "renderloop", "worker", "--repo", str(rig.worker), "--backend", "comfyui",
             *servers, "--window", str(window), "--name", "bench", *extra],
            cwd=rig.worker, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
        wait_for(lambda: self._logged("watching ", "polling "), 60, "the worker to watch its remote", 0.05)

    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def _logged(self, *needles: str) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {self.proc.returncode}:\n{self.text()[-3000:]}")
        text = self.text()
        return any(needle in text for needle in needles)

    def close(self) -> int:
        code = _interrupt(self.proc)
        self.log.close()
        return code


def _interrupt(proc: subprocess.Popen, timeout: float = 30) -> int:
    """Ctrl+C (SIGINT; CTRL_BREAK is not ours to send on Windows: terminate there), then kill if it hangs."""
    if proc.poll() is None:
        if os.name == "nt":
            proc.terminate()
        else:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# ------------------------------------------------------------------ figures
@dataclass
class GpuSide:
    """One server's executions of one batch, from its own timeline."""

    durations: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    first_start: float = 0.0
    last_end: float = 0.0

    @classmethod
    def of(cls, timeline: list[tuple[str, float, float]], ids: set[str]) -> "GpuSide":
        rows = sorted((start, end) for prompt_id, start, end in timeline if prompt_id in ids)
        if not rows:
            return cls()
        return cls(
            durations=[end - start for start, end in rows],
            gaps=[b[0] - a[1] for a, b in zip(rows, rows[1:])],
            first_start=rows[0][0],
            last_end=rows[-1][1],
        )

    @property
    def span(self) -> float:
        return self.last_end - self.first_start


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class GitDaemon:
    """``git daemon`` on 127.0.0.1 serving the rig's folder: a remote that is not on the worker's disk, as far
    as the worker can tell (``git://``), so it polls with ``git ls-remote`` instead of watching."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.base = base
        self.proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1",
             f"--port={self.port}", f"--base-path={base}", str(base)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self._listening, 30, "git daemon", 0.05)

    def url(self, repo: Path) -> str:
        return f"git://127.0.0.1:{self.port}/{repo.relative_to(self.base).as_posix()}"

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
