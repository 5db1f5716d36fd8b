"""What every command's parser shares: registering a verb, the ``--repo`` option.

Each module of :mod:`renderloop.commands` offers ``add_parser(sub)``, which
registers its verb and its options and sets ``run``: the function that takes
the parsed arguments, calls the libraries, prints and returns the exit code.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from studio.errors import NotConfigured

if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

Run = Callable[[argparse.Namespace], int]


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it says it already.

    A flag (``store_true``) has none to say; an option whose default comes
    from elsewhere says so in its own words (``default: renderloop.yaml``).
    """

    def _get_help_string(self, action: argparse.Action) -> Optional[str]:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.nargs == 0:
            return text
        if action.default is None or action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def add_command(sub: Subcommands, name: str, help: str, run: Run, hidden: bool = False) -> argparse.ArgumentParser:
    """The parser of the verb ``name``, routed to ``run`` (``hidden``: left out of the main help)."""
    if hidden:  # a verb registered without help is not listed
        command = sub.add_parser(name, description=help, formatter_class=HelpFormatter)
    else:
        command = sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
    # --debug is also accepted after the command (`renderloop worker --debug`)
    command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    command.set_defaults(run=run)
    return command


def add_repo(parser: argparse.ArgumentParser, help: str = "the studio checkout (default: this folder)") -> None:
    parser.add_argument("--repo", "-C", type=Path, default=Path("."), metavar="PATH", help=help)


def at_least_zero(flag: str, value: Optional[float]) -> None:
    """Refuse a negative ``value`` given for ``flag`` (None: not given), and nan or infinity."""
    _finite(flag, value)
    if value is not None and value < 0:
        raise NotConfigured(f"{flag} {value:g}: give zero or more")


def above_zero(flag: str, value: Optional[float], hint: str = "give more than zero") -> None:
    """Refuse a ``value`` of zero or less given for ``flag`` (None: not given), and nan or infinity."""
    _finite(flag, value)
    if value is not None and value <= 0:
        raise NotConfigured(f"{flag} {value:g}: {hint}")


def _finite(flag: str, value: Optional[float]) -> None:
    if value is not None and not math.isfinite(value):
        raise NotConfigured(f"{flag} {value:g}: give a finite number")
