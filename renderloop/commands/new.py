"""``renderloop new BATCH [--rerolls]``: scaffold batches/BATCH.yaml."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from renderloop.options import add_command, add_repo

if TYPE_CHECKING:
    from mac_side.new import Gathered
    from renderloop.options import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "new", "scaffold batches/BATCH.yaml (--rerolls: every slug to reroll; --compare: models side by side)", run)
    p.add_argument("batch", help="the batch name, e.g. hero-q4")
    p.add_argument("--rerolls", action="store_true", help="gather every slug whose latest verdict is reroll")
    p.add_argument("--model", help="the batch's model (default: the first in renderloop.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing batch file")
    p.add_argument("--compare", metavar="MODEL,MODEL", help="render the prompts of --from BATCH once per model")
    p.add_argument("--from", dest="source", metavar="BATCH", help="with --compare: the batch whose prompts to compare")
    add_repo(p)


def run(args: argparse.Namespace) -> int:
    compare = [m.strip() for m in args.compare.split(",") if m.strip()] if args.compare is not None else None
    if compare is None and args.source is not None:
        print("renderloop new: --from goes with --compare MODEL,MODEL", file=sys.stderr)
        return 2
    if compare is not None and (args.rerolls or args.model):
        print("renderloop new: --compare goes with neither --rerolls nor --model", file=sys.stderr)
        return 2
    return new(args.repo, args.batch, rerolls=args.rerolls, model=args.model, force=args.force, compare=compare,
               source=args.source)


def new(repo: Path, batch: str, *, rerolls: bool = False, model: Optional[str] = None, force: bool = False,
        compare: Optional[list[str]] = None, source: Optional[str] = None) -> int:
    from mac_side.new import new_batch

    written = new_batch(repo, batch, rerolls=rerolls, model=model, force=force, compare=compare, source=source)
    if compare is not None:
        groups = written.loaded.groups()
        print(f"Wrote {written.rel}: {len(groups)} prompts of {source} x {len(set(compare))} models = "
              f"{len(written.loaded.jobs)} images.")
        print("Commit and push it to render; each prompt's review section is a grid.")
    elif written.gathered is None:
        jobs = written.loaded.jobs
        print(f"Wrote {written.rel}: an example with {len(jobs)} prompts for {jobs[0].spec.model}.")
        print("Edit the prompts, then commit and push it to render.")
    else:
        _report_rerolls(written.rel, written.gathered)
    return 0


def _report_rerolls(rel: str, gathered: Gathered) -> None:
    count = len(gathered.rerolls)
    print(f"Wrote {rel}: {count} slug{'s' if count != 1 else ''} to reroll with new seeds and their cues.")
    for reroll in gathered.rerolls:
        cues = reroll.entry.get("cues", [])
        extra = f", cues: {'; '.join(cues)}" if cues else ""
        print(f"  {reroll.slug} (from {reroll.source}) seed {reroll.entry['seed']}{extra}")
    for skipped in gathered.skipped:
        print(f"  skipped {skipped}")
    print("Commit and push it to render.")
