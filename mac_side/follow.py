"""Watch the worker's commits arrive, pull them, write the reviews (``renderloop follow``).

It asks the remote cheaply (``git ls-remote``) every ``poll`` seconds,
fetches and pulls only when the branch moved, and when a batch has no image
left to render it writes (or updates) the batch's review.  :func:`follow`
yields what happens as events; the command shows them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

from mac_side.review_update import Outcome, update_reviews
from mac_side.status import BatchStatus, batch_statuses
from studio import git
from studio.errors import FatalError
from studio.git import GitError
from studio.layout import BATCHES, Studio, open_studio

Statuses = dict[str, BatchStatus]


@dataclass(frozen=True)
class Started:
    """The first look: the batches followed (those with images pending) and every batch's counts."""

    branch: str
    following: list[str]
    statuses: Statuses


@dataclass(frozen=True)
class Pulled:
    """New commits were pulled: every batch's counts now."""

    statuses: Statuses


@dataclass(frozen=True)
class Reviewed:
    """A followed batch has nothing left to render: its review was written."""

    outcome: Outcome


@dataclass(frozen=True)
class Trouble:
    """The remote could not be reached or pulled from; following goes on."""

    message: str


@dataclass(frozen=True)
class GaveUp:
    """The timeout passed with images still pending."""

    pending: int
    following: list[str]


Event = Union[Started, Pulled, Reviewed, Trouble, GaveUp]


def follow(repo: Path, *, poll: float = 2.0, timeout: Optional[float] = None) -> Iterator[Event]:
    """Follow the batches with images pending until each is rendered and reviewed (or ``timeout``)."""
    studio = open_studio(repo)
    branch = git.current_branch(studio.root)
    if branch is None or git.remote_url(studio.root, "origin") is None:
        raise FatalError(f"{studio.root}: follow needs a branch that tracks a remote named origin")
    deadline = None if timeout is None else time.monotonic() + timeout
    trouble = _pull(studio, branch)
    if trouble is not None:
        yield trouble
    statuses = _by_batch(studio)
    following = sorted(b for b, s in statuses.items() if s.problem is None and s.pending > 0)
    for rel in _not_pushed(studio, branch):  # the worker never sees these: say it before waiting on them
        yield Trouble(f"{rel} is committed here but not on origin/{branch}: `git push` it, or the worker never "
                      "renders it")
    yield Started(branch, list(following), statuses)
    seen = git.rev_parse(studio.root, f"origin/{branch}")
    while following:
        if deadline is not None and time.monotonic() >= deadline:
            yield GaveUp(sum(statuses[b].pending for b in following), list(following))
            return
        time.sleep(poll)
        try:
            head = git.ls_remote_head(studio.root, "origin", branch, timeout=30)
        except GitError as exc:
            yield Trouble(f"cannot reach the remote ({_last_line(exc)}); trying again in {poll:g} s")
            continue
        if head is None or head == seen:
            continue
        trouble = _pull(studio, branch)
        if trouble is not None:
            yield trouble
            continue
        seen = head
        statuses = _by_batch(studio)
        yield Pulled(statuses)
        for batch in [b for b in following if b not in statuses or statuses[b].pending == 0]:
            following.remove(batch)
            for outcome in update_reviews(studio, [batch], stage=True):
                yield Reviewed(outcome)


def _not_pushed(studio: Studio, branch: str) -> list[str]:
    """Batch files that differ between this clone's HEAD and origin's branch (committed, not pushed)."""
    try:
        changed = git.out(studio.root, "diff", "--name-only", "--no-renames", "--diff-filter=AM",
                          f"origin/{branch}", "HEAD", "--", f"{BATCHES}/")
    except GitError:  # no origin/<branch> yet: nothing was ever pushed
        return []
    return [rel for rel in changed.splitlines() if rel.endswith(".yaml")]


def _by_batch(studio: Studio) -> Statuses:
    return {s.batch: s for s in batch_statuses(studio)}


def _last_line(exc: GitError) -> str:
    return git.said(exc.stderr) or str(exc)


def _pull(studio: Studio, branch: str) -> Optional[Trouble]:
    """Fetch, then fast-forward (or rebase our own unpushed commits); what went wrong, if anything."""
    try:
        git.run(studio.root, "fetch", "--quiet", "--recurse-submodules=no", "origin", branch, timeout=60)
        ahead = int(git.out(studio.root, "rev-list", "--count", f"origin/{branch}..HEAD"))
        mode = "--rebase" if ahead else "--ff-only"
        git.run(studio.root, "pull", "--quiet", mode, "origin", branch, timeout=60)
        return None
    except GitError as exc:
        return Trouble(f"cannot pull ({_last_line(exc)}); will try again")
