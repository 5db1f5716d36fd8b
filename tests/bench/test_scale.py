"""Issue 13: costs that do not grow with history, measured on synthetic studios (tests/bench/synthetic.py).

Sizes: 0 and 200 renders, 0 and 100,000 ledger lines; with ``RENDERLOOP_BENCH_LARGE=1`` also 2,000
renders and 1,000,000 lines (building those takes minutes the first time; they are kept in
``RENDERLOOP_BENCH_CACHE``). Every figure is a median of several runs of the real command in its own
process, and lands in the summary at the end (and in ``RENDERLOOP_BENCH_SCALE_JSON`` when set).
"""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.bench.harness import POST_RECEIVE, Rig, ServerProcess, WorkerProcess
from tests.bench.synthetic import Synthetic, cached
from tests.bench.test_dispatch import RENDER_SECONDS, _measure
from tests.helpers import git

LARGE = os.environ.get("RENDERLOOP_BENCH_LARGE") == "1"
RENDERS = [0, 200, *([2000] if LARGE else [])]
LINES = [0, 100_000, *([1_000_000] if LARGE else [])]
RUNS = int(os.environ.get("RENDERLOOP_BENCH_RUNS", "5"))
REPO = Path(__file__).resolve().parents[2]

FIGURES: dict[str, float] = {}
# Building and cloning studios of 2,000 images and a million verdicts takes minutes: past the suite's 300 s.
pytestmark = pytest.mark.timeout(3 * 3600)  # "figure | size" -> median seconds


def record(name: str, size: str, values: list[float]) -> float:
    value = statistics.median(values)
    FIGURES[f"{name} | {size}"] = value
    if CPU:
        FIGURES[f"{name} [cpu] | {size}"] = statistics.median(CPU)
        CPU.clear()
    out = os.environ.get("RENDERLOOP_BENCH_SCALE_JSON")
    if out:
        Path(out).write_text(json.dumps(FIGURES, indent=1, sort_keys=True), encoding="utf-8")
    return value


CPU: list[float] = []  # CPU seconds of the processes each timed run waited for (user + system): load-proof


def timed(runs: int, action: Callable[[], object], before: Callable[[], object] | None = None) -> list[float]:
    """Wall seconds of each run of ``action``; its child processes' CPU seconds go to :data:`CPU`."""
    values = []
    CPU.clear()
    for _ in range(runs):
        if before:
            before()
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        action()
        values.append(time.perf_counter() - started)
        now = resource.getrusage(resource.RUSAGE_CHILDREN)
        CPU.append(now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime)
    return values


def renderloop(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "renderloop", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"renderloop {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("scale")
    yield path
    shutil.rmtree(path, ignore_errors=True)  # full checkouts of 2,000 images are 2.6 GB each


def serve_thin_clones(remote: Path) -> None:
    """Let ``remote`` serve partial clones, as `renderloop hub init` sets it (git ignores the filter otherwise)."""
    for key in ("uploadpack.allowFilter", "uploadpack.allowAnySHA1InWant"):
        git(remote, "config", key, "true")


def worker_clone(url: str, dest: Path, thin: bool) -> Path:
    """The worker's clone of ``url``: ``renderloop clone --batches 0`` when ``thin``, else a full ``git clone``."""
    if thin:
        renderloop("clone", url, str(dest), "--batches", "0", cwd=dest.parent)
    else:
        git(dest.parent, "clone", "--quiet", url, str(dest))
    git(dest, "config", "user.name", "renderloop worker")
    git(dest, "config", "user.email", "worker@example.com")
    return dest


def rig_of(made: Synthetic, root: Path, thin: bool = False) -> Rig:
    """The benchmark rig on a synthetic studio: the person's clone checks out no images.

    ``thin``: the worker's clone is the one README advises for a GPU box, ``renderloop clone URL DIR
    --batches 0`` (a partial clone checking out no image); otherwise a full ``git clone``.
    """
    root.mkdir(parents=True)
    remote = root / "remote.git"
    git(root, "clone", "--quiet", "--bare", str(made.remote), str(remote))
    serve_thin_clones(remote)
    pushes_log = root / "pushes.log"
    hook = remote / "hooks" / "post-receive"
    hook.write_text(POST_RECEIVE.format(log=pushes_log.as_posix()), encoding="utf-8", newline="\n")
    hook.chmod(0o755)
    person = root / "person"
    git(root, "clone", "--quiet", "--sparse", str(remote), str(person))
    git(person, "sparse-checkout", "add", "batches")
    worker = worker_clone(remote.as_uri() if thin else str(remote), root / "worker", thin)
    return Rig(root, remote, person, worker, pushes_log)


# ---------------------------------------------------------------- item 3: planning that does not repeat itself


@pytest.mark.parametrize("clone", ["thin", "full"])
def test_worker_once_with_nothing_to_do(clone: str, scratch: Path) -> None:
    """Every size's clone is made first, then their runs are interleaved (0, 200, 2,000, 0, ...): a
    machine that slows down or speeds up meanwhile weighs on every size alike, not on the last one."""
    clones = {}
    for renders in RENDERS:
        made, thin = cached(renders, 0), clone == "thin"
        url = made.remote.as_uri() if thin else str(made.remote)  # file://: the filter; a path: hard links
        clones[renders] = worker_clone(url, scratch / f"idle-{renders}-{clone}", thin)

    def once(here: Path) -> None:
        renderloop("worker", "--repo", str(here), "--backend", "placeholder", "--once", "--no-push", cwd=here)

    for here in clones.values():
        once(here)  # the first run after a clone learns every file (the cache is in .git, per clone)
    walls: dict[int, list[float]] = {renders: [] for renders in clones}
    cpus: dict[int, list[float]] = {renders: [] for renders in clones}
    for _ in range(RUNS):
        for renders, here in clones.items():
            walls[renders] += timed(1, lambda: once(here))
            cpus[renders] += CPU
    for renders, here in clones.items():
        CPU[:] = cpus[renders]
        value = record(f"worker --once, nothing to do, {clone} clone", f"{renders} renders", walls[renders])
        assert not git(here, "status", "--porcelain").stdout  # rendered nothing, changed nothing
        assert value < 5


@pytest.mark.parametrize("clone", ["thin", "full"])
@pytest.mark.parametrize("renders", RENDERS)
def test_push_to_first_render(renders: int, clone: str, scratch: Path) -> None:
    rig = rig_of(cached(renders, 0), scratch / f"push-{renders}-{clone}", thin=clone == "thin")
    server = ServerProcess(scratch / f"push-{renders}-{clone}-server", RENDER_SECONDS)
    worker = None
    try:
        worker = WorkerProcess(rig, [server.url])

        class Bench:  # what _measure needs of pytest-benchmark
            extra_info: dict = {}

            @staticmethod
            def pedantic(action, setup, rounds, iterations):  # type: ignore[no-untyped-def]
                for _ in range(rounds):
                    args, _ = setup()
                    action(*args)

        latencies = _measure(Bench(), rig, server, worker, "scale", RUNS)
        record(f"push to first render, {clone} worker clone", f"{renders} renders", latencies)
    finally:
        if worker:
            worker.close()
        server.close()


# ---------------------------------------------------------------- item 2: thin clones


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.parametrize("renders", RENDERS)
def test_clone_full_and_thin(renders: int, scratch: Path) -> None:
    made = cached(renders, 0)
    url = made.remote.as_uri()  # file://: git packs and sends objects as over a network, no hard links
    for kind, args in (("full", ["git", "clone", "--quiet", url]), ("thin", ["renderloop", "clone", url])):
        seconds, disk, fetched = [], [], []
        for run in range(max(1, RUNS // 2)):
            dest = scratch / f"clone-{kind}-{renders}-{run}"
            started = time.perf_counter()
            if kind == "full":
                git(scratch, *args[1:], str(dest))
            else:
                renderloop(*args[1:], str(dest), "--batches", "3", cwd=scratch)
            seconds.append(time.perf_counter() - started)
            disk.append(_size(dest))
            fetched.append(_size(dest / ".git" / "objects"))
            assert not git(dest, "status", "--porcelain").stdout
            shutil.rmtree(dest)
        record(f"clone ({kind})", f"{renders} renders", seconds)
        FIGURES[f"clone ({kind}) MB on disk | {renders} renders"] = statistics.median(disk) / 1e6
        FIGURES[f"clone ({kind}) MB fetched | {renders} renders"] = statistics.median(fetched) / 1e6


# ---------------------------------------------------------------- item 1: ledger cost follows what changed

LEDGER_RENDERS = 2000 if LARGE else 200  # the studio the ledger figures are measured on


def person_clone(lines: int, dest: Path) -> Path:
    """The person's clone (hooks enabled) of the studio with ``lines`` verdicts; images of 3 batches only."""
    made = cached(LEDGER_RENDERS, lines)
    renderloop("clone", made.remote.as_uri(), str(dest), "--batches", "3", cwd=dest.parent)
    renderloop("init", str(dest), cwd=dest)
    git(dest, "config", "user.name", "Person")
    git(dest, "config", "user.email", "person@example.com")
    return dest


VERDICT = re.compile(r"^verdict:[^\n]*\ncues:\n(?:- [^\n]*\n)*", re.MULTILINE)


def type_verdicts(here: Path, batches: list[str], count: int, tag: str) -> None:
    """Fill in ``count`` verdicts (rerolls with the cue ``tag``, new each time) in the reviews of ``batches``."""
    left = count
    for batch in batches:
        if left <= 0:
            return
        review = here / "renders" / batch / "review.md"
        text, typed = VERDICT.subn(f"verdict: reroll\ncues:\n- {tag}\n", review.read_text(encoding="utf-8"), count=left)
        review.write_text(text, encoding="utf-8", newline="\n")
        left -= typed


@pytest.mark.parametrize("lines", LINES)
def test_ledger_costs(lines: int, scratch: Path) -> None:
    here = person_clone(lines, scratch / f"ledger-{lines}")
    size = f"{lines} lines, {LEDGER_RENDERS} renders"
    made = cached(LEDGER_RENDERS, lines)
    renderloop("review", cwd=here)  # every review written (and staged): the starting point
    git(here, "commit", "-q", "-m", "reviews")
    many = min(500, LEDGER_RENDERS)
    batches = made.batches
    runs = iter(range(1000))

    for count in (1, many):
        def setup(count: int = count) -> None:
            type_verdicts(here, batches, count, f"take {next(runs)}")

        def act(count: int = count) -> None:
            done = git(here, "commit", "-q", "-am", f"{count} verdicts")
            assert f"recorded {count} verdict" in done.stdout + done.stderr, done.stdout + done.stderr

        record(f"hook: commit a review of {count} verdict(s)", size, timed(RUNS, act, setup))

    def plain() -> None:
        (here / "notes.txt").write_text(f"{time.time()}\n", encoding="utf-8")
        git(here, "add", "notes.txt")
        git(here, "commit", "-q", "-m", "a note")

    record("hook: a commit with no review", size, timed(RUNS, plain))
    for verb in ("status", "stats"):
        renderloop(verb, cwd=here)
        record(f"renderloop {verb}", size, timed(RUNS, lambda: renderloop(verb, cwd=here)))
    record("renderloop ledger verify (new commits only)", size,
           timed(RUNS, lambda: renderloop("ledger", "verify", cwd=here), lambda: plain() or _verdict(here)))
    record("renderloop ledger verify --full", size, timed(max(1, RUNS // 2), lambda: renderloop("ledger", "verify", "--full", cwd=here)))


def settle(timeout: float = 30.0) -> None:
    """Wait until no git started by an earlier step (``gc --auto`` in the background) still runs."""
    import psutil

    deadline = time.monotonic() + timeout
    me = psutil.Process()
    while time.monotonic() < deadline:
        busy = [p for p in psutil.process_iter(["name", "cmdline"])
                if p.pid != me.pid and (p.info["name"] or "").startswith("git")
                and any(word in (p.info["cmdline"] or []) for word in ("gc", "maintenance", "repack", "pack-objects"))]
        if not busy:
            return
        time.sleep(0.05)


def _verdict(here: Path) -> None:
    """One more verdict committed, so that verify has a new commit to check."""
    with (here / "ledger.jsonl").open("rb") as f:
        f.seek(-2, 2)
        while f.read(1) != b"\n":
            f.seek(-2, 1)
        last = f.read()
    (here / "ledger.jsonl").open("ab").write(last.replace(b'"id": "0', b'"id": "1', 1))
    git(here, "commit", "-q", "--no-verify", "-am", "one more verdict")


@pytest.mark.parametrize("tree", ["clean", "review-pending"])
@pytest.mark.parametrize("lines", LINES)
def test_pull_that_writes_a_review(lines: int, tree: str, scratch: Path) -> None:
    """The worker pushes one new render; the person's pull runs post-merge, which writes the batch's review.

    ``clean``: the person committed and pushed the last review before pulling. ``review-pending``: the last
    review is still staged, so git sets it aside (autoStash) and the hook hands over to a waiter that
    writes the review once git has put it back; the time is until that review is written.
    """
    scratch = scratch / tree
    scratch.mkdir(exist_ok=True)
    here = person_clone(lines, scratch / f"pull-{lines}")
    made = cached(LEDGER_RENDERS, lines)
    worker = worker_clone(made.remote.as_uri(), scratch / f"pull-{lines}-worker", thin=True)
    remote = scratch / f"pull-{lines}-remote.git"
    git(scratch, "clone", "-q", "--bare", str(made.remote), str(remote))
    serve_thin_clones(remote)
    for clone in (here, worker):  # file://: git's own transport, filter included, as over a network
        git(clone, "remote", "set-url", "origin", remote.as_uri())
        git(clone, "fetch", "-q")
    runs = iter(range(1000))

    def render_one() -> None:
        if tree == "clean" and git(here, "status", "--porcelain").stdout:
            git(here, "commit", "-q", "--no-verify", "-m", "the review, as generated")
            git(here, "push", "-q")
        name = f"new-{next(runs):03d}"
        batch = worker / "batches" / f"{name}.yaml"
        batch.write_text(f"version: 1\nmodel: z-image-turbo\nwidth: 512\nheight: 384\nprompts:\n  - slug: {name}\n"
                         f"    prompt: {name}\n", encoding="utf-8", newline="\n")
        git(worker, "add", str(batch))
        git(worker, "commit", "-q", "-m", f"batch {name}")
        renderloop("worker", "--repo", str(worker), "--backend", "placeholder", "--once", cwd=worker)
        settle()  # the worker is another machine: what it left running in the background is not the pull's cost

    def pull() -> None:
        done = git(here, "pull", "-q", "--no-rebase")
        assert "review.md" in done.stdout + done.stderr, done.stdout + done.stderr

    record(f"pull that writes a review (post-merge), {tree}", f"{lines} lines, {LEDGER_RENDERS} renders",
           timed(RUNS, pull, render_one))
