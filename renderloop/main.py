"""The ``renderloop`` command: builds the parser and routes to the verb's module.

Each verb is one module of :mod:`renderloop.commands`: it registers its
options (``add_parser``) and runs (``run``): calls the libraries, prints,
returns the exit code.  Errors reach the person through ``error_handler``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from renderloop.commands import (
    clone,
    config,
    demo,
    doctor,
    export,
    follow,
    hook,
    hub,
    init,
    ledger,
    local,
    new,
    review,
    stats,
    status,
    wake,
    worker,
)
from renderloop.commands import open as open_verb  # the verb, not the builtin
from renderloop.console import replace_unencodable
from renderloop.error_handler import Exit, error_handler, leave_quietly_on_broken_pipe
from renderloop.options import HelpFormatter
from renderloop.output import show_warnings
from studio import __version__
from studio.errors import NotConfigured

COMMANDS = (
    init, clone, open_verb, new, status, review, ledger, stats, export, follow, worker, hub, local, wake, config, doctor, demo,
    hook,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="renderloop",
        description="Batch image rendering on your own GPUs, driven entirely by git.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"renderloop {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-C", dest="directory", action="append", type=Path, metavar="PATH",
                        help="run as if renderloop was started in PATH (as `git -C`; repeat to go on from there)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    replace_unencodable()  # a console code page that cannot show a character gets '?', never an error
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    show_warnings()
    started_in = Path.cwd()
    try:
        with error_handler(args.debug):
            for directory in args.directory or []:
                if not directory.is_dir():
                    raise NotConfigured(f"-C {directory}: no such folder")
                os.chdir(directory)
            init.warn_if_hooks_off(args.command, getattr(args, "repo", Path(".")))
            code: int = args.run(args)
            return code
    except Exit as exc:
        return exc.code
    finally:
        os.chdir(started_in)


def entry() -> None:
    with leave_quietly_on_broken_pipe():
        code = main()
        sys.stdout.flush()  # `renderloop status | head -1`: the reader may be gone already
        raise SystemExit(code)


if __name__ == "__main__":
    entry()
