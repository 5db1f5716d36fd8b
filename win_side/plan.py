"""Gather and decide: which images the batch files want that the records lack.

Reading only (the index and ``git status`` for blob ids; the plan cache in
``.git`` is its one write). The desired state is every batch file; the actual
state is the render records and images in the checkout's commit; a job is
planned for each (batch, slug) whose record is missing, or whose spec_hash
differs, or whose image is gone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from studio.batch import Job
from studio.config import StudioConfig
from studio.errors import FatalError, InvalidFile
from studio.inventory import survey
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
    inventory = survey(studio, config)
    plan = Plan()
    for batch_id in [*inventory.invalid, *inventory.jobs]:
        why = escapes(studio, batch_id)
        if why and (only is None or batch_id in only):
            plan.refused[batch_id] = why
    for batch_id, error in inventory.invalid.items():
        if (only is None or batch_id in only) and batch_id_problem(batch_id) is None and batch_id not in plan.refused:
            plan.invalid[batch_id] = (inventory.paths[batch_id], error)
    for batch_id, jobs in inventory.jobs.items():
        if (only is not None and batch_id not in only) or batch_id in plan.refused:
            continue
        done = failed = 0
        wanted: set[str] = set()
        for slug, spec_hash in jobs:
            plan.desired[(batch_id, slug)] = spec_hash
            state = inventory.state(batch_id, slug, spec_hash)
            if state == "done":
                done += 1
            elif state == "failed" and not retry_failed:
                failed += 1
            else:
                wanted.add(slug)
        if wanted:  # only a batch with images to render is parsed (its specs are needed)
            plan.jobs += [job for job in inventory.loaded(batch_id).jobs if job.slug in wanted]
        plan.totals[batch_id] = (len(jobs), done, failed)
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
