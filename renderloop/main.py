"""The ``renderloop`` command: builds the parser and routes to the verb's module.

Each verb is one module of :mod:`renderloop.commands`: it registers its
options (``add_parser``) and runs (``run``): calls the libraries, prints,
returns the exit code.  Errors reach the person through ``error_handler``.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from renderloop.commands import (
    demo,
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
from renderloop.console import replace_unencodable
from renderloop.error_handler import Exit, error_handler
from renderloop.output import show_warnings
from studio import __version__

COMMANDS = (init, new, status, review, ledger, stats, export, follow, worker, hub, local, wake, demo, hook)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="renderloop",
        description="Batch image rendering on your own GPUs, driven entirely by git.",
    )
    parser.add_argument("--version", action="version", version=f"renderloop {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
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
    try:
        with error_handler(args.debug):
            code: int = args.run(args)
            return code
    except Exit as exc:
        return exc.code


def entry() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    entry()
