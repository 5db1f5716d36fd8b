"""``renderloop hook NAME [ARGS...]``: run a git hook (called by the shims in hooks/)."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from renderloop.options import add_command
from studio.shims import HOOK_NAMES

if TYPE_CHECKING:
    from renderloop.options import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "hook", "run a git hook (called by the shims in hooks/)", run, hidden=True)
    p.add_argument("name", choices=HOOK_NAMES)
    p.add_argument("args", nargs="*")


def run(args: argparse.Namespace) -> int:
    return hook(args.name, args.args)


def hook(name: str, args: list[str]) -> int:
    from studio.errors import FatalError

    if _handed_over(name, args):  # the pull is not over: the waiter writes the review, nothing more to load here
        return 0
    from mac_side.hooks import run_hook

    try:
        said = run_hook(name, args)
    except FatalError as exc:
        if name == "pre-commit":
            raise
        # a post hook cannot undo what git did: say so and let git finish
        for line in str(exc).splitlines():
            print(f"renderloop {name}: {line}", file=sys.stderr)
        print(f"renderloop {name}: no review written; fix the above and run `renderloop review`", file=sys.stderr)
        return 0
    for alert in said.alerts:  # a remote rewritten under this clone: said whatever the hook did
        print(f"renderloop: {alert}", file=sys.stderr)
    for warning in said.warnings:  # advice (a model the published worker cannot render): the commit goes on
        print(warning, file=sys.stderr)
    if said.problems:
        for problem in said.problems:
            print(problem, file=sys.stderr)
        print("renderloop: the commit was stopped: fix the lines above and commit again", file=sys.stderr)
        return 1
    for message in said.messages:
        print(f"renderloop: {message}")
    return 0


def _handed_over(name: str, args: list[str]) -> bool:
    """A pull that set the person's changes aside: start the waiter before importing anything heavy."""
    from pathlib import Path

    from mac_side.autostash import hand_over
    from studio import git
    from studio.errors import FatalError

    try:  # the waiter runs every check of a hook (a folder that is no studio, a rewritten remote)
        return hand_over(name, args, git.toplevel(Path.cwd()))
    except (FatalError, OSError):
        return False  # run_hook says what is wrong
