"""``renderloop stats``: keep rate by model and archetype, render time and cost by backend."""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from renderloop.options import add_command, add_repo
from renderloop.output import print_table

if TYPE_CHECKING:
    from mac_side.stats import Stats, Tally
    from renderloop.options import Subcommands

VERDICT_HEADERS = ("reviewed", "keep", "reroll", "reject", "keep rate")


def add_parser(sub: Subcommands) -> None:
    add_repo(add_command(sub, "stats", "keep rate by model and archetype, render time and cost by backend", run))


def run(args: argparse.Namespace) -> int:
    return stats(args.repo)


def stats(repo: Path) -> int:
    from mac_side.stats import gather
    from studio.layout import open_studio

    found = gather(open_studio(repo))
    if found.empty:
        print("Nothing yet: no verdicts in ledger.jsonl and no render records. Render a batch and review it first.")
        return 0
    sections = [
        ("Keep rate by model", ("model", *VERDICT_HEADERS), _tally_rows(found.by_model), 1),
        ("Keep rate by archetype", ("archetype", *VERDICT_HEADERS), _tally_rows(found.by_archetype), 1),
        ("Render time by model and backend", ("model", "backend", "images", "median s", "mean s"), _time_rows(found), 2),
        ("Cost by backend", ("backend", "images", "cost USD"), _cost_rows(found), 1),
    ]
    first = True
    for title, headers, rows, numeric_from in sections:
        if not rows:
            continue
        if not first:
            print()
        first = False
        print_table(title, headers, rows, numeric_from=numeric_from)
    if not found.by_model:
        print("\nNo verdicts yet: complete `verdict:` lines in a review and commit it to see keep rates.")
    return 0


def _tally_rows(tallies: dict[str, Tally]) -> list[tuple[object, ...]]:
    return [
        (name, t.total, t.keep, t.reroll, t.reject, f"{100 * t.keep / t.total:.0f}%")
        for name, t in sorted(tallies.items())
    ]


def _time_rows(found: Stats) -> list[tuple[object, ...]]:
    return [
        (model, backend, len(values), f"{statistics.median(values):.1f}", f"{statistics.fmean(values):.1f}")
        for (model, backend), values in sorted(found.seconds.items())
    ]


def _cost_rows(found: Stats) -> list[tuple[object, ...]]:
    return [(backend, images, f"{usd:.4f}") for backend, (images, usd) in sorted(found.cost.items())]
