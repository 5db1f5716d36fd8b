"""``renderloop config``: this machine's settings, and where each comes from.

``--path`` prints where this machine's settings file is (it need not exist
yet).  Without it: every setting with its effective value and its source
(flag, env, file, default); secrets only as set or not set.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from renderloop.options import add_command

if TYPE_CHECKING:
    from renderloop.options import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "config", "this machine's settings and where each comes from (--path: the file)", run)
    p.add_argument("--path", action="store_true", help="print where this machine's settings file is")


def run(args: argparse.Namespace) -> int:
    return config(args.path)


def config(path_only: bool) -> int:
    from studio.machine import MACHINE_ENV, effective, load_machine, machine_path

    if path_only:
        print(machine_path())
        return 0
    machine = load_machine()
    there = "" if machine.path.is_file() else "  (not there yet: built-in defaults)"
    print(f"this machine's settings: {machine.path}{there}")
    print(f"  (another file: {MACHINE_ENV}=PATH; one setting: RENDERLOOP_<SECTION>_<NAME>, e.g. "
          "RENDERLOOP_WORKER_COMFYUI)")
    rows = effective(machine)
    key_width = max(len(key) for key, _, _ in rows)
    value_width = min(max(len(value) for _, value, _ in rows), 48)
    for key, value, source in rows:
        print(f"{key.ljust(key_width)}  {value.ljust(value_width)}  {source}")
    return 0
