"""How the worker and ``renderloop local`` show their progress, and how they stop on signals.

On a terminal: rich bars per batch, with the log lines printed above them.
In a log or a pipe: one plain timestamped line per message.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Optional, Union

from renderloop.output import install_handler
from studio import processes
from win_side.progress import BatchCounts, Progress
from win_side.worker import StopSwitch

log = logging.getLogger("renderloop.worker")

# What signal.signal returns: a function, SIG_DFL/SIG_IGN, or None when the handler was not set from Python.
SignalHandler = Union[Callable[[int, Optional[FrameType]], Any], int, signal.Handlers, None]


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
    """Bars on a terminal, plain lines in a log or a pipe; the log lines of every renderloop logger shown."""
    if sys.stderr is None:  # pythonw.exe (a Task Scheduler task): no console; --log-file keeps the log
        install_handler(logging.NullHandler(), logging.INFO)
        return Progress()
    if sys.stderr.isatty():
        progress = RichProgress()
        install_handler(progress.handler, logging.INFO)
        return progress
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    install_handler(handler, logging.INFO)
    return Progress()


class StopOnSignals:
    """First Ctrl+C (or SIGTERM): stop cleanly. Second: leave at once.

    Files are only ever replaced atomically, so leaving at once never
    leaves a partial file in the tree.
    """

    def __init__(self, switch: StopSwitch) -> None:
        self.switch = switch
        self.count = 0
        self.previous: dict[int, SignalHandler] = {}

    def handle(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count > 1:
            print("renderloop: stopping now", file=sys.stderr)
            processes.kill_all()  # git runs in its own process group: the console's Ctrl+C does not reach it
            os._exit(130)
        if not self.switch.armed:  # nothing started yet: nothing to finish
            raise KeyboardInterrupt
        log.info("stopping: committing what is finished (Ctrl+C again to leave at once)")
        self.switch.request()

    def __enter__(self) -> "StopOnSignals":
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
                sig = getattr(signal, name, None)
                if sig is not None:
                    self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            # None: the handler was not set from Python; the default is the closest we can restore
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

