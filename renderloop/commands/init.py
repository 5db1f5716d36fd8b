"""``renderloop init [PATH]``: create a studio (or enable the hooks in a clone of one)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from renderloop.options import add_command

if TYPE_CHECKING:
    from renderloop.options import Subcommands

CREATED = """\
  renderloop.yaml   models, defaults and backends
  batches/          commit a batch file here to dispatch it (`renderloop new NAME`)
  renders/          the worker commits images and records here
  ledger.jsonl      your verdicts, appended by the pre-commit hook
  hooks/            enabled with core.hooksPath=hooks"""


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "init", "create a studio (or enable the hooks in a clone of one)", run)
    p.add_argument("path", nargs="?", type=Path, default=Path("."), help="where (default: this folder)")


def run(args: argparse.Namespace) -> int:
    return init(args.path)


def init(path: Path) -> int:
    from mac_side.init import init as make_studio

    done = make_studio(path)
    if done.new_repository is not None:
        print(f"Initialized a git repository in {done.new_repository}")
    if done.created:
        print(f"Created a renderloop studio in {done.root}")
        print(CREATED)
    elif done.changes:
        print(f"{done.root} is a renderloop studio: " + "; ".join(done.changes))
    else:
        print(f"{done.root} is already a renderloop studio with its hooks enabled: nothing to do")
    return 0
