"""``renderloop ledger verify``: prove from git history that no ledger line was changed or removed."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from renderloop.options import HelpFormatter, add_command, add_repo

if TYPE_CHECKING:
    from renderloop.options import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "ledger", "the verdict ledger: `renderloop ledger verify`", run)
    actions = p.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    add_repo(actions.add_parser("verify", help="prove from git history that no ledger line was changed or removed",
                                        formatter_class=HelpFormatter))


def run(args: argparse.Namespace) -> int:
    return verify(args.repo)


def verify(repo: Path) -> int:
    from mac_side.ledger_verify import verify as check_history
    from studio.layout import LEDGER_NAME

    result = check_history(repo)
    if result.commits is None:
        print(f"{LEDGER_NAME}: no commits yet, nothing to verify")
        return 0
    if not result.violations:
        print(f"{LEDGER_NAME}: {result.commits} commits, {result.lines} lines, "
              f"no line ever changed or removed ({result.seconds:.2f} s)")
        return 0
    for violation in result.violations:
        print(f"{result.names[violation.commit]}: {LEDGER_NAME}:{violation.line}: {violation.message}")
    commits = len({v.commit for v in result.violations})
    print(f"{LEDGER_NAME}: {len(result.violations)} problem(s) in {commits} of {result.commits} commits")
    return 1
