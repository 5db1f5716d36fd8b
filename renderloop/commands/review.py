"""``renderloop review [BATCH...] [--html]``: write or update renders/<batch>/review.md."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from renderloop.options import add_command, add_repo

if TYPE_CHECKING:
    from renderloop.options import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "review", "write or update renders/<batch>/review.md (--html: contact sheet)", run)
    p.add_argument("batches", nargs="*", metavar="BATCH", help="batches to review (default: all with renders)")
    p.add_argument("--html", action="store_true", help="also write renders/<batch>/review.html, a contact sheet")
    add_repo(p)


def run(args: argparse.Namespace) -> int:
    return review(args.repo, args.batches, html=args.html)


def review(repo: Path, batches: list[str], html: bool = False) -> int:
    from mac_side.contact_sheet import write_contact_sheet
    from mac_side.review_update import review as update
    from studio.layout import open_studio

    studio = open_studio(repo)
    outcomes = update(studio, batches)
    if not outcomes:
        print("No renders yet: nothing to review.")
        return 0
    for outcome in outcomes:
        print(outcome.line())
        if html and outcome.loaded is not None:
            path = write_contact_sheet(studio, outcome)
            print(f"{outcome.batch}: contact sheet -> {studio.rel(path)}")
    return 1 if any(o.problem for o in outcomes if o.batch in batches) else 0
