"""A pull that set the person's changes aside (``autoStash``): the review waits until they are back.

Git runs post-merge (or post-rewrite) before it applies the person's
uncommitted changes back; writing a review then would make that apply
conflict with it. The hook starts a detached ``renderloop hook post-checkout
wait-for-rebase``, which writes the review once the pull is over.

Kept apart from :mod:`mac_side.hooks` (and light: git and processes only) so
that the hook can hand over at once, before importing what writing a review
needs: the waiter imports it while git is still applying the changes back.
"""
from __future__ import annotations

import logging
from pathlib import Path

from studio import git, processes
from studio.shims import renderloop_argv

log = logging.getLogger("renderloop.hooks")

WAIT_FOR_REBASE = "wait-for-rebase"  # the waiter's argument to post-checkout


def pending(root: Path) -> bool:
    """True while git holds the person's uncommitted changes aside (a pull with autoStash)."""
    gitdir = git.git_dir(root)
    return any(
        path.exists()
        for path in (gitdir / "MERGE_AUTOSTASH", gitdir / "rebase-merge" / "autostash", gitdir / "rebase-apply" / "autostash")
    )


def spawn_waiter(root: Path) -> None:
    """Start ``renderloop hook post-checkout wait-for-rebase`` detached, to run once the rebase
    (or the pull that set the person's changes aside) is over."""
    cmd = [*renderloop_argv(), "hook", "post-checkout", WAIT_FOR_REBASE]  # started in the studio
    processes.start(cmd, root, stdout=None, stderr=None, detached=True)
    log.info("pull in progress: the review is written once it ends")


def hand_over(name: str, args: list[str], root: Path) -> bool:
    """For post-merge and a rebase's post-rewrite while the changes are aside: start the waiter; True if so."""
    if not (name == "post-merge" or (name == "post-rewrite" and args[:1] == ["rebase"])):
        return False
    if not pending(root):
        return False
    spawn_waiter(root)
    return True
