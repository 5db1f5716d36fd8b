"""Progress: rich bars per batch on a terminal, one plain log line per image otherwise."""
from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from studio.record import RenderRecord

log = logging.getLogger("renderloop.worker")


@dataclass
class BatchCounts:
    total: int = 0
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    finished_here: int = 0  # images finished by this run (for the rate)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.finished_here / elapsed if elapsed > 0 and self.finished_here else 0.0

    def eta(self) -> Optional[float]:
        remaining = self.total - self.done - self.failed
        rate = self.rate()
        return remaining / rate if rate > 0 else None


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts per batch; plain log lines. ``RichProgress`` adds live bars."""

    def __init__(self) -> None:
        self.batches: dict[str, BatchCounts] = {}
        self._lock = threading.Lock()

    def planned(self, totals: dict[str, tuple[int, int, int]]) -> None:
        with self._lock:
            for batch, (total, done, failed) in totals.items():
                counts = self.batches.get(batch)
                if counts is None or (counts.total, counts.done, counts.failed) != (total, done, failed):
                    if counts is None:
                        counts = self.batches[batch] = BatchCounts()
                    counts.total, counts.done, counts.failed = total, done, failed
                    self._update(batch, counts)
                if total - done - failed > 0 and counts.finished_here == 0:
                    counts.started = time.monotonic()

    def finished(self, record: RenderRecord, lane: str) -> None:
        with self._lock:
            counts = self.batches.setdefault(record.batch, BatchCounts())
            if record.status == "done":
                counts.done += 1
            else:
                counts.failed += 1
            counts.finished_here += 1
            counts.total = max(counts.total, counts.done + counts.failed)
            self._update(record.batch, counts)
        if record.status == "done":
            what = f"done in {record.render_seconds or 0:.1f} s on {lane}"
        else:
            error = record.error
            what = f"FAILED {error.kind}: {error.message}" if error else "FAILED"
        log.info(
            "%s/%s %s [%d/%d done, %d failed, %.2f img/s, ETA %s]",
            record.batch, record.slug, what, counts.done, counts.total, counts.failed,
            counts.rate(), _duration(counts.eta()),
        )

    def _update(self, batch: str, counts: BatchCounts) -> None:
        pass

    def close(self) -> None:
        pass


class RichProgress(Progress):
    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.logging import RichHandler
        from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bars

        self.console = Console(stderr=True)
        self.bars = Bars(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.handler = RichHandler(console=self.console, show_path=False, markup=False)
        self.bars.start()

    def _update(self, batch: str, counts: BatchCounts) -> None:
        if batch not in self.tasks:
            self.tasks[batch] = self.bars.add_task(batch, total=counts.total, failed=0, rate="")
        rate = counts.rate()
        self.bars.update(
            self.tasks[batch],
            total=counts.total,
            completed=counts.done + counts.failed,
            failed=counts.failed,
            rate=f"{rate * 60:.1f} img/min" if rate else "",
        )

    def close(self) -> None:
        self.bars.stop()


def make_progress() -> Progress:
    """Bars on a terminal, plain lines in a log or a pipe."""
    if sys.stderr.isatty():
        progress = RichProgress()
        _install_handler(progress.handler)
        return progress
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    _install_handler(handler)
    return Progress()


def _install_handler(handler: logging.Handler) -> None:
    root = logging.getLogger("renderloop")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
