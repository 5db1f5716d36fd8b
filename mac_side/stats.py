"""``renderloop stats``: the evidence for choosing a model per kind of image.

* keep rate by model and by archetype, from the verdict in force for each
  image (the latest ledger line of each batch and slug);
* render time (median and mean seconds) by model and backend, from the
  render records of finished images;
* cost by backend: the sum of ``cost_usd`` over every render record.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mac_side.reading import print_table, read_ledger
from studio.inventory import records
from studio.layout import Studio, batch_id_problem, open_studio
from studio.ledger import LedgerLine, latest
from studio.record import RenderRecord


@dataclass
class Tally:
    keep: int = 0
    reroll: int = 0
    reject: int = 0

    def add(self, verdict: str) -> None:
        setattr(self, verdict, getattr(self, verdict) + 1)

    @property
    def total(self) -> int:
        return self.keep + self.reroll + self.reject

    def row(self, name: str) -> tuple[object, ...]:
        return (name, self.total, self.keep, self.reroll, self.reject, f"{100 * self.keep / self.total:.0f}%")


@dataclass
class Stats:
    by_model: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_archetype: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    seconds: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    cost: dict[str, tuple[int, float]] = field(default_factory=dict)  # backend -> (images, USD)

    @property
    def empty(self) -> bool:
        return not self.by_model and not self.cost


def stats(repo: Path) -> int:
    studio = open_studio(repo)
    found = gather(studio)
    if found.empty:
        print("Nothing yet: no verdicts in ledger.jsonl and no render records. Render a batch and review it first.")
        return 0
    verdict_headers = ("reviewed", "keep", "reroll", "reject", "keep rate")
    sections = [
        ("Keep rate by model", ("model", *verdict_headers), [t.row(k) for k, t in sorted(found.by_model.items())], 1),
        ("Keep rate by archetype", ("archetype", *verdict_headers), [t.row(k) for k, t in sorted(found.by_archetype.items())], 1),
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


def gather(studio: Studio) -> Stats:
    found = Stats()
    all_records = _all_records(studio)
    for (batch, slug), line in latest(read_ledger(studio)).items():
        record = all_records.get((batch, slug))
        found.by_model[_model_of(line, record)].add(line.verdict)
        found.by_archetype[line.archetype or "(none)"].add(line.verdict)
    costs: dict[str, list[float]] = defaultdict(list)
    for record in all_records.values():
        costs[record.backend].append(record.cost_usd or 0.0)
        if record.status == "done" and record.render_seconds is not None:
            found.seconds[(record.spec.model, record.backend)].append(record.render_seconds)
    found.cost = {backend: (len(values), sum(values)) for backend, values in costs.items()}
    return found


def _all_records(studio: Studio) -> dict[tuple[str, str], RenderRecord]:
    found: dict[tuple[str, str], RenderRecord] = {}
    if not studio.renders_dir.is_dir():
        return found
    for folder in sorted(studio.renders_dir.iterdir()):
        if folder.is_dir() and batch_id_problem(folder.name) is None:
            for slug, record in records(studio, folder.name).items():
                found[(folder.name, slug)] = record
    return found


def _model_of(line: LedgerLine, record: RenderRecord | None) -> str:
    if line.model:
        return line.model
    return record.spec.model if record is not None else "(unknown)"


def _time_rows(found: Stats) -> list[tuple[object, ...]]:
    return [
        (model, backend, len(values), f"{statistics.median(values):.1f}", f"{statistics.fmean(values):.1f}")
        for (model, backend), values in sorted(found.seconds.items())
    ]


def _cost_rows(found: Stats) -> list[tuple[object, ...]]:
    return [(backend, images, f"{usd:.4f}") for backend, (images, usd) in sorted(found.cost.items())]
