"""``renderloop stats``: keep rate by model and archetype, render time and cost by backend."""
from __future__ import annotations

import argparse
import json
import sys
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
    p = add_command(sub, "stats", "keep rate by model and archetype, render time and cost by backend", run)
    p.add_argument("--compare", action="store_true",
                   help="swept prompts: how often each model (seed, steps...) was kept when the other was not")
    p.add_argument("--json", action="store_true", help="with --compare: the counts as JSON")
    add_repo(p)


def run(args: argparse.Namespace) -> int:
    if args.compare:
        return stats_compare(args.repo, as_json=args.json)
    if args.json:
        print("renderloop stats: --json goes with --compare", file=sys.stderr)
        return 2
    return stats(args.repo)


def stats_compare(repo: Path, *, as_json: bool = False) -> int:
    from mac_side.stats import compare
    from studio.layout import open_studio
    from studio.ledger import Ledger

    duels = compare(Ledger.read(open_studio(repo).ledger_path))
    if as_json:
        print(json.dumps({"comparisons": [duel.as_dict() for duel in duels]}, indent=2, ensure_ascii=False))
        return 0
    if not duels:
        print("Nothing to compare yet: sweep a prompt over two models (or seeds, steps...) in a batch, "
              "and commit verdicts for its images.")
        return 0
    print("Kept against each other: images of one swept prompt that differ in one axis, verdicts in force")
    archetype = None
    for duel in duels:
        if duel.archetype != archetype:
            archetype = duel.archetype
            print(f"\n{archetype}")
        prompts = f"{len(duel.prompts)} prompt" + ("s" if len(duel.prompts) != 1 else "")
        first, second = _named(duel.axis, duel.first), _named(duel.axis, duel.second)
        if duel.decided:
            said = f"{first} is kept {duel.first_only} of {duel.decided} times against {second}"
        else:
            said = f"{first} and {second}: never one kept without the other"
        print(f"  {duel.axis}: {said} (both kept {duel.both}, neither {duel.neither}; {prompts})")
    return 0


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


def _named(axis: str, value: str) -> str:
    """``z-image-turbo``, ``1344x768``; a number with its axis: ``seed 2``, ``steps 8``, ``cfg 3.5``."""
    return f"{axis} {value}" if axis in ("seed", "steps", "cfg") else value


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
