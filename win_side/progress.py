"""Progress: counts per batch and one log line per image finished.

The command that runs the worker chooses how they are shown (rich bars on a
terminal, plain lines in a log): see ``renderloop.progress``.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

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


BatchEnd = Callable[[str, int, int, int], None]  # batch, done, failed, total


class Progress:
    """Counts per batch; plain log lines. ``RichProgress`` adds live bars.

    ``on_batch_end(batch, done, failed, total)`` is called once when an image
    finished by this run leaves a batch with nothing pending (the worker's
    notifications hang on it).
    """

    def __init__(self) -> None:
        self.batches: dict[str, BatchCounts] = {}
        self._lock = threading.Lock()
        self.on_batch_end: Optional[BatchEnd] = None
        self._ended: set[str] = set()

    def planned(self, totals: dict[str, tuple[int, int, int]]) -> None:
        with self._lock:
            for batch, (total, done, failed) in totals.items():
                counts = self.batches.get(batch)
                if counts is None or (counts.total, counts.done, counts.failed) != (total, done, failed):
                    if counts is None:
                        counts = self.batches[batch] = BatchCounts()
                    counts.total, counts.done, counts.failed = total, done, failed
                    self._update(batch, counts)
                if total - done - failed > 0:
                    self._ended.discard(batch)
                    if counts.finished_here == 0:
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
            ended = counts.done + counts.failed >= counts.total and record.batch not in self._ended
            if ended:
                self._ended.add(record.batch)
            snapshot = (counts.done, counts.failed, counts.total)
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
        if ended and self.on_batch_end is not None:
            try:
                self.on_batch_end(record.batch, *snapshot)
            except Exception:  # noqa: BLE001 - telling someone never stops the worker
                log.warning("could not report the end of %s", record.batch, exc_info=True)

    def _update(self, batch: str, counts: BatchCounts) -> None:
        pass

    def close(self) -> None:
        pass
