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



# ---------------------------------------------------------------- stats --compare


@dataclass
class Duel:
    """Two values of one axis, judged side by side on the images of swept prompts that differ only in that axis."""

    archetype: str
    axis: str
    first: str
    second: str
    first_only: int = 0  # the first kept, the second not
    second_only: int = 0
    both: int = 0
    neither: int = 0
    prompts: set[tuple[str, str]] = field(default_factory=set)  # (batch, prompt slug)

    @property
    def decided(self) -> int:
        """Comparisons where exactly one of the two was kept."""
        return self.first_only + self.second_only

    def as_dict(self) -> dict[str, object]:
        return {
            "archetype": self.archetype, "axis": self.axis, "variant": self.first, "against": self.second,
            "kept_alone": self.first_only, "against_kept_alone": self.second_only, "both_kept": self.both,
            "neither_kept": self.neither, "comparisons": self.decided + self.both + self.neither,
            "prompts": len(self.prompts),
        }


def compare(ledger: Ledger) -> list[Duel]:
    """Every pair of axis values judged side by side, by archetype: how often each was kept when the other was not.

    Two images are side by side when they come from the same prompt entry of
    the same batch (a sweep) and differ in exactly one axis; each such pair
    of verdicts in force counts once.  The winner of each pair comes first.
    """
    groups: dict[tuple[str, str], list[LedgerLine]] = defaultdict(list)
    for (batch, _slug), line in ledger.in_force().items():
        if line.axes and line.prompt_slug:
            groups[(batch, line.prompt_slug)].append(line)
    duels: dict[tuple[str, str, str, str], Duel] = {}
    for key, lines in groups.items():
        names = sorted({name for line in lines for name in line.axes or {}})
        for axis in names:
            contexts: dict[tuple[tuple[str, str], ...], list[LedgerLine]] = defaultdict(list)
            for line in lines:
                axes = line.axes or {}
                if axis in axes:
                    contexts[tuple(sorted((k, str(v)) for k, v in axes.items() if k != axis))].append(line)
            for members in contexts.values():
                for n, one in enumerate(members):
                    for other in members[n + 1 :]:
                        _judge(duels, key, axis, one, other)
    found = [_winner_first(duel) for duel in duels.values()]
    return sorted(found, key=lambda d: (d.archetype, d.axis, -d.decided, d.first, d.second))


def _judge(duels: dict[tuple[str, str, str, str], Duel], key: tuple[str, str], axis: str,
           one: LedgerLine, other: LedgerLine) -> None:
    a, b = str((one.axes or {})[axis]), str((other.axes or {})[axis])
    if a == b:
        return
    if b < a:
        a, b, one, other = b, a, other, one
    archetype = one.archetype or other.archetype or "(none)"
    duel = duels.setdefault((archetype, axis, a, b), Duel(archetype, axis, a, b))
    duel.prompts.add(key)
    kept = (one.verdict == "keep", other.verdict == "keep")
    if kept == (True, False):
        duel.first_only += 1
    elif kept == (False, True):
        duel.second_only += 1
    elif kept == (True, True):
        duel.both += 1
    else:
        duel.neither += 1


def _winner_first(duel: Duel) -> Duel:
    if duel.second_only > duel.first_only:
        return Duel(duel.archetype, duel.axis, duel.second, duel.first, duel.second_only, duel.first_only, duel.both,
                    duel.neither, duel.prompts)
    return duel
