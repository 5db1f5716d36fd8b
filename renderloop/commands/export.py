"""``renderloop export DIR``: copy the latest kept image of each slug to ``DIR/<slug>.png``."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from renderloop.options import add_command, add_repo

if TYPE_CHECKING:
    from renderloop.options import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "export", "copy the latest kept image of each slug to DIR/<slug>.png (other keeps: DIR/<batch>--<slug>.png)", run)
    p.add_argument("dest", type=Path, metavar="DIR")
    add_repo(p)


def run(args: argparse.Namespace) -> int:
    return export(args.repo, args.dest)


def export(repo: Path, dest: Path) -> int:
    from mac_side.export import export as export_kept

    result = export_kept(repo, dest)
    if result is None:
        print("No kept images yet: mark images `verdict: keep` in a review and commit it, then export.")
        return 0
    if result.brought_in:
        print(f"Brought in the images of {', '.join(result.brought_in)} (this clone had left them out).")
    unchanged = f" ({len(result.unchanged)} already up to date)" if result.unchanged else ""
    print(f"Exported {result.total} kept image{'s' if result.total != 1 else ''} to {dest}{unchanged}.")
    for slug, names in sorted(result.also.items()):
        print(f"{slug} was kept in {len(names) + 1} batches: {slug}.png is the latest keep; also written: {', '.join(names)}")
    if result.current_instead:
        print("The kept version is no longer in history; exported the current render for: " + ", ".join(result.current_instead))
    if result.skipped:
        print(f"Skipped {len(result.skipped)}:")
        for item in result.skipped:
            print(f"  {item}")
    return 0
