"""Each batch's pending, rendered, failed and reviewed counts (``renderloop status``, ``follow``).

Counts come from the files of this checkout (pull first to see the worker's
latest): a slug is *rendered* when its record is current (same spec_hash)
and done with its PNG in the commit (here, or left out of a thin clone), *failed* when its current record failed,
*pending* otherwise (no record, an older spec, or a missing PNG: what the
worker will render next), and *reviewed* when the ledger holds a verdict for
its current spec.

With the counts: the order the worker renders what is pending in (one model
at a time, first needed first: ``studio.order``), so the person can read
which batch completes when.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from mac_side import ledger_watch
from studio import git
from studio.batch import Job
from studio.capability import newest, rel_path
from studio.config import load_config
from studio.inventory import Survey, survey
from studio.layout import Studio
from studio.ledger import Ledger
from studio.order import completion_order, render_order


@dataclass(frozen=True)
class BatchStatus:
    batch: str
    prompts: int = 0
    pending: int = 0
    rendered: int = 0
    failed: int = 0
    reviewed: int = 0
    problem: Optional[str] = None  # the first problem of an invalid batch file


def rewrites(studio: Studio) -> list[str]:
    """The remote rewrites that took verdicts, noticed and not accepted yet (``mac_side.ledger_watch``)."""
    if not git.is_repo(studio.root) or git.head(studio.root) is None:
        return []
    ledger_watch.notice(studio.root)
    return ledger_watch.pending(studio.root)


def order_lines(waiting: list[Job]) -> list[str]:
    """What the worker renders next, model by model, and the order batches complete in."""
    runs = render_order(waiting)
    if not runs:
        return []
    lines = ["", "Render order (one model at a time, first needed first; a worker with several servers"
             " renders some of these side by side):"]
    for number, run in enumerate(runs, 1):
        batches = ", ".join(f"{batch} {count}" for batch, count in run.batches().items())
        plural = "" if len(run.jobs) == 1 else "s"
        lines.append(f"  {number}. {run.model}: {len(run.jobs)} image{plural} ({batches})")
    lines.append(f"Batches complete in this order: {', '.join(completion_order(waiting))}")
    return lines


def capability_warnings(studio: Studio, waiting: list[Job]) -> list[str]:
    """Pending models the newest published worker (``workers/``) cannot render, and what it lacks."""
    published = newest(studio.root)
    if published is None:
        return []
    found = (published.cannot_render(model) for model in dict.fromkeys(job.spec.model for job in waiting))
    return [f"warning: {why} ({rel_path(published.worker)})" for why in found if why]


def batch_statuses(studio: Studio, waiting: Optional[list[Job]] = None) -> list[BatchStatus]:
    """Each batch's counts; ``waiting`` (when given) collects the pending images, in plan order."""
    config = load_config(studio)
    inventory = survey(studio, config)
    ledger = Ledger.read(studio.ledger_path)
    found = []
    for batch_id in sorted(inventory.paths):
        if batch_id in inventory.invalid:
            problems = inventory.invalid[batch_id].problems
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            found.append(BatchStatus(batch_id, problem=f"{problems[0]}{more}"))
        else:
            found.append(count(inventory, batch_id, ledger, waiting))
    return found


def count(inventory: Survey, batch: str, ledger: Ledger, waiting: Optional[list[Job]] = None) -> BatchStatus:
    """One batch's counts; its pending images appended to ``waiting`` (their batch file parsed only then)."""
    rendered = failed = reviewed = 0
    pending: set[str] = set()
    jobs = inventory.jobs[batch]
    for slug, spec_hash in jobs:
        state = inventory.state(batch, slug, spec_hash)
        if state == "done":
            rendered += 1
        elif state == "failed":
            failed += 1
        else:
            pending.add(slug)
        if ledger.for_image(batch, slug, spec_hash) is not None:
            reviewed += 1
    if waiting is not None and pending:
        waiting += [job for job in inventory.loaded(batch).jobs if job.slug in pending]
    return BatchStatus(batch, len(jobs), len(jobs) - rendered - failed, rendered, failed, reviewed)
