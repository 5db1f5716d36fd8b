"""The worker's clone is held with an OS lock: one holder among many starters, freed when it dies."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from studio.oslock import FileLock
from tests.helpers import Sandbox

# Waits for the go file (so that every starter tries at the same moment), takes the clone,
# says whether it got it, and holds it until its stdin closes.
STARTER = """
import sys, time
from pathlib import Path
from studio.errors import FatalError
from studio.layout import Studio
from win_side.repo import WorkerRepo

go = Path(sys.argv[2])
repo = WorkerRepo(Studio.at(Path(sys.argv[1])))
while not go.exists():
    time.sleep(0.005)
start_at = float(go.read_text() or 0)
while time.time() < start_at:
    pass
try:
    repo.acquire()
except FatalError as exc:
    print("refused:", exc, flush=True)
    sys.exit(1)
print("holds", flush=True)
sys.stdin.read()
repo.release()
"""
STARTERS = 20


def start(sandbox: Sandbox, go: Path, started: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(sandbox.worker), str(go)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    started.append(proc)
    return proc


def stop_all(started: list[subprocess.Popen[str]]) -> None:
    for proc in started:
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def test_of_many_simultaneous_starts_exactly_one_holds_the_clone(sandbox: Sandbox, tmp_path: Path) -> None:
    go = tmp_path / "go"
    pid_file = sandbox.worker / ".git" / "renderloop" / "worker.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{dead_pid()}\n")  # left by a worker killed long ago: every starter sees it stale
    started: list[subprocess.Popen[str]] = []
    procs = [start(sandbox, go, started) for _ in range(STARTERS)]
    try:
        time.sleep(1.0)  # most have imported and wait for the go file
        go.write_text(f"{time.time() + 1.0}")  # ...which names the moment all of them start
        answers = [first_line(proc) for proc in procs]
        holders = [proc for proc, answer in zip(procs, answers) if answer == "holds"]
        assert len(holders) == 1, answers
        (holder,) = holders
        refusals = [answer for answer in answers if answer != "holds"]
        assert len(refusals) == STARTERS - 1
        # the holder names itself once it has written its pid: later refusals say who it is
        late = start(sandbox, go, started)
        assert f"another worker (pid {holder.pid}) is using" in first_line(late)
        assert late.wait(timeout=30) == 1
    finally:
        stop_all(started)


def test_a_killed_holder_frees_the_clone(sandbox: Sandbox, tmp_path: Path) -> None:
    go = tmp_path / "go"
    go.touch()
    started: list[subprocess.Popen[str]] = []
    holder = start(sandbox, go, started)
    try:
        assert first_line(holder) == "holds"
        refused = start(sandbox, go, started)
        assert first_line(refused).startswith("refused:")
        holder.kill()  # SIGKILL: no release, no clean-up; its pid file stays behind
        holder.wait()
        successor = start(sandbox, go, started)
        assert first_line(successor) == "holds"
        assert successor.stdin is not None
        successor.stdin.close()  # released on a clean exit: the next one takes it at once
        assert successor.wait(timeout=30) == 0
        # a pid file naming a live process that holds nothing (a pid reused) blocks nobody
        (sandbox.worker / ".git" / "renderloop" / "worker.pid").write_text(f"{os.getpid()}\n")
        assert first_line(start(sandbox, go, started)) == "holds"
    finally:
        stop_all(started)


def test_the_lock_is_exclusive_and_unlock_lets_another_take_it(tmp_path: Path) -> None:
    first, second = FileLock(tmp_path / "sub" / "x.lock"), FileLock(tmp_path / "sub" / "x.lock")
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        first.unlock()
        assert second.try_acquire()
        assert not first.try_acquire()
    finally:
        first.close()
        second.close()
