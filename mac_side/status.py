"""Each batch's pending, rendered, failed and reviewed counts (``renderloop status``, ``follow``).

Counts come from the files of this checkout (pull first to see the worker's
latest): a slug is *rendered* when its record is current (same spec_hash)
and done with its PNG present, *failed* when its current record failed,
*pending* otherwise (no record, an older spec, or a missing PNG: what the
worker will render next), and *reviewed* when the ledger holds a verdict for
its current spec.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from studio.batch import LoadedBatch
from studio.config import load_config
from studio.inventory import job_state, load_batches, png_in, records
from studio.layout import Studio
from studio.ledger import Ledger


@dataclass(frozen=True)
class BatchStatus:
    batch: str
    prompts: int = 0
    pending: int = 0
    rendered: int = 0
    failed: int = 0
    reviewed: int = 0
    problem: Optional[str] = None  # the first problem of an invalid batch file


def batch_statuses(studio: Studio) -> list[BatchStatus]:
    config = load_config(studio)
    inventory = load_batches(studio, config)
    ledger = Ledger.read(studio.ledger_path)
    found = []
    for batch_id in sorted(inventory.paths):
        if batch_id in inventory.invalid:
            problems = inventory.invalid[batch_id].problems
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            found.append(BatchStatus(batch_id, problem=f"{problems[0]}{more}"))
        else:
            found.append(count(studio, inventory.batches[batch_id], ledger))
    return found


def count(studio: Studio, loaded: LoadedBatch, ledger: Ledger) -> BatchStatus:
    actual = records(studio, loaded.batch)
    rendered = failed = reviewed = 0
    has_png = png_in(studio)
    for job in loaded.jobs:
        state = job_state(job, actual.get(job.slug), has_png)
        if state == "done":
            rendered += 1
        elif state == "failed":
            failed += 1
        if ledger.for_image(job.batch, job.slug, job.spec_hash) is not None:
            reviewed += 1
    total = len(loaded.jobs)
    return BatchStatus(loaded.batch, total, total - rendered - failed, rendered, failed, reviewed)
