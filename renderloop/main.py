"""The ``renderloop`` command: builds the parser and routes to the verb's module.

Each verb is one module of :mod:`renderloop.commands`: it registers its
options (``add_parser``) and runs (``run``): calls the libraries, prints,
returns the exit code.  Errors reach the person through ``error_handler``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence

from renderloop.console import replace_unencodable
from renderloop.error_handler import Exit, error_handler, leave_quietly_on_broken_pipe
from renderloop.options import HelpFormatter
from renderloop.output import show_warnings
from studio import __version__
from studio.errors import NotConfigured

# The verbs, in the order the help lists them: each is the module renderloop/commands/<verb>.py.
COMMANDS = (
    "init", "clone", "open", "new", "status", "review", "ledger", "stats", "export", "follow", "worker", "hub",
    "local", "wake", "config", "doctor", "demo", "hook",
)


def command_module(verb: str) -> ModuleType:
    """The module of ``verb``, imported only when that verb runs (a git hook starts no more than it needs)."""
    return importlib.import_module(f"renderloop.commands.{verb}")


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole command line, or only the verb ``only`` (the rest unimported: same options, same help)."""
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
    for verb in COMMANDS if only is None else (only,):
        command_module(verb).add_parser(sub)
    return parser


def verb_in(argv: Sequence[str]) -> Optional[str]:
    """The verb ``argv`` runs, when it names one after the main options; None otherwise (help, a typo)."""
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--debug":
            continue
        if arg == "-C":
            if not rest:
                return None
            rest.pop(0)
            continue
        if arg.startswith("-C"):  # -CPATH
            continue
        return arg if arg in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    replace_unencodable()  # a console code page that cannot show a character gets '?', never an error
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=verb_in(argv))
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
            command_module("init").warn_if_hooks_off(args.command, getattr(args, "repo", Path(".")))
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
