"""Gather and decide: which images the batch files want that the records lack.

Pure reading: no git, no writes. The desired state is every batch file; the
actual state is the render records; a job is planned for each (batch, slug)
whose record is missing, or whose spec_hash differs, or whose image is gone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from studio.batch import Job
from studio.config import StudioConfig
from studio.errors import FatalError, InvalidFile
from studio.inventory import job_state, load_batches, png_in, records
from studio.layout import BATCH_ERROR_NAME, Studio, batch_id_problem


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)  # to render: each model's images together, else in file order
    invalid: dict[str, tuple[Path, InvalidFile]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # batch -> why its renders folder is refused
    clear_errors: list[str] = field(default_factory=list)  # batches whose batch-error.json no longer holds
    desired: dict[tuple[str, str], str] = field(default_factory=dict)  # (batch, slug) -> spec_hash
    totals: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # batch -> (total, done, failed)


def make_plan(
    studio: Studio, config: StudioConfig, *, retry_failed: bool = False, only: set[str] | None = None
) -> Plan:
    inventory = load_batches(studio, config)
    plan = Plan()
    for batch_id in [*inventory.invalid, *inventory.batches]:
        why = escapes(studio, batch_id)
        if why and (only is None or batch_id in only):
            plan.refused[batch_id] = why
    for batch_id, error in inventory.invalid.items():
        if (only is None or batch_id in only) and batch_id_problem(batch_id) is None and batch_id not in plan.refused:
            plan.invalid[batch_id] = (inventory.paths[batch_id], error)
    has_png = png_in(studio)
    for batch_id, loaded in inventory.batches.items():
        if (only is not None and batch_id not in only) or batch_id in plan.refused:
            continue
        actual = records(studio, batch_id)
        done = failed = 0
        for job in loaded.jobs:
            plan.desired[(job.batch, job.slug)] = job.spec_hash
            state = job_state(job, actual.get(job.slug), has_png)
            if state == "done":
                done += 1
            elif state == "failed" and not retry_failed:
                failed += 1
            else:
                plan.jobs.append(job)
        plan.totals[batch_id] = (len(loaded.jobs), done, failed)
    plan.jobs = by_model(plan.jobs)
    plan.clear_errors = [
        batch_id for batch_id in error_records(studio)
        if batch_id not in plan.invalid and batch_id not in plan.refused and not escapes(studio, batch_id)
        and (only is None or batch_id in only)
    ]
    return plan


def by_model(jobs: list[Job]) -> list[Job]:
    """``jobs`` with each model's images together (models in order of first need, batch order within each):
    a sweep over two models loads each model once, not once per prompt."""
    first: dict[str, int] = {}
    for job in jobs:
        first.setdefault(job.spec.model, len(first))
    return sorted(jobs, key=lambda job: first[job.spec.model])


def error_records(studio: Studio) -> list[str]:
    """The batches that have a ``renders/<batch>/batch-error.json``."""
    if not studio.renders_dir.is_dir():
        return []
    return [path.parent.name for path in sorted(studio.renders_dir.glob(f"*/{BATCH_ERROR_NAME}"))]


def escapes(studio: Studio, batch_id: str) -> str | None:
    """Why the worker must not write into ``renders/<batch_id>`` (a link, or a file), or None."""
    if batch_id_problem(batch_id) is not None:
        return None  # an invalid name is reported as such
    try:
        studio.batch_dir(batch_id)
    except FatalError as exc:
        return str(exc)
    return None
