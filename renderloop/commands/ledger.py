"""``renderloop ledger verify|acknowledge``: prove from git history that no ledger line was changed or
removed; acknowledge, in git, a violation that was undone."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from renderloop.options import HelpFormatter, add_command, add_repo

if TYPE_CHECKING:
    from renderloop.options import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "ledger", "the verdict ledger: `renderloop ledger verify`, `renderloop ledger acknowledge`", run)
    actions = p.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    v = actions.add_parser("verify", help="prove from git history that no ledger line was changed or removed",
                           formatter_class=HelpFormatter)
    v.add_argument("--full", action="store_true", help="check the whole history again, not only what is new")
    add_repo(v)
    ack = actions.add_parser(
        "acknowledge",
        help="commit an acknowledgement of past violations (after undoing them): verify reports them as acknowledged",
        formatter_class=HelpFormatter,
    )
    ack.add_argument("commits", nargs="+", metavar="COMMIT", help="a commit `ledger verify` names (the tampering one, its revert)")
    ack.add_argument("--reason", required=True, help="why (recorded in the commit message, for git log)")
    add_repo(ack)


def run(args: argparse.Namespace) -> int:
    if args.ledger_command == "acknowledge":
        return acknowledge(args.repo, args.commits, args.reason)
    return verify(args.repo, args.full)


def verify(repo: Path, full: bool = False) -> int:
    from mac_side.ledger_verify import verify as check_history
    from studio.layout import LEDGER_NAME

    result = check_history(repo, full)
    if result.commits is None:
        print(f"{LEDGER_NAME}: no commits yet, nothing to verify")
        return 0
    if result.rewritten:
        for line in result.rewritten.splitlines():
            print(f"{LEDGER_NAME}: {line}")
        return 1
    if result.already:
        print(f"{LEDGER_NAME}: verified up to {result.already[:7]} already ({result.lines} lines); "
              "`--full` checks it all again")
        return 0
    for commit, by in result.acknowledged_by.items():
        count = sum(1 for v in result.acknowledged if v.commit == commit)
        print(f"{result.names[commit]}: {count} violation(s), acknowledged in {by[:7]}")
    if not result.violations:
        scope = f"{result.commits} new commits since {result.since[:7]}" if result.since else f"{result.commits} commits"
        print(f"{LEDGER_NAME}: {scope}, {result.lines} lines, "
              f"no line ever changed or removed{' outside acknowledged commits' if result.acknowledged else ''} "
              f"({result.seconds:.2f} s)")
        return 0
    for violation in result.violations:
        print(f"{result.names[violation.commit]}: {LEDGER_NAME}:{violation.line}: {violation.message}")
    commits = list(dict.fromkeys(v.commit for v in result.violations))
    print(f"{LEDGER_NAME}: {len(result.violations)} problem(s) in {len(commits)} of {result.commits} commits")
    print("Undo them (`git revert COMMIT`, or re-add the lines), then record that in git: "
          f"renderloop ledger acknowledge {' '.join(c[:7] for c in commits)} --reason \"...\" "
          "(and the revert's commit, which verify names once it is made)")
    return 1


def acknowledge(repo: Path, commits: list[str], reason: str) -> int:
    from mac_side.ledger_acknowledge import acknowledge as commit_acknowledgement
    from mac_side.ledger_verify import verify as check_history
    from studio.layout import open_studio

    studio = open_studio(repo, require_git=True)
    result = check_history(studio.root)
    sha = commit_acknowledgement(studio.root, commits, reason, {v.commit for v in result.violations})
    print(f"Committed {sha[:7]}: acknowledged {', '.join(commits)}. Push it; `renderloop ledger verify` now reports them as acknowledged.")
    return 0
