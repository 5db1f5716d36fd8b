"""``renderloop init [PATH]``: create a studio (or enable the hooks in a clone of one)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from renderloop.options import add_command

if TYPE_CHECKING:
    from renderloop.options import Subcommands

CREATED = """\
  renderloop.yaml   what to render: models, defaults, limits (this machine's own settings:
                    `renderloop config`)
  batches/          commit a batch file here to dispatch it (`renderloop new NAME`)
  renders/          the worker commits images and records here
  ledger.jsonl      your verdicts, appended by the pre-commit hook
  hooks/            hook templates; installed in {folder} (running {python})"""


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "init", "create a studio (or enable the hooks in a clone of one)", run)
    p.add_argument("path", nargs="?", type=Path, default=Path("."), help="where (default: this folder)")


def run(args: argparse.Namespace) -> int:
    return init(args.path)


# Commands that never run in a person's clone, or that fix the hooks themselves.
NO_HOOKS_WARNING = ("init", "hook", "worker", "demo")


def warn_if_hooks_off(command: str, repo: Path) -> None:
    """One line on stderr when the studio at ``repo`` is a clone whose hooks would not run."""
    if command in NO_HOOKS_WARNING:
        return
    from mac_side.init import hooks_problems
    from studio import git
    from studio.errors import FatalError
    from studio.layout import Studio

    try:
        if not (Path(repo).is_dir() and git.is_repo(repo)):
            return
        studio = Studio.at(git.toplevel(repo))
        problems = hooks_problems(studio) if studio.is_studio() and git.is_repo(studio.root) else []
        problem = f"the hooks are off in this clone ({'; '.join(problems)})" if problems else None
        where = "." if problem and studio.root.resolve() == Path.cwd().resolve() else str(studio.root)
    except (FatalError, OSError):
        return  # the command itself will say what is wrong with the folder (or this one is gone)
    if problem:
        print(f"renderloop: {problem}: batches are not checked and pulls write no review; "
              f"run `renderloop init {where}`", file=sys.stderr)


def init(path: Path) -> int:
    from mac_side.init import init as make_studio

    done = make_studio(path)
    if done.new_repository is not None:
        print(f"Initialized a git repository in {done.new_repository}")
    for diff in done.hooks.diffs if done.hooks else []:
        print(diff, end="")  # what a changed hooks/ template will run, before saying it is installed
    if done.created:
        print(f"Created a renderloop studio in {done.root}")
        print(CREATED.format(folder=done.hooks.folder if done.hooks else "", python=done.hooks.python if done.hooks else ""))
    elif done.changes:
        print(f"{done.root} is a renderloop studio: " + "; ".join(done.changes))
    else:
        print(f"{done.root} is already a renderloop studio with its hooks enabled: nothing to do")
    return 0
