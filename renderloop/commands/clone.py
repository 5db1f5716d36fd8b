"""``renderloop clone URL DIR [--batches N | --all]``: a thin clone, with the images of the newest N batches."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from renderloop.options import add_command, at_least_zero

if TYPE_CHECKING:
    from renderloop.options import Subcommands

DEFAULT_BATCHES = 3


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "clone", "a thin clone: everything but the images of older batches (--all: every image)", run)
    p.add_argument("url", help="the studio's remote")
    p.add_argument("dest", type=Path, metavar="DIR")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--batches", type=int, default=None, metavar="N",
                       help=f"check out the images of the newest N batches (default: {DEFAULT_BATCHES})")
    which.add_argument("--all", action="store_true", help="check out every image")


def run(args: argparse.Namespace) -> int:
    at_least_zero("--batches", args.batches)
    return clone(args.url, args.dest, None if args.all else (DEFAULT_BATCHES if args.batches is None else args.batches))


def clone(url: str, dest: Path, newest: Optional[int]) -> int:
    from studio.git import without_password
    from studio.thin import clone as thin_clone

    made = thin_clone(url, dest, newest)
    shown = without_password(url)  # a token in an https URL is not for the terminal's scrollback
    here = len(made.batches) - len(made.left_out)
    print(f"Cloned {shown} into {made.path}: every commit, batch file, record, review and the ledger;")
    if made.left_out:
        print(f"the images of the newest {here} of {len(made.batches)} batches (`renderloop open BATCH` brings "
              "in the others').")
    else:
        print(f"the images of all {len(made.batches)} batches.")
    if made.full:
        print(f"Note: {shown} does not serve partial clones, so every image was fetched all the same; on the remote, "
              "`git config uploadpack.allowFilter true` and `git config uploadpack.allowAnySHA1InWant true` "
              "(`renderloop hub init` sets both) make the next clone thin.", file=sys.stderr)
    print(f"Run `renderloop init {dest}` to enable the hooks there (on the Mac).")
    return 0
