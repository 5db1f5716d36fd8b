"""``renderloop new BATCH [--rerolls]``: scaffold batches/BATCH.yaml."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from renderloop.options import add_command, add_repo

if TYPE_CHECKING:
    from mac_side.new import Gathered
    from renderloop.options import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "new", "scaffold batches/BATCH.yaml (--rerolls: every slug to reroll)", run)
    p.add_argument("batch", help="the batch name, e.g. hero-q4")
    p.add_argument("--rerolls", action="store_true", help="gather every slug whose latest verdict is reroll")
    p.add_argument("--model", help="the batch's model (default: the first in renderloop.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing batch file")
    add_repo(p)


def run(args: argparse.Namespace) -> int:
    return new(args.repo, args.batch, rerolls=args.rerolls, model=args.model, force=args.force)


def new(repo: Path, batch: str, *, rerolls: bool = False, model: Optional[str] = None, force: bool = False) -> int:
    from mac_side.new import new_batch

    written = new_batch(repo, batch, rerolls=rerolls, model=model, force=force)
    if written.gathered is None:
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
