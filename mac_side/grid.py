"""The comparison grid of one swept prompt: rows and columns named by its axes.

The one layout both the review (a Markdown table) and the HTML contact
sheet draw.  Two axes: rows by the first, columns by the second.  One axis:
one row.  Three or more: rows by the first, columns by the combinations of
the rest.  A zipped sweep (not every combination exists) is one row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from studio.batch import Job


@dataclass(frozen=True)
class Grid:
    prompt_slug: str
    row_axis: str  # "" when the grid is one row
    column_axis: str  # the axis names of the columns, joined by " · "
    columns: list[str]  # column labels
    rows: list[tuple[str, list[Optional[Job]]]]  # row label and its cells (None: no such combination)


def layout(prompt_slug: str, jobs: list[Job]) -> Grid:
    """The grid of the jobs of one swept prompt (all with the same axes, in the batch's order)."""
    names = [axis.name for axis in jobs[0].axes]
    labels: list[list[str]] = [[] for _ in names]
    for job in jobs:
        for n, axis in enumerate(job.axes):
            if axis.label not in labels[n]:
                labels[n].append(axis.label)
    full = len(names) > 1 and len(jobs) == math.prod(len(values) for values in labels)
    if not full:  # one axis, or zipped: one row, a column per image
        columns = [" · ".join(axis.label for axis in job.axes) for job in jobs]
        return Grid(prompt_slug, "", " · ".join(names), columns, [(prompt_slug, list(jobs))])
    by_labels = {tuple(axis.label for axis in job.axes): job for job in jobs}
    rest: list[tuple[str, ...]] = []
    for job in jobs:
        key = tuple(axis.label for axis in job.axes[1:])
        if key not in rest:
            rest.append(key)
    rows = [(row, [by_labels.get((row, *key)) for key in rest]) for row in labels[0]]
    return Grid(prompt_slug, names[0], " · ".join(names[1:]), [" · ".join(key) for key in rest], rows)
