"""Real worker processes on real git, and the checks that prove nothing was lost or done twice.

The worker runs as ``python -m renderloop worker`` in its own process group
(session), so a kill takes its git commands with it, as a power cut would.
The bare remote's ``git receive-pack`` is started in a session of its own
(``remote.origin.receivepack``), as it would run on another machine: killing
the worker mid-push closes the connection instead of killing the server side
while it holds the branch's lock.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from PIL import Image

from studio.ledger import LedgerLine, new_id
from studio.layout import BATCH_ERROR_NAME, STUDIO_ERROR_NAME
from studio.record import RenderRecord
from tests.helpers import Sandbox, git

POSIX = os.name != "nt"
FULL = os.environ.get("RENDERLOOP_FULL", "") not in ("", "0")
ERROR_RECORDS = (BATCH_ERROR_NAME, STUDIO_ERROR_NAME)  # the worker's own records in renders/, not renders
_run_numbers = itertools.count(1)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def batch_yaml(count: int, size: int = 64, prefix: str = "image") -> str:
    lines = ["version: 1", "model: z-image-turbo", f"width: {size}", f"height: {size}", "prompts:"]
    for i in range(1, count + 1):
        lines += [f"  - slug: {prefix}-{i:02d}", f'    prompt: "test image {i}"']
    return "\n".join(lines) + "\n"


def renders_in(repo: Path, rev: str = "HEAD") -> int:
    """How many render commits ``rev`` has (the bare remote's branch is ``main``)."""
    return len(git(repo, "log", "--format=%H", "--grep=^render(", rev).stdout.split())


def slugs_of(count: int, prefix: str = "image") -> list[str]:
    return [f"{prefix}-{i:02d}" for i in range(1, count + 1)]


# -- the people ---------------------------------------------------------------


def commit_and_push(clone: Path, files: dict[str, str], message: str, verify: bool = False,
                    append: bool = False) -> str:
    """Write (or append to) ``files`` in ``clone``, commit, push; on a lost race pull --rebase and push again.

    Returns the commit as pushed (its hash changes if it had to be rebased).
    """
    for rel, text in files.items():
        path = clone / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a" if append else "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    git(clone, "add", "--", *files)
    git(clone, "commit", "-q", "-m", message, *([] if verify else ["--no-verify"]))
    return push_with_retry(clone)


def plain_clone(sandbox: Sandbox, name: str) -> Path:
    """Another clone of the remote, without the hooks (a second machine, or a script)."""
    clone = sandbox.root / name
    git(sandbox.root, "clone", "--quiet", str(sandbox.remote), str(clone))
    return clone


STAGED_BEFORE_PULL: list[str] = []  # clones whose staged changes had to be committed before a pull


def _staged_changes(clone: Path) -> bool:
    return git(clone, "diff", "--cached", "--quiet", check=False).returncode == 1


def push_with_retry(clone: Path, attempts: int = 50) -> str:
    return push_counting(clone, attempts)[0]


def push_counting(clone: Path, attempts: int = 50, rebase: bool = True) -> tuple[str, int]:
    """Push; when rejected, pull (--rebase, or a merge) and push again. Returns (commit, rejections)."""
    for rejected in range(attempts):
        if git(clone, "push", "-q", "origin", "HEAD:main", check=False).returncode == 0:
            return git(clone, "rev-parse", "HEAD").stdout.strip(), rejected
        how = "--rebase" if rebase else "--no-rebase"
        pulled = git(clone, "pull", "-q", how, "--no-edit", "origin", "main", check=False)
        if pulled.returncode != 0 and _staged_changes(clone):
            # The post-merge hook staged an updated review after the last pull, and git refuses
            # to merge or rebase over staged changes: commit them, as git's message asks.
            STAGED_BEFORE_PULL.append(clone.name)
            git(clone, "commit", "-q", "-m", "review: updated by the hook")
            pulled = git(clone, "pull", "-q", how, "--no-edit", "origin", "main", check=False)
        assert pulled.returncode == 0, f"pull {how} failed in {clone}: {pulled.stdout}{pulled.stderr}"
    raise AssertionError(f"could not push from {clone} in {attempts} attempts")


def ledger_line(batch: str, slug: str, verdict: str = "keep", reviewer: str = "Ana") -> str:
    return LedgerLine(id=new_id(), at="2026-11-27T08:15:02Z", batch=batch, slug=slug, verdict=verdict,
                      cues=["warmer palette"], reviewer=reviewer).to_line()


# -- the worker ---------------------------------------------------------------


def isolate_remote_server(worker_clone: Path) -> None:
    """Run the remote's receive-pack in its own session, like a server on another machine."""
    if POSIX:
        git(worker_clone, "config", "remote.origin.receivepack", "setsid git-receive-pack")


@dataclass
class WorkerRun:
    proc: subprocess.Popen
    log: Path
    fault: str | None
    started: float = field(default_factory=time.monotonic)
    groups: list[int] = field(default_factory=list)  # the worker's and its git commands', when killed

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def wait_started(self, repo: Path, timeout: float = 20) -> None:
        """Until the worker holds its clone (its pid file names it), or it has died."""
        pid_file = git_dir(repo) / "renderloop" / "worker.pid"

        def holds() -> bool:
            try:
                return pid_file.read_text().strip() == str(self.proc.pid)
            except OSError:
                return False

        wait_for(lambda: holds() or not self.alive(), timeout, "the worker to start")

    def kill(self, whole_group: bool = True) -> None:
        """SIGKILL: the worker and the git command it runs, or the worker alone (git finishes orphaned).

        Each git command leads a process group of its own: the worker is stopped
        first, so that none starts between finding them and killing them.
        """
        if POSIX:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGSTOP)
            try:
                self.groups = [self.proc.pid, *(child.pid for child in psutil.Process(self.proc.pid).children())]
            except psutil.Error:
                self.groups = [self.proc.pid]
        for group in self.groups if POSIX and whole_group else []:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.wait_orphans()

    def wait_orphans(self, timeout: float = 20) -> None:
        """Until no process of the worker's group, or of its git commands' groups, is left."""
        if not POSIX:
            return

        def gone() -> bool:
            for group in self.groups or [self.proc.pid]:
                try:
                    os.killpg(group, 0)
                except ProcessLookupError:
                    continue
                except PermissionError:
                    return False
                return False
            return True

        wait_for(gone, timeout, "the worker's git commands to finish", interval=0.01)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> None:
        if self.alive():
            self.kill()


STARTED: list[WorkerRun] = []  # every worker a test started: conftest stops what is left after each test


def start_worker(repo: Path, logs: Path, *args: str, fault: str | None = None,
                 seconds: float = 0.0, env: dict[str, str] | None = None,
                 command: list[str] | None = None, cwd: Path | None = None) -> WorkerRun:
    """``renderloop worker --repo REPO --backend placeholder ARGS`` as a real process, output to a file."""
    environ = dict(os.environ if env is None else env)
    environ.pop("RENDERLOOP_FAULT", None)
    if fault:
        environ["RENDERLOOP_FAULT"] = fault
    environ["PYTHONUNBUFFERED"] = "1"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"worker-{next(_run_numbers):03d}.log"
    argv = (command or [sys.executable, "-m", "renderloop"]) + [
        "worker", "--repo", str(repo), "--name", "storm-box", *args,
    ]
    if "--backend" not in args:
        argv += ["--backend", "placeholder", "--placeholder-seconds", str(seconds)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=cwd,
                                start_new_session=POSIX)
    run = WorkerRun(proc, log, fault)
    STARTED.append(run)
    return run


def git_dir(repo: Path) -> Path:
    return Path(git(repo, "rev-parse", "--absolute-git-dir").stdout.strip())


def take_remote_away(sandbox: Sandbox, run: WorkerRun | None = None) -> Path:
    """Rename the bare remote away, between two pushes: the network is down from now on.

    The worker is paused (SIGSTOP) until no ``git receive-pack`` writes into
    the remote, so the folder never vanishes under one holding a lock (a real
    server's disk does not vanish when the network does).
    """
    away = sandbox.remote.with_name(sandbox.remote.name.replace(".git", "-away.git"))
    if run is not None and POSIX:
        os.kill(run.proc.pid, signal.SIGSTOP)  # its git push, if any, finishes
    try:
        wait_for(lambda: not _serving(sandbox.remote), 30, "the remote's receive-pack to finish")
        sandbox.remote.rename(away)
    finally:
        if run is not None and POSIX:
            os.kill(run.proc.pid, signal.SIGCONT)
    return away


def _serving(remote: Path) -> bool:
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "receive-pack" in cmdline and str(remote) in cmdline:
            return True
    return False


class RaceReferee:
    """A ``pre-receive`` hook on the bare remote that makes two pushes collide, on demand.

    ``hold(who)`` arms it: the next push whose commit was made by ``who`` (the
    local part of the committer's e-mail: ``worker``, ``ana``, ``ben``) is held
    after its objects arrived and before its ref update, until ``release()``.
    A push from the other side lands meanwhile, so the held one fails as a
    lost race does (``cannot lock ref ... expected``): both pushed at once.
    """

    def __init__(self, remote: Path, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        hook = remote / "hooks" / "pre-receive"
        hook.write_text(
            "#!/bin/sh\n"
            "# test only: hold a push until the other side's push has landed\n"
            f"dir='{folder}'\n"
            "while read old new ref; do\n"
            '  who=$(git log -1 --format=%ce "$new" | cut -d@ -f1)\n'
            '  if [ -e "$dir/hold-$who" ]; then\n'
            '    rm -f "$dir/hold-$who"; touch "$dir/held-$who"; n=0\n'
            '    while [ ! -e "$dir/release" ] && [ $n -lt 4000 ]; do sleep 0.005; n=$((n+1)); done\n'
            '    rm -f "$dir/release" "$dir/held-$who"\n'
            "  fi\n"
            "done\n"
            "exit 0\n",
            encoding="utf-8", newline="\n",
        )
        hook.chmod(0o755)

    def hold(self, who: str) -> None:
        (self.folder / f"hold-{who}").touch()

    def wait_held(self, who: str, timeout: float = 30, meanwhile: Callable[[], Any] = lambda: None) -> None:
        """Until ``who``'s push is held; ``meanwhile`` is called while waiting."""
        held = self.folder / f"held-{who}"
        wait_for(lambda: held.exists() or meanwhile(), timeout, f"a push from {who} to arrive")

    def release(self) -> None:
        (self.folder / "release").touch()
        wait_for(lambda: not (self.folder / "release").exists(), 30, "the held push to go on")


# -- what a kill left behind ----------------------------------------------------


def leftovers(sandbox: Sandbox) -> set[str]:
    """What the worker's clone holds right after a kill, in words (for the figures)."""
    repo = sandbox.worker
    gitdir = git_dir(repo)
    found: set[str] = set()
    if (gitdir / "rebase-merge").exists() or (gitdir / "rebase-apply").exists():
        found.add("a rebase in progress")
    if (gitdir / "index.lock").exists():
        found.add("index.lock")
    if any(gitdir.glob("*.lock")) and not (gitdir / "index.lock").exists():
        found.add("a stale lock file")
    if any((gitdir / "refs").rglob("*.lock")):
        found.add("a stale lock file")
    status = git(repo, "status", "--porcelain", "--untracked-files=all", "--ignored", "--", "renders").stdout
    entries = [line[3:] for line in status.splitlines()]
    stems: dict[str, set[str]] = {}
    for rel in entries:
        name = Path(rel).name
        if name.startswith(".") and name.endswith(".tmp"):
            found.add("a temporary file")
            continue
        stem, _, suffix = rel.rpartition(".")
        stems.setdefault(stem, set()).add(suffix)
    for suffixes in stems.values():
        found.add("a PNG and its record, not committed" if suffixes >= {"png", "json"} else
                  "a PNG without its record" if "png" in suffixes else "a record without its PNG")
    if any(line[0] not in " ?!" for line in status.splitlines()):
        found.add("staged files")
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    remote = git(sandbox.remote, "rev-parse", "main").stdout.strip()
    tracking = git(repo, "rev-parse", "refs/remotes/origin/main").stdout.strip()
    if head != remote and git(repo, "merge-base", "--is-ancestor", remote, head, check=False).returncode == 0:
        found.add("commits not pushed")
    if remote == head and tracking != head:
        found.add("a push that landed unbeknown to the worker")
    return found or {"nothing"}


# -- the proof --------------------------------------------------------------------


class Blobs:
    """``git cat-file --batch`` in one process: the bytes of any object by hash."""

    def __init__(self, repo: Path) -> None:
        self.proc = subprocess.Popen(["git", "cat-file", "--batch"], cwd=repo, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)

    def read(self, sha: str) -> bytes:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(sha.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        assert len(header) == 3, f"object {sha} missing: {header!r}"
        data = self.proc.stdout.read(int(header[2]))
        self.proc.stdout.read(1)
        return data

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


@dataclass
class History:
    commits: int = 0
    render_commits: Counter = field(default_factory=Counter)  # (batch, slug) -> render commits
    pngs_checked: int = 0
    trees_walked: int = 0


def prove_history(repo: Path, rev: str = "HEAD") -> History:
    """Walk every commit's tree: each PNG decodes, has its record, and matches its png_sha256.

    Each render commit changes exactly its own image and record.  Returns the
    render commits per (batch, slug) for the caller's once-only check.
    """
    history = History()
    blobs = Blobs(repo)
    verified: dict[tuple[str, str], None] = {}
    try:
        shas = git(repo, "rev-list", rev).stdout.split()
        history.commits = len(shas)
        for sha in shas:
            _prove_tree(repo, sha, blobs, verified, history)
            _prove_commit(repo, sha, history)
    finally:
        blobs.close()
    return history


def _prove_tree(repo: Path, sha: str, blobs: Blobs, verified: dict, history: History) -> None:
    listing = git(repo, "ls-tree", "-r", "-z", sha, "--", "renders").stdout
    files: dict[str, str] = {}
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        files[path] = meta.split()[2]
    history.trees_walked += 1
    for path, blob in files.items():
        name = Path(path).name
        assert not name.endswith(".tmp"), f"{sha[:10]} commits a temporary file {path}"
        if not path.endswith(".png"):
            continue
        record_path = path[: -len(".png")] + ".json"
        assert record_path in files, f"{sha[:10]}: {path} has no record"
        key = (blob, files[record_path])
        if key in verified:
            continue
        png = blobs.read(blob)
        record = RenderRecord.model_validate_json(blobs.read(files[record_path]))
        assert png, f"{sha[:10]}: {path} is empty"
        assert record.status == "done", f"{sha[:10]}: {path} beside a {record.status} record"
        assert hashlib.sha256(png).hexdigest() == record.png_sha256, f"{sha[:10]}: {path} does not match its record"
        with Image.open(io.BytesIO(png)) as image:
            image.load()  # decodes every pixel: a truncated file fails here
            assert image.size == (record.spec.width, record.spec.height)
        verified[key] = None
        history.pngs_checked += 1
    for path, blob in files.items():
        if path.endswith(".json") and Path(path).name not in ERROR_RECORDS:
            record = RenderRecord.model_validate_json(blobs.read(blob))
            if record.status == "done":
                assert path[: -len(".json")] + ".png" in files, f"{sha[:10]}: {path} has no PNG"


def _prove_commit(repo: Path, sha: str, history: History) -> None:
    text = git(repo, "show", "-s", "--format=%s%n%(trailers:only,unfold)", sha).stdout
    subject, *trailer_lines = text.splitlines()
    if not subject.startswith("render("):
        return
    trailers = dict(line.split(": ", 1) for line in trailer_lines if ": " in line)
    if trailers.get("Renderloop-Status") not in ("done", "failed"):
        return  # a batch error record
    batch, slug = trailers["Renderloop-Batch"], trailers["Renderloop-Slug"]
    changed = set(filter(None, git(repo, "diff-tree", "--no-commit-id", "-r", "-z", "--name-only", "--root", sha)
                          .stdout.split("\0")))
    expected = {f"renders/{batch}/{slug}.json"}
    if trailers["Renderloop-Status"] == "done":
        expected.add(f"renders/{batch}/{slug}.png")
    assert changed <= expected | {f"renders/{batch}/{slug}.png"} and f"renders/{batch}/{slug}.json" in changed, (
        f"{sha[:10]} ({subject}) changes {sorted(changed)}"
    )
    history.render_commits[(batch, slug)] += 1


def prove_clean_and_pushed(sandbox: Sandbox) -> None:
    """The worker's clone is clean (no partial, temporary or stray file) and the remote has its branch."""
    repo = sandbox.worker
    assert git(repo, "status", "--porcelain", "--ignored", "--untracked-files=all").stdout == ""
    gitdir = git_dir(repo)
    assert not (gitdir / "rebase-merge").exists() and not (gitdir / "rebase-apply").exists()
    locks = [str(p) for p in [*gitdir.glob("*.lock"), *(gitdir / "refs").rglob("*.lock")]]
    assert locks == []
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    assert head == git(sandbox.remote, "rev-parse", "main").stdout.strip(), "the remote differs from the worker"
    assert git(repo, "symbolic-ref", "--short", "HEAD").stdout.strip() == "main"
    for where in (repo, sandbox.remote):
        fsck = git(where, "fsck", "--no-progress", "--no-dangling", check=False)
        assert fsck.returncode == 0, f"git fsck in {where}: {fsck.stdout}{fsck.stderr}"


def prove_once_each(history: History, batch: str, slugs: list[str]) -> None:
    mine = {key: n for key, n in history.render_commits.items() if key[0] == batch}
    missing = [s for s in slugs if (batch, s) not in mine]
    twice = {k[1]: n for k, n in mine.items() if n != 1}
    assert not missing, f"never rendered: {missing}"
    assert not twice, f"rendered more than once: {twice}"
    assert {k[1] for k in mine} == set(slugs)


def rng() -> random.Random:
    """A seeded random source; RENDERLOOP_SEED replays a run."""
    seed = int(os.environ.get("RENDERLOOP_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"random seed {seed} (RENDERLOOP_SEED={seed} replays it)")
    generator = random.Random(seed)
    generator.seed_value = seed  # type: ignore[attr-defined]
    return generator


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def working_tree_is_whole(repo: Path) -> int:
    """Every image and record in the tree is complete (temporary files aside); returns how many temp files."""
    temps = 0
    for path in sorted((repo / "renders").rglob("*")):
        if not path.is_file() or path.name == ".gitkeep":
            continue
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            temps += 1  # ignored by git (.gitignore) and removed by the next start
        elif path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        elif path.suffix == ".json" and path.name not in ERROR_RECORDS:
            record = RenderRecord.model_validate_json(path.read_bytes())
            png = path.with_suffix(".png")
            if record.status == "done":
                assert hashlib.sha256(png.read_bytes()).hexdigest() == record.png_sha256, f"{path} and its PNG differ"
    return temps
