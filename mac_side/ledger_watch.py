"""Noticing that a remote branch was rewritten and took verdicts with it (every hook, ``ledger verify``).

Each clone remembers, in ``<git-dir>/renderloop/remote-tips.json``, the tip
of each remote-tracking branch as it last saw it. Every hook compares them
with the tips now (one ``git for-each-ref``): a tip that moved on contains
the old one (one ``git merge-base --is-ancestor``) and nothing more is read,
so the cost does not grow with the ledger or the history. A tip that does
not contain the old one was rewritten (a ``git push -f`` fetched by a pull or
a fetch): the old ledger is compared with the new one (``studio.rewrite``)
and, when verdicts are gone or changed, a note is kept until the person
runs ``renderloop ledger verify --full``. Each note is said once by the hook
that finds it, and by ``ledger verify`` and ``status`` until then.

A fresh clone has no memory: it starts from what it cloned.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from studio import git
from studio.fsutil import write_text_atomic
from studio.layout import LEDGER_NAME
from studio.rewrite import Lost, is_rewrite, ledger_lost

TIPS_NAME = "remote-tips.json"


@dataclass(frozen=True)
class Rewrite:
    """A remote branch rewritten under this clone, with what its ledger lost."""

    ref: str  # origin/main
    gone: str  # the tip this clone had seen, no longer in the branch
    new: str  # the tip that replaced it
    lost: Lost
    last: str  # `abc1234 "subject"`: the newest gone commit that changed the ledger (else the gone tip)

    def message(self) -> str:
        return (
            f"{self.ref} was rewritten (a force-push): {self.lost.describe()} since {self.last}, the last "
            f"commit with verdicts that is gone from it (it was at {self.gone[:7]}, now at {self.new[:7]}). "
            f"The old lines are still in this clone: `git show {self.gone[:7]}:{LEDGER_NAME}`. "
            "`renderloop ledger verify --full` checks what is left and accepts it"
        )


def notice(root: Path) -> list[Rewrite]:
    """The remote branches rewritten since the last look that lost verdicts; remembers the tips now."""
    memory = _read(root)
    seen: dict[str, str] = memory.get("tips", {})
    now = remote_tips(root)
    found = []
    for ref, tip in now.items():
        old = seen.get(ref)
        if old is None or old == tip or not is_rewrite(root, old, tip):
            continue
        lost = ledger_lost(root, old, tip)
        if lost is not None:
            found.append(Rewrite(ref, old, tip, lost, _last_ledger_commit(root, old, tip)))
    if now != seen or found:
        notes = memory.get("rewrites", []) + [r.message() for r in found]
        _write(root, {"tips": now, "rewrites": notes})
    return found


def pending(root: Path) -> list[str]:
    """The rewrites noticed and not accepted yet (``ledger verify --full`` accepts them)."""
    return [str(note) for note in _read(root).get("rewrites", [])]


def accept(root: Path) -> None:
    """Forget the rewrites noticed; the tips now are the new starting point."""
    _write(root, {"tips": remote_tips(root), "rewrites": []})


def remote_tips(root: Path) -> dict[str, str]:
    """Each remote-tracking branch (``origin/main``) and its commit; one git call."""
    text = git.out(root, "for-each-ref", "--format=%(objectname) %(refname:short) %(symref)", "refs/remotes")
    tips = {}
    for row in text.splitlines():
        fields = row.split()
        if len(fields) == 2:  # a symbolic ref (origin/HEAD) has a third field
            tips[fields[1]] = fields[0]
    return tips


def _last_ledger_commit(root: Path, gone: str, new: str) -> str:
    code, out, _ = git.run(root, "log", "-1", "--format=%h \"%s\"", gone, f"^{new}", "--", LEDGER_NAME, check=False)
    return out.strip() if code == 0 and out.strip() else gone[:7]


def _read(root: Path) -> dict:
    try:
        data = json.loads((git.state_dir(root) / TIPS_NAME).read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("tips", {}), dict):
        return {}
    return data


def _write(root: Path, data: dict) -> None:
    write_text_atomic(git.state_dir(root) / TIPS_NAME, json.dumps(data, indent=2) + "\n")

