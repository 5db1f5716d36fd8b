"""``renderloop wake``: send a Wake-on-LAN packet to the configured worker."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from renderloop.options import add_command, add_repo

if TYPE_CHECKING:
    from renderloop.options import Subcommands


def add_parser(sub: Subcommands) -> None:
    add_repo(add_command(sub, "wake", "send a Wake-on-LAN packet to the configured worker", run))


def run(args: argparse.Namespace) -> int:
    return wake(args.repo)


def wake(repo: Path) -> int:
    from mac_side.wake import wake as send

    settings, sent = send(repo)
    print(f"sent a Wake-on-LAN packet ({sent} bytes) for {settings.mac} to {settings.broadcast}:{settings.port}")
    return 0
