"""The worker's clone: exclusive lock, crash recovery, sync with the remote, push.

Every step is safe to crash in and safe to run again (kopf's lesson): the
worker keeps no ``Repo`` object and no state but files, and on start it
cleans up whatever a killed run left behind.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from studio import git
from studio.errors import FatalError, InvalidFile
from studio.fsutil import is_temp_name, read_bounded, write_text_atomic
from studio.git import GitError, GitTimeout
from studio.layout import BATCH_ERROR_NAME, RENDERS, Studio, slug_problem
from studio.limits import MAX_PNG_BYTES, MAX_RECORD_BYTES
from studio.oslock import FileLock
from studio.record import RenderRecord
from studio.rewrite import is_rewrite, ledger_lost
from win_side import faults

log = logging.getLogger("renderloop.worker")

PID_FILE = "worker.pid"  # names the worker holding worker.lock
REWRITE_FILE = "remote-rewritten"  # "OLD NEW": a force-push fetched and not integrated yet
_REJECTED = re.compile(
    r"\[rejected\]|\[remote rejected\]|non-fast-forward|fetch first|cannot lock ref|"
    r"failed to update ref|stale info|Updates were rejected",
    re.IGNORECASE,
)


LOCK_WAIT_SECONDS = 10.0  # for a git command that outlived a killed worker to finish
_INVALID_PATH = re.compile(r"invalid path '(.+?)'")


class PushRejected(Exception):
    """The remote moved on: fetch, rebase, try again."""


class RemoteUnreachable(Exception):
    """The remote could not be reached; commits wait locally."""


@dataclass
class WorkerRepo:
    """A worker's clone and the lock that serialises every change to its tree."""

    studio: Studio
    remote: str = "origin"

    def __post_init__(self) -> None:
        self.lock = threading.RLock()  # held for every write to the tree, index or HEAD
        self.fetch_lock = threading.Lock()  # one fetch at a time (FETCH_HEAD, tracking ref)
        self._held: Optional[FileLock] = None  # the OS lock on the clone, while this process has it
        self.root = self.studio.root
        self.state = git.state_dir(self.root)
        # (old, new) tip of a remote branch rewritten under us, kept on disk until integrated: a run killed
        # in between must not rebase the commits the force-push dropped back on top of the new history
        self.rewritten: Optional[tuple[str, str]] = _read_rewrite(self.state / REWRITE_FILE)
        # A run killed mid-rebase leaves HEAD detached; the rebase names the branch (recover() aborts it).
        branch = git.current_branch(self.root) or _rebasing_branch(git.git_dir(self.root))
        if branch is None:
            raise FatalError(f"{self.root}: HEAD is detached; check out the studio's branch first")
        self.branch: str = branch

    @property
    def remote_ref(self) -> str:
        return f"{self.remote}/{self.branch}"

    def has_remote(self) -> bool:
        return git.remote_url(self.root, self.remote) is not None

    # -- exclusive use -------------------------------------------------

    def acquire(self) -> None:
        """Take the clone for this process, refusing if another worker has it.

        The OS holds the lock (freed when its holder dies, even by SIGKILL);
        ``worker.pid`` next to it only names the holder for people and tests.
        """
        lock = FileLock(self.state / "worker.lock")
        if not lock.try_acquire():
            lock.close()
            other = _read_pid(self.state / PID_FILE)
            who = f"another worker (pid {other})" if other else "another worker"
            raise FatalError(f"{who} is using {self.root}; stop it first")
        write_text_atomic(self.state / PID_FILE, f"{os.getpid()}\n")
        self._held = lock

    def release(self) -> None:
        if self._held is not None:
            (self.state / PID_FILE).unlink(missing_ok=True)
            self._held.close()
            self._held = None

    # -- recovery ------------------------------------------------------

    def recover(self) -> list[tuple[RenderRecord, list[str]]]:
        """Undo what a killed run left: stale git locks, a half rebase, partial files.

        Returns each render that was complete but not committed (a record and
        its PNG were both written), with the paths to commit; the caller commits them.
        """
        with self.lock:
            gitdir = git.git_dir(self.root)
            self._clear_locks(gitdir)
            if (gitdir / "rebase-merge").exists() or (gitdir / "rebase-apply").exists():
                log.info("aborting a rebase left by an interrupted run")
                git.run(self.root, "rebase", "--abort", check=False)
            if (gitdir / "MERGE_HEAD").exists():
                git.run(self.root, "merge", "--abort", check=False)
            renders = self.studio.renders_dir
            if renders.is_dir() and not renders.is_symlink():  # a link is refused when planning
                # every untracked file, ignored or not, from git's walk (never into a link), not Python's
                for rel in git.out(self.root, "ls-files", "-z", "--others", "--", RENDERS).split("\0"):
                    if rel and is_temp_name(rel.rpartition("/")[2]):
                        (self.root / rel).unlink(missing_ok=True)
            return self._sort_uncommitted()

    def _clear_locks(self, gitdir: Path) -> None:
        """Remove the ``*.lock`` files a killed git left, once no git process works in this clone.

        index.lock, HEAD.lock, ORIG_HEAD.lock, packed-refs.lock, the temporary
        next-index-<pid>.lock of ``git commit -- paths``, and ref locks. A git
        command that outlived a killed worker (on Windows, or after SIGKILL)
        may still hold one: it is given LOCK_WAIT_SECONDS to finish.
        """
        locks = [p for p in [*gitdir.glob("*.lock"), *(gitdir / "refs").rglob("*.lock")] if p.is_file()]
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        waited = False
        while locks:
            running = git.running_in(self.root)
            if not running:
                for stale in [p for p in locks if p.is_file()]:  # its git may have removed it since we looked
                    log.info("removing %s left by an interrupted git command", stale.relative_to(gitdir).as_posix())
                    stale.unlink(missing_ok=True)
                return
            if time.monotonic() >= deadline:
                raise FatalError(
                    f"git (pid {', '.join(map(str, running))}) is still working in {self.root} after "
                    f"{LOCK_WAIT_SECONDS:g} s and holds {', '.join(p.name for p in locks)}: "
                    "let it finish or end it, then start again"
                )
            if not waited:
                log.info("waiting for git (pid %s) to finish with %s", ", ".join(map(str, running)),
                         ", ".join(p.name for p in locks))
                waited = True
            time.sleep(0.1)
            locks = [p for p in locks if p.is_file()]

    def _sort_uncommitted(self) -> list[tuple[RenderRecord, list[str]]]:
        """Keep complete render pairs for committing; restore or delete the rest.

        Only the files the worker writes are touched (``<slug>.png``,
        ``<slug>.json``, ``batch-error.json``): a review being written in the
        same clone (``renderloop local`` on the Mac) is the person's.
        """
        status = git.out(self.root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", RENDERS)
        entries = [e for e in status.split("\0") if e]
        paths = sorted({entry[3:] for entry in entries if _worker_output(entry[3:])})
        complete: list[tuple[RenderRecord, list[str]]] = []
        by_stem: dict[str, set[str]] = {}
        for rel in paths:
            if rel.endswith("/" + BATCH_ERROR_NAME):
                self._restore(rel)  # rewritten and committed by the next plan
                continue
            stem, _, suffix = rel.rpartition(".")
            by_stem.setdefault(stem, set()).add(suffix)
        for stem in sorted(by_stem):
            pair = self._complete_pair(stem)
            if pair:
                complete.append(pair)
                continue
            for suffix in by_stem[stem]:
                self._restore(f"{stem}.{suffix}")
        return complete

    def _complete_pair(self, stem: str) -> tuple[RenderRecord, list[str]] | None:
        """The record and paths of a render a killed run wrote whole, or None.

        Both files are read as any studio file is (bounded, never through a
        link): what lies in an interrupted clone may have come from a pull.
        """
        try:
            record = RenderRecord.model_validate_json(
                read_bounded(self.root / f"{stem}.json", MAX_RECORD_BYTES, self.root, f"{stem}.json"))
        except (OSError, ValueError, InvalidFile):
            return None
        if record.status == "failed":
            (self.root / f"{stem}.png").unlink(missing_ok=True)  # a failure has no image
            return record, existing_or_tracked(self.root, [f"{stem}.json", f"{stem}.png"])
        try:
            data = read_bounded(self.root / f"{stem}.png", MAX_PNG_BYTES, self.root, f"{stem}.png")
        except (OSError, InvalidFile):
            return None
        if hashlib.sha256(data).hexdigest() != record.png_sha256:
            return None
        return record, [f"{stem}.png", f"{stem}.json"]

    def _restore(self, rel: str) -> None:
        if git.ok(self.root, "cat-file", "-e", f"HEAD:{rel}"):
            git.run(self.root, "checkout", "HEAD", "--", rel)
            log.info("restored %s: an interrupted run left it half written", rel)
        else:
            (self.root / rel).unlink(missing_ok=True)
            git.run(self.root, "rm", "--cached", "--quiet", "--ignore-unmatch", "--", rel)
            log.info("removed %s: an interrupted run left it without its pair", rel)

    # -- remote --------------------------------------------------------

    def fetch(self) -> None:
        try:
            with self.fetch_lock:
                self._fetch()
        except GitError as exc:
            raise RemoteUnreachable(self._unreachable(exc)) from exc

    def _unreachable(self, exc: GitError) -> str:
        """Which remote could not be used, and why, in one line."""
        where = f"{self.remote} ({git.without_password(git.remote_url(self.root, self.remote) or '?')})"
        problem = git.remote_problem(exc)
        return f"{where} {problem}" if problem else f"{where}: {git_reason(exc.stderr) or exc}"

    def _fetch(self) -> None:
        seen = git.rev_parse(self.root, self.remote_ref)
        # No submodule is ever fetched (the repository does not choose what this machine downloads), and
        # git then does not read the index of every image to look for one: 10 ms a push at 2,000 renders.
        git.run(self.root, "fetch", "--quiet", "--no-tags", "--recurse-submodules=no", self.remote, self.branch)
        fetched = git.rev_parse(self.root, "FETCH_HEAD")
        if seen and fetched and is_rewrite(self.root, seen, fetched):
            lost = ledger_lost(self.root, seen, fetched)
            self.rewritten = (self.rewritten[0] if self.rewritten else seen, fetched)  # the tip our commits are on
            write_text_atomic(self.state / REWRITE_FILE, " ".join(self.rewritten) + "\n")
            log.warning("%s was rewritten (a force-push): it was at %s and is now at %s, which does not contain it; "
                        "%s; following the new history, the worker's own unpushed commits rebased on top (it never "
                        "force-pushes)", self.remote_ref, seen[:12], fetched[:12],
                        lost.describe() if lost else "no verdict dropped")
        git.run(self.root, "update-ref", f"refs/remotes/{self.remote}/{self.branch}", "FETCH_HEAD")

    def integrate(self) -> bool:
        """Bring the remote's commits under ours (fast-forward or rebase). True if HEAD moved."""
        with self.lock:
            remote = git.rev_parse(self.root, self.remote_ref)
            before = git.head(self.root)
            if remote is None or before is None:
                return False
            if remote == before:
                self._forget_rewrite()
                return False
            if git.is_ancestor(self.root, remote, before):
                self._forget_rewrite()
                return False  # we are ahead: only our commits are new
            # After a force-push only our own commits go on top (those the old tip lacks, ``old..HEAD``, even
            # when HEAD is behind it): the ones it dropped are not brought back.
            old = self.rewritten[0] if self.rewritten else None
            known = old is not None and git.ok(self.root, "cat-file", "-e", f"{old}^{{commit}}")
            # Nothing of ours to put on top and no rewrite to follow: a fast-forward, which (unlike a rebase)
            # checks the index once, not three times, over every image in the checkout. Anything else is the
            # rebase's to handle.
            if not known and git.ok(self.root, "merge", "--ff-only", "--quiet", "--no-autostash", self.remote_ref):
                self._forget_rewrite()
                return git.head(self.root) != before
            self._rebase_onto(self.remote_ref, old if known else None)
            self._forget_rewrite()
            return git.head(self.root) != before

    def _forget_rewrite(self) -> None:
        self.rewritten = None
        (self.state / REWRITE_FILE).unlink(missing_ok=True)

    def _rebase_onto(self, upstream: str, since: Optional[str] = None) -> None:
        """Put our commits on ``upstream``: those after ``since`` when given, else those ``upstream`` lacks."""
        env = {"GIT_EDITOR": "true"}
        faults.point("rebase")
        args = ("--onto", upstream, since) if since else (upstream,)
        code, _, err = git.run(self.root, "rebase", "--quiet", *args, check=False, env=env)
        attempts = 0
        while code != 0:
            attempts += 1
            conflicted = [p for p in git.out(self.root, "diff", "--name-only", "--diff-filter=U", "-z").split("\0") if p]
            if not conflicted or attempts > 1000 or any(not p.startswith(f"{RENDERS}/") for p in conflicted):
                git.run(self.root, "rebase", "--abort", check=False)
                invalid = _INVALID_PATH.search(err)
                if invalid:
                    raise FatalError(self._invalid_path(upstream, invalid.group(1)))
                raise FatalError(
                    f"cannot rebase the worker's commits onto {upstream}: {err.strip() or 'conflict'}"
                    f" (conflicting files: {', '.join(conflicted) or 'none'})"
                )
            # A render the person deleted or changed while we re-rendered it: ours is newer.
            for rel in conflicted:
                if git.ok(self.root, "cat-file", "-e", f"REBASE_HEAD:{rel}"):
                    git.run(self.root, "checkout", "REBASE_HEAD", "--", rel)
                    git.add(self.root, rel)
                else:
                    git.run(self.root, "rm", "--quiet", "--cached", "--ignore-unmatch", "--", rel)
                    (self.root / rel).unlink(missing_ok=True)
            log.info("kept the worker's version of %s over a concurrent change", ", ".join(conflicted))
            code, _, err = git.run(self.root, "rebase", "--continue", check=False, env=env)

    def _invalid_path(self, upstream: str, path: str) -> str:
        """Git cannot check ``path`` out here (Windows forbids the name): which commit brought it."""
        found = git.out(self.root, "--literal-pathspecs", "log", "-1", "--format=%h %s", f"HEAD..{upstream}", "--", path)
        commit = f"commit {found}" if found else f"a commit on {upstream}"
        return (f"{commit} adds {path!r}, a path git cannot check out on this machine (invalid path); "
                f"rendering what the clone already has until it is renamed in a new commit")

    def unpushed(self) -> int:
        """How many local commits the remote does not have."""
        if git.rev_parse(self.root, self.remote_ref) is None:
            return int(git.out(self.root, "rev-list", "--count", "HEAD"))
        return int(git.out(self.root, "rev-list", "--count", f"{self.remote_ref}..HEAD"))

    def push_once(self) -> str:
        """Push HEAD to the remote branch; never forced. Returns the commit pushed."""
        sha = git.head(self.root) or ""
        faults.point("push")
        try:
            code, stdout, err = git.run(
                self.root, "push", "--porcelain", self.remote, f"{sha}:refs/heads/{self.branch}", check=False,
            )
        except GitTimeout as exc:
            raise RemoteUnreachable(self._unreachable(exc)) from exc
        if code == 0:
            faults.point("after-push")
            git.run(self.root, "update-ref", f"refs/remotes/{self.remote}/{self.branch}", sha)
            return sha
        if _REJECTED.search(stdout + err):
            raise PushRejected(git_reason(stdout + "\n" + err) or "rejected")
        raise RemoteUnreachable(self._unreachable(GitError(["git", "push"], code, err or stdout)))


def _worker_output(rel: str) -> bool:
    """True for ``renders/<batch>/<slug>.png|json`` and ``renders/<batch>/batch-error.json``."""
    parts = rel.split("/")
    if len(parts) != 3 or parts[0] != RENDERS:
        return False
    if parts[2] == BATCH_ERROR_NAME:
        return True
    stem, _, suffix = parts[2].rpartition(".")
    return suffix in ("png", "json") and slug_problem(stem) is None


def existing_or_tracked(root: Path, paths: list[str]) -> list[str]:
    """The paths git can stage: present in the tree, or tracked (a deletion)."""
    tracked = set(git.ls_files(root, *paths))
    return [p for p in paths if (root / p).exists() or p in tracked]


def git_reason(output: str) -> str:
    """The line of git's output that says what went wrong (not its closing advice)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    server = next((line[len("remote: "):] for line in lines if line.startswith(("remote: error:", "remote: fatal:"))), "")
    for line in lines:
        if line.startswith("!") or "[rejected]" in line or "[remote rejected]" in line:
            rejected = " ".join(line.lstrip("!").split())  # porcelain: "!  HEAD:refs/heads/main  [rejected] (fetch first)"
            return f"{rejected}: {server}" if server else rejected
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return server or (lines[-1] if lines else "")


def _rebasing_branch(gitdir: Path) -> str | None:
    """The branch an interrupted rebase was rebasing, if one was."""
    for state in ("rebase-merge", "rebase-apply"):
        try:
            name = (gitdir / state / "head-name").read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if name.startswith("refs/heads/"):
            return name[len("refs/heads/"):]
    return None


def _read_rewrite(path: Path) -> Optional[tuple[str, str]]:
    try:
        old, new = path.read_text(encoding="ascii").split()
    except (OSError, ValueError):
        return None
    return old, new


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip() or 0) or None
    except (OSError, ValueError):
        return None


