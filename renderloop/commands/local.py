"""``renderloop local BATCH``: render a batch on this Mac with mflux, commit and push."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from renderloop.options import above_zero, add_command, add_repo, at_least_zero

if TYPE_CHECKING:
    from renderloop.options import Subcommands
    from win_side.local_render import LocalResult


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "local", "render a batch on this Mac with mflux, commit and push", run)
    p.add_argument("batch", help="the batch to render")
    p.add_argument("--cooldown", type=float, default=None, metavar="SECONDS", help="pause between runs")
    p.add_argument("--min-available-gb", type=float, default=None, metavar="GB", help="memory gate")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="limit per image")
    add_repo(p)


def run(args: argparse.Namespace) -> int:
    return local(args.repo, args.batch, cooldown=args.cooldown, min_available_gb=args.min_available_gb,
                 timeout=args.timeout)


def local(
    repo: Path, batch: str, *, cooldown: Optional[float] = None, min_available_gb: Optional[float] = None,
    timeout: Optional[float] = None,
) -> int:
    from renderloop.progress import StopOnSignals, make_progress
    from win_side.local_render import render_locally
    from win_side.worker import StopSwitch

    _check_knobs(cooldown, min_available_gb, timeout)
    switch = StopSwitch()
    progress = make_progress()
    try:
        with StopOnSignals(switch):
            result = render_locally(repo, batch, progress, switch, cooldown=cooldown,
                                    min_available_gb=min_available_gb, timeout=timeout)
    finally:
        progress.close()
    return _report(result)


def _report(result: LocalResult) -> int:
    summary = result.summary
    if summary.rendered or summary.failed or result.interrupted or result.gave_up:
        line = f"{result.batch}: {summary.rendered} rendered, {summary.failed} failed on this Mac"
    else:
        line = f"{result.batch}: nothing to render, every image is done"
    if result.waiting:
        line += f"; {result.waiting} commit{'s' if result.waiting != 1 else ''} could not be pushed yet (see above):"
        line += " `git pull --rebase` and `git push` send them later"
    elif result.has_remote:
        line += "; pushed"
    print(line)
    if summary.rendered or summary.failed:
        print(f"write the review with: renderloop review {result.batch}")
    if result.gave_up:
        print(f"renderloop: error: stopped: {result.gave_up[0]}", file=sys.stderr)
        return 1
    if result.interrupted:
        print("renderloop: stopped; run `renderloop local` again to render the rest", file=sys.stderr)
        return 130
    return 0


def _check_knobs(cooldown: Optional[float], min_available_gb: Optional[float], timeout: Optional[float]) -> None:
    at_least_zero("--cooldown", cooldown)
    at_least_zero("--min-available-gb", min_available_gb)
    above_zero("--timeout", timeout, "give the longest an image may take, in seconds")
