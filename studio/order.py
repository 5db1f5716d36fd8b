"""The order a worker renders waiting images in: one model at a time, first needed first.

Switching models costs a GPU more than a render (the weights are loaded
again), so the worker renders every waiting image of the model a server
has loaded before it switches, and takes new models in the order their
first image waits (batch files in order, prompts in file order).
``renderloop status`` shows this order; the worker's scheduler
(``win_side.affinity``) follows it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from studio.batch import Job


def model_order(models: Iterable[str]) -> list[str]:
    """Each model once, in the order its first image waits."""
    return list(dict.fromkeys(models))


@dataclass
class ModelRun:
    """The waiting images of one model, rendered together."""

    model: str
    jobs: list[Job] = field(default_factory=list)

    def batches(self) -> dict[str, int]:
        """Images per batch, batches in order."""
        counts: dict[str, int] = {}
        for job in self.jobs:
            counts[job.batch] = counts.get(job.batch, 0) + 1
        return counts


def render_order(waiting: Sequence[Job]) -> list[ModelRun]:
    """``waiting`` (in plan order) as the runs one server renders them in."""
    runs = {model: ModelRun(model) for model in model_order(job.spec.model for job in waiting)}
    for job in waiting:
        runs[job.spec.model].jobs.append(job)
    return list(runs.values())


def completion_order(waiting: Sequence[Job]) -> list[str]:
    """The batches in the order their last waiting image is rendered (on one server)."""
    last: dict[str, int] = {}
    position = 0
    for run in render_order(waiting):
        for job in run.jobs:
            last[job.batch] = position
            position += 1
    return sorted(last, key=last.__getitem__)
