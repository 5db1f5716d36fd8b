"""Acknowledging a past ledger violation, in git (``renderloop ledger acknowledge COMMIT... --reason TEXT``).

Once a tampered ledger is undone (``git revert``), history still holds the
tampering commit, and the revert itself removes the tampered line: ``ledger
verify`` would stay red forever. An acknowledgement is an empty commit whose
message gives the reason and, per acknowledged commit, a trailer
``Renderloop-Acknowledge: <full commit id>``. ``ledger verify`` still checks
every commit, and reports the violations of acknowledged commits as
acknowledged (with the acknowledging commit) instead of failing. The
acknowledgement is itself part of the audit trail: who, when and why are in
``git log``, and undoing it is one more commit.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio import git
from studio.errors import FatalError

TRAILER = "Renderloop-Acknowledge"


@dataclass(frozen=True)
class Acknowledgement:
    commit: str  # the acknowledged commit
    by: str  # the commit that acknowledges it


def acknowledgements(root: Path) -> dict[str, Acknowledgement]:
    """Every acknowledged commit in HEAD's history, by full commit id (the earliest acknowledgement)."""
    values = f"%(trailers:key={TRAILER},valueonly,separator=%x20)"
    text = git.out(root, "log", "--reverse", f"--grep=^{TRAILER}:", f"--format=%H%x00{values}%x00", "HEAD")
    found: dict[str, Acknowledgement] = {}
    fields = text.split("\0")
    for by, values in zip(fields[0::2], fields[1::2]):
        for value in values.split():
            found.setdefault(value.strip(), Acknowledgement(value.strip(), by.strip()))
    return found


def acknowledge(root: Path, commits: list[str], reason: str, violating: set[str]) -> str:
    """Commit an acknowledgement of ``commits`` (each among ``violating``); the new commit's id."""
    reason = " ".join(reason.split())
    if not reason:
        raise FatalError("--reason is empty: say why the violation is acknowledged (it goes into git log)")
    full = []
    for name in commits:
        sha = git.rev_parse(root, f"{name}^{{commit}}")
        if sha is None:
            raise FatalError(f"{name}: no such commit")
        if sha not in violating:
            raise FatalError(f"{name}: `renderloop ledger verify` reports no violation in this commit, nothing to acknowledge")
        full.append(sha)
    subjects = ", ".join(sha[:7] for sha in full)
    trailers = "\n".join(f"{TRAILER}: {sha}" for sha in dict.fromkeys(full))
    message = f"ledger: acknowledge the violation in {subjects}\n\n{reason}\n\n{trailers}\n"
    git.run(root, "commit", "--quiet", "--allow-empty", "--no-verify", "-m", message)
    head = git.head(root)
    assert head is not None
    return head
