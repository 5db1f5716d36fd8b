"""``renderloop hub init PATH``: the bare repository on the GPU box the Mac pushes to over SSH."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from renderloop.options import add_command

if TYPE_CHECKING:
    from renderloop.options import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "hub", "the bare repository on the GPU box that the Mac pushes to", _usage)
    verbs = p.add_subparsers(dest="hub_command", metavar="ACTION")
    init = add_command(verbs, "init", "make the hub: refuses force-pushes and deleted branches", run_init)
    init.add_argument("path", type=Path, metavar="PATH", help="where the bare repository goes, e.g. C:\\studio.git")
    init.add_argument("--user", default=None, help="the SSH user in the Mac's remote URL (default: this user)")
    init.add_argument("--host", default=None, help="this machine's name as the Mac reaches it (default: host name)")
    init.add_argument("--branch", default="main", help="the studio's branch (default: main)")
    init.add_argument("--worker-clone", type=Path, default=None, metavar="PATH",
                      help="where the worker's clone goes in the printed line (default: next to the hub)")


def _usage(args: argparse.Namespace) -> int:
    print("usage: renderloop hub init PATH [--user USER] [--host HOST]")
    return 2


def run_init(args: argparse.Namespace) -> int:
    from win_side.hub import HUB_SETTINGS, init_hub

    hub = init_hub(args.path, branch=args.branch, user=args.user, host=args.host)
    print(f"{'Made' if hub.created else 'Re-configured'} the hub {hub.path}: "
          + ", ".join(f"{key}={value}" for key, value in HUB_SETTINGS))
    print("\nOn the Mac, in the studio:")
    print(f"  {hub.remote_add()}")
    print(f"  git push -u origin {args.branch}")
    print("\nOn this machine, the worker's clone (once the Mac has pushed):")
    print(f"  {hub.clone_line(args.worker_clone)}")
    print("\nSSH from the Mac must reach this machine with a key: see docs/setup.md.")
    return 0
