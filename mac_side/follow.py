"""``renderloop follow``: watch the worker's commits arrive, pull them, write the review.

Run it after a push.  It asks the remote cheaply (``git ls-remote``) every
``--poll`` seconds, fetches and pulls only when the branch moved, shows each
batch's progress, and when a batch has no image left to render it writes
(or updates) the batch's review and says so.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

from mac_side.review_cmd import update_reviews
from mac_side.status import BatchStatus, batch_statuses
from studio import git
from studio.errors import FatalError
from studio.git import GitError
from studio.layout import Studio, open_studio


def follow(repo: Path, *, poll: float = 2.0, timeout: Optional[float] = None) -> int:
    studio = open_studio(repo)
    branch = git.current_branch(studio.root)
    if branch is None or git.remote_url(studio.root, "origin") is None:
        raise FatalError(f"{studio.root}: follow needs a branch that tracks a remote named origin")
    deadline = None if timeout is None else time.monotonic() + timeout
    _pull(studio, branch)
    statuses = _by_batch(studio)
    following = sorted(b for b, s in statuses.items() if s.problem is None and s.pending > 0)
    for name, item in statuses.items():
        if item.problem is not None:
            print(f"{name}: invalid batch file, not followed: {item.problem}")
    if not following:
        print("Nothing to wait for: every batch is rendered.")
        return 0
    print(f"Following {', '.join(following)} on origin/{branch} (every {poll:g} s; Ctrl+C to stop).")
    display = _Display(following)
    display.update(statuses)
    seen = git.rev_parse(studio.root, f"origin/{branch}")
    while following:
        if deadline is not None and time.monotonic() >= deadline:
            pending = sum(statuses[b].pending for b in following)
            display.close()
            print(f"renderloop: gave up after {timeout:g} s: {pending} image(s) still pending in "
                  f"{', '.join(following)}", file=sys.stderr)
            return 1
        time.sleep(poll)
        try:
            head = git.ls_remote_head(studio.root, "origin", branch, timeout=30)
        except GitError as exc:
            display.note(f"cannot reach the remote ({exc.stderr.splitlines()[-1] if exc.stderr else exc}); "
                         f"trying again in {poll:g} s")
            continue
        if head is None or head == seen:
            continue
        if not _pull(studio, branch, display):
            continue
        seen = head
        statuses = _by_batch(studio)
        display.update(statuses)
        for batch in [b for b in following if b not in statuses or statuses[b].pending == 0]:
            following.remove(batch)
            for outcome in update_reviews(studio, [batch], stage=True):
                display.note(outcome.line())
    display.close()
    return 0


def _by_batch(studio: Studio) -> dict[str, BatchStatus]:
    return {s.batch: s for s in batch_statuses(studio)}


def _pull(studio: Studio, branch: str, display: Optional["_Display"] = None) -> bool:
    """Fetch, then fast-forward (or rebase our own unpushed commits). False when it could not."""
    try:
        git.run(studio.root, "fetch", "--quiet", "origin", branch, timeout=60)
        ahead = int(git.out(studio.root, "rev-list", "--count", f"origin/{branch}..HEAD"))
        mode = "--rebase" if ahead else "--ff-only"
        git.run(studio.root, "pull", "--quiet", mode, "origin", branch, timeout=60)
        return True
    except GitError as exc:
        message = f"cannot pull ({exc.stderr.splitlines()[-1] if exc.stderr else exc}); will try again"
        if display is None:
            print(f"renderloop: warning: {message}", file=sys.stderr)
        else:
            display.note(message)
        return False


class _Display:
    """Rich bars on a terminal, a plain line per change otherwise."""

    def __init__(self, batches: list[str]) -> None:
        self.batches = batches
        self.last: dict[str, tuple[int, int, int]] = {}
        self.bars = None
        if sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn())
            self.tasks = {b: self.bars.add_task(b, total=None, failed=0) for b in batches}
            self.bars.start()

    def update(self, statuses: dict[str, BatchStatus]) -> None:
        for batch in self.batches:
            item = statuses.get(batch)
            if item is None:
                continue
            counts = (item.rendered, item.failed, item.prompts)
            if self.last.get(batch) == counts:
                continue
            self.last[batch] = counts
            if self.bars is not None:
                self.bars.update(self.tasks[batch], total=item.prompts, completed=item.rendered + item.failed,
                                 failed=item.failed)
            else:
                print(f"{batch}: {item.rendered}/{item.prompts} rendered, {item.failed} failed, "
                      f"{item.pending} pending", flush=True)

    def note(self, text: str) -> None:
        if self.bars is not None:
            self.bars.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()
