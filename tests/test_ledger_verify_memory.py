"""`renderloop ledger verify` checks only what it has not verified before, notices rewritten history, and --full."""
from __future__ import annotations

import json
from pathlib import Path

from tests.bench.synthetic import build, clone
from tests.helpers import cli, git

LINE = ('{"id": "01KE6P4YM0Y6H5N8YH53HVFX8R", "at": "2026-03-01T09:00:00Z", "batch": "b0000", "slug": "b0000-000", '
        '"verdict": "keep", "cues": [], "model": null, "seed": null, "spec_hash": null, "png_sha256": null, '
        '"archetype": null, "reviewer": null}\n')


def _append(here: Path, text: str, message: str) -> None:
    with (here / "ledger.jsonl").open("a", encoding="utf-8", newline="\n") as f:
        f.write(text)
    git(here, "commit", "-q", "--no-verify", "-am", message)


def test_only_new_commits_are_checked_and_full_checks_all(tmp_path: Path) -> None:
    made = build(tmp_path / "gen", renders=2, ledger_lines=30, per_batch=2)
    here = clone(made.remote, tmp_path / "clone")
    first = cli("ledger", "verify", cwd=here)
    assert first.returncode == 0 and first.stdout.startswith("ledger.jsonl: 11 commits, 30 lines, no line ever"), first.stdout
    memory = json.loads((here / ".git" / "renderloop" / "ledger-verified.json").read_text())
    assert memory["commit"] == git(here, "rev-parse", "HEAD").stdout.strip() and memory["lines"] == 30

    again = cli("ledger", "verify", cwd=here)
    assert again.stdout.startswith("ledger.jsonl: verified up to ") and "already (30 lines)" in again.stdout

    _append(here, LINE, "one more verdict")
    _append(here, LINE.replace("8R", "8S"), "and another")
    newer = cli("ledger", "verify", cwd=here)
    assert newer.returncode == 0
    assert newer.stdout.startswith(f"ledger.jsonl: 2 new commits since {memory['commit'][:7]}, 32 lines"), newer.stdout

    _append(here, '{"id": "bad"}\n', "a bad line, past the hook")
    bad = cli("ledger", "verify", cwd=here)
    assert bad.returncode == 1 and 'ledger.jsonl:33: not a valid ledger line' in bad.stdout
    assert "ledger.jsonl: 1 problem(s) in 1 of 1 commits\n" in bad.stdout

    full = cli("ledger", "verify", "--full", cwd=here)
    assert full.returncode == 1 and "ledger.jsonl: 1 problem(s) in 1 of 14 commits\n" in full.stdout


def test_a_force_push_that_dropped_verdicts_is_named(tmp_path: Path) -> None:
    made = build(tmp_path / "gen", renders=2, ledger_lines=20, per_batch=2)
    mine = clone(made.remote, tmp_path / "mine")
    other = clone(made.remote, tmp_path / "other")
    assert cli("ledger", "verify", cwd=mine).returncode == 0
    verified = git(mine, "log", "-1", "--format=%h").stdout.strip()

    # someone drops the last review commit and force-pushes
    git(other, "reset", "-q", "--hard", "HEAD~1")
    git(other, "push", "-q", "--force", "origin", "main")

    git(mine, "fetch", "-q")
    git(mine, "reset", "-q", "--hard", "origin/main")
    found = cli("ledger", "verify", cwd=mine)
    assert found.returncode == 1
    assert found.stdout.strip() == (
        f'ledger.jsonl: history rewritten: 2 verdict line(s) dropped or changed (the first: line 19) since {verified} '
        '"review: 2 verdicts", the last verified commit, which is no longer in this branch\'s history (a force-push?); '
        "`renderloop ledger verify --full` checks what is left"
    )
    assert cli("ledger", "verify", "--full", cwd=mine).returncode == 0  # what is left is consistent


def test_a_rebase_that_kept_every_line_is_no_rewrite(tmp_path: Path) -> None:
    made = build(tmp_path / "gen", renders=2, ledger_lines=10, per_batch=2)
    mine = clone(made.remote, tmp_path / "mine")
    other = clone(made.remote, tmp_path / "other")
    _append(mine, LINE, "my verdict")
    assert cli("ledger", "verify", cwd=mine).returncode == 0  # remembers my local commit
    _append(other, LINE.replace("8R", "8T"), "their verdict")
    git(other, "push", "-q")
    git(mine, "pull", "-q", "--rebase")
    assert (mine / "ledger.jsonl").read_text().count("\n") == 12
    again = cli("ledger", "verify", cwd=mine)
    assert again.returncode == 0, again.stdout
    assert again.stdout.startswith("ledger.jsonl: ") and "history rewritten" not in again.stdout
