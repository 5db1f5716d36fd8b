"""``renderloop follow``: watch the worker's commits arrive, pull them, write the review."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from renderloop.options import above_zero, add_command, add_repo, at_least_zero

if TYPE_CHECKING:
    from mac_side.follow import Statuses
    from renderloop.options import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "follow", "watch the worker's commits arrive, pull them, write the review", run)
    p.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help="how often to ask the remote")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="give up after this long")
    add_repo(p)


def run(args: argparse.Namespace) -> int:
    above_zero("--poll", args.poll)
    at_least_zero("--timeout", args.timeout)
    return follow(args.repo, poll=args.poll, timeout=args.timeout)


def follow(repo: Path, *, poll: float = 2.0, timeout: Optional[float] = None,
           notify: Optional[Callable[[str, str], bool]] = None) -> int:
    """Follow, then tell the desktop (``notify(title, body)``, default: mac_side.desktop) and print the reviews."""
    from mac_side.desktop import notify_desktop
    from mac_side.follow import GaveUp, Pulled, Reviewed, Started, Trouble, follow as events

    display: Optional[_Display] = None
    reviewed: list[tuple[str, str, Optional[str]]] = []  # batch, summary, review path
    try:
        for event in events(repo, poll=poll, timeout=timeout):
            if isinstance(event, Started):
                for name, item in event.statuses.items():
                    if item.problem is not None:
                        print(f"{name}: invalid batch file, not followed: {item.problem}")
                if not event.following:
                    print("Nothing to wait for: every batch is rendered.")
                    return 0
                print(f"Following {', '.join(event.following)} on origin/{event.branch} "
                      f"(every {poll:g} s; Ctrl+C to stop).")
                display = _Display(event.following)
                display.update(event.statuses)
            elif isinstance(event, Trouble):
                if display is None:
                    print(f"renderloop: warning: {event.message}", file=sys.stderr)
                else:
                    display.note(event.message)
            elif isinstance(event, Pulled) and display is not None:
                display.update(event.statuses)
            elif isinstance(event, Reviewed) and display is not None:
                display.note(event.outcome.line())
                # the hook may have written it during the pull already: "(unchanged)" is noise on the desktop
                reviewed.append((event.outcome.batch, event.outcome.line().removesuffix(" (unchanged)"),
                                 event.outcome.path))
            elif isinstance(event, GaveUp):
                if display is not None:
                    display.close()
                    display = None
                print(f"renderloop: gave up after {timeout:g} s: {event.pending} image(s) still pending in "
                      f"{', '.join(event.following)}", file=sys.stderr)
                return 1
    finally:
        if display is not None:
            display.close()
    if reviewed:
        paths = [path for _, _, path in reviewed if path]
        if paths:
            print("Review: " + ", ".join(paths))
        title = f"renderloop: {', '.join(batch for batch, _, _ in reviewed)} rendered"
        body = "; ".join(line for _, line, _ in reviewed)
        (notify or notify_desktop)(title, body)
    return 0


class _Display:
    """Rich bars on a terminal, a plain line per change otherwise."""

    def __init__(self, batches: list[str]) -> None:
        self.batches = batches
        self.last: dict[str, tuple[int, int, int]] = {}
        self.bars = None
        if sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn())
            self.tasks = {b: self.bars.add_task(b, total=None, failed=0) for b in batches}
            self.bars.start()

    def update(self, statuses: Statuses) -> None:
        for batch in self.batches:
            item = statuses.get(batch)
            if item is None:
                continue
            counts = (item.rendered, item.failed, item.prompts)
            if self.last.get(batch) == counts:
                continue
            self.last[batch] = counts
            if self.bars is not None:
                self.bars.update(self.tasks[batch], total=item.prompts, completed=item.rendered + item.failed,
                                 failed=item.failed)
            else:
                print(f"{batch}: {item.rendered}/{item.prompts} rendered, {item.failed} failed, "
                      f"{item.pending} pending", flush=True)

    def note(self, text: str) -> None:
        if self.bars is not None:
            self.bars.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()
