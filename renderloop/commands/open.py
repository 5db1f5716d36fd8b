"""``renderloop open BATCH...``: bring the images a thin clone left out into the checkout."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from renderloop.options import add_command, add_repo

if TYPE_CHECKING:
    from renderloop.options import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "open", "bring the images of batches a thin clone left out into it", run)
    p.add_argument("batches", nargs="+", metavar="BATCH")
    add_repo(p)


def run(args: argparse.Namespace) -> int:
    return open_batches(args.repo, args.batches)


def open_batches(repo: Path, batches: list[str]) -> int:
    from studio import git
    from studio.layout import RENDERS, open_studio
    from studio.thin import left_out, open_batches as bring_in

    studio = open_studio(repo, require_git=True)
    opened = bring_in(studio.root, batches)
    for batch in batches:
        if batch in opened:
            print(f"{batch}: images brought in")
        elif not git.ls_files(studio.root, f"{RENDERS}/{batch}/"):
            print(f"{batch}: no renders in this clone")
        else:
            print(f"{batch}: images already here")
    rest = len(left_out(studio.root))
    if rest:
        print(f"{rest} older batch(es) still have their images left out.")
    return 0
