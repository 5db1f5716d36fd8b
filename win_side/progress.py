"""Progress: counts per batch and one log line per image finished.

The command that runs the worker chooses how they are shown (rich bars on a
terminal, plain lines in a log): see ``renderloop.progress``.
"""
from __future__ import annotations

import logging
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
