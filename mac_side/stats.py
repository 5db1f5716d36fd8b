"""The evidence for choosing a model per kind of image (``renderloop stats``).

* keep rate by model and by archetype, from the verdict in force for each
  image (the latest ledger line of each batch and slug);
* render time (median and mean seconds) by model and backend, from the
  render records of finished images;
* cost by backend: the sum of ``cost_usd`` over every render record.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from studio.inventory import records
from studio.layout import Studio, batch_id_problem
from studio.ledger import Ledger, LedgerLine
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


@dataclass
class Stats:
    by_model: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_archetype: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    seconds: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    cost: dict[str, tuple[int, float]] = field(default_factory=dict)  # backend -> (images, USD)

    @property
    def empty(self) -> bool:
        return not self.by_model and not self.cost


def gather(studio: Studio) -> Stats:
    found = Stats()
    all_records = _all_records(studio)
    for (batch, slug), line in Ledger.read(studio.ledger_path).in_force().items():
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

