"""``renderloop status``: each batch with pending, rendered, failed and reviewed counts."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from renderloop.options import add_command, add_repo
from renderloop.output import print_table

if TYPE_CHECKING:
    from mac_side.status import BatchStatus
    from renderloop.options import Subcommands

HEADERS = ("batch", "prompts", "pending", "rendered", "failed", "reviewed")


def add_parser(sub: Subcommands) -> None:
    add_repo(add_command(sub, "status", "each batch with pending, rendered, failed and reviewed counts", run))


def run(args: argparse.Namespace) -> int:
    return status(args.repo)


def status(repo: Path) -> int:
    from mac_side.status import batch_statuses, capability_warnings, order_lines, rewrites
    from studio.batch import Job
    from studio.layout import open_studio

    studio = open_studio(repo)
    waiting: list[Job] = []
    found = batch_statuses(studio, waiting)
    for note in rewrites(studio):  # verdicts a force-push took: first, whatever else there is
        print(f"warning: {note}")
    if not found:
        print("No batches yet: `renderloop new NAME` scaffolds batches/NAME.yaml.")
        return 0
    print_table("", HEADERS, [row(s) for s in found])
    for item in found:
        if item.problem is not None:
            print(f"{item.batch}: invalid: {item.problem}")
    for line in order_lines(waiting) + capability_warnings(studio, waiting):
        print(line)
    return 0


def row(item: BatchStatus) -> tuple[object, ...]:
    if item.problem is not None:
        return (item.batch, "invalid", "", "", "", "")
    return (item.batch, item.prompts, item.pending, item.rendered, item.failed, item.reviewed)
