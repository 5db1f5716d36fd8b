"""Issue 9, item 8 (the person's side): a force-push that dropped verdicts is said by the hooks and by verify.

Real git throughout: a bare remote, the person's clone with the hooks, and
another clone that runs ``git push -f``. Each clone remembers the remote tips
it has seen (``.git/renderloop/remote-tips.json``); a pull, a fetch then a
reset, or a verify afterwards names the last gone commit that held verdicts.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from tests.helpers import Sandbox, cli, git
from tests.security.helpers import attacker

LINE = ('{"id": "01KE6P4YM0Y6H5N8YH53HVFX%s", "at": "2026-03-01T09:00:00Z", "batch": "b0000", "slug": "b0000-000", '
        '"verdict": "keep", "cues": [], "model": null, "seed": null, "spec_hash": null, "png_sha256": null, '
        '"archetype": null, "reviewer": null}\n')


def head(repo: Path, rev: str = "HEAD") -> str:
    return git(repo, "rev-parse", rev).stdout.strip()


def commit_verdicts(clone: Path, *ids: str, message: str = "review: verdicts") -> str:
    with (clone / "ledger.jsonl").open("a", encoding="utf-8", newline="\n") as ledger:
        ledger.write("".join(LINE % i for i in ids))
    git(clone, "commit", "-q", "--no-verify", "-am", message)
    return head(clone)


def publish_verdicts(sandbox: Sandbox, *ids: str, message: str = "review: two verdicts") -> str:
    clone = attacker(sandbox)
    commit_verdicts(clone, *ids, message=message)
    git(clone, "push", "-q")
    return head(clone)


def force_push(sandbox: Sandbox, back: int = 1, message: str = "rewritten") -> str:
    """From the other clone: drop the last ``back`` commits, commit something else, ``git push -f``."""
    clone = attacker(sandbox)
    git(clone, "reset", "-q", "--hard", f"HEAD~{back}")
    (clone / "notes.txt").write_text(f"{message}\n", encoding="utf-8")
    git(clone, "add", "notes.txt")
    git(clone, "commit", "-q", "--no-verify", "-m", message)
    git(clone, "push", "-q", "-f", "origin", "HEAD:main")
    return head(clone)


def message(gone: str, new: str, lines: int, first: int, subject: str = "review: two verdicts") -> str:
    return (f"origin/main was rewritten (a force-push): {lines} verdict line(s) dropped or changed (the first: "
            f"ledger.jsonl line {first}) since {gone[:7]} \"{subject}\", the last commit with verdicts that is gone "
            f"from it (it was at {gone[:7]}, now at {new[:7]}). The old lines are still in this clone: "
            f"`git show {gone[:7]}:ledger.jsonl`. `renderloop ledger verify --full` checks what is left and accepts it")


def pull(repo: Path) -> str:
    """``git pull`` as the person runs it (the clone's pull.rebase=true); its stderr."""
    done = git(repo, "pull")
    return done.stderr


def said(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "was rewritten" in line]


def ledger_lines(repo: Path) -> int:
    return (repo / "ledger.jsonl").read_text(encoding="utf-8").count("\n")


def test_a_pull_after_a_force_push_that_dropped_verdicts_says_it_once(sandbox: Sandbox) -> None:
    gone = publish_verdicts(sandbox, "8R", "8S")
    pull(sandbox.mac)
    assert ledger_lines(sandbox.mac) == 2
    new = force_push(sandbox)
    stderr = pull(sandbox.mac)
    assert head(sandbox.mac) == new and ledger_lines(sandbox.mac) == 0
    assert said(stderr) == [f"renderloop: {message(gone, new, 2, 1)}"]


def test_a_pull_rebase_over_local_commits_says_it_once(sandbox: Sandbox) -> None:
    gone = publish_verdicts(sandbox, "8R", "8S")
    pull(sandbox.mac)
    new = force_push(sandbox)
    (sandbox.mac / "mine.txt").write_text("local work\n", encoding="utf-8")
    git(sandbox.mac, "add", "mine.txt")
    git(sandbox.mac, "commit", "-q", "-m", "local work")
    stderr = pull(sandbox.mac)
    assert head(sandbox.mac, "HEAD~1") == new
    assert said(stderr) == [f"renderloop: {message(gone, new, 2, 1)}"]


def test_the_gone_commit_named_is_the_last_one_with_verdicts(sandbox: Sandbox) -> None:
    """A force-push dropping a verdict commit and a later commit without verdicts names the verdict one."""
    gone = publish_verdicts(sandbox, "8R", "8S")
    clone = attacker(sandbox)
    (clone / "later.txt").write_text("later\n", encoding="utf-8")
    git(clone, "add", "later.txt")
    git(clone, "commit", "-q", "--no-verify", "-m", "later, no verdicts")
    git(clone, "push", "-q")
    tip = head(clone)
    pull(sandbox.mac)
    new = force_push(sandbox, back=2)
    stderr = pull(sandbox.mac)
    text = message(gone, new, 2, 1).replace(f"(it was at {gone[:7]}", f"(it was at {tip[:7]}").replace(
        f"git show {gone[:7]}", f"git show {tip[:7]}")
    assert said(stderr) == [f"renderloop: {text}"]


def test_a_verdict_changed_in_place_is_counted_from_its_line(sandbox: Sandbox) -> None:
    publish_verdicts(sandbox, "8R", "8S")
    gone = publish_verdicts(sandbox, "8T", message="review: one more")
    pull(sandbox.mac)
    clone = attacker(sandbox)
    git(clone, "reset", "-q", "--hard", "HEAD~1")
    new = commit_verdicts(clone, "8V", message="review: one more")  # same place, another verdict
    git(clone, "push", "-q", "-f", "origin", "HEAD:main")
    stderr = pull(sandbox.mac)
    assert said(stderr) == [f"renderloop: {message(gone, new, 1, 3, 'review: one more')}"]


def test_a_force_push_that_kept_every_verdict_is_not_reported(sandbox: Sandbox) -> None:
    publish_verdicts(sandbox, "8R", "8S")
    clone = attacker(sandbox)
    (clone / "notes.txt").write_text("one\n", encoding="utf-8")
    git(clone, "add", "notes.txt")
    git(clone, "commit", "-q", "--no-verify", "-m", "a note")
    git(clone, "push", "-q")
    pull(sandbox.mac)
    force_push(sandbox)  # drops only the note
    stderr = pull(sandbox.mac)
    assert said(stderr) == []
    assert cli("ledger", "verify", cwd=sandbox.mac).returncode == 0


def test_an_ordinary_pull_says_nothing_and_remembers_the_new_tip(sandbox: Sandbox) -> None:
    pull(sandbox.mac)
    tip = publish_verdicts(sandbox, "8R", "8S")
    stderr = pull(sandbox.mac)
    assert said(stderr) == []
    tips = json.loads((sandbox.mac / ".git" / "renderloop" / "remote-tips.json").read_text(encoding="utf-8"))
    assert tips == {"tips": {"origin/main": tip}, "rewrites": []}


def test_fetch_then_reset_is_said_by_the_next_hook_and_by_verify(sandbox: Sandbox) -> None:
    gone = publish_verdicts(sandbox, "8R", "8S")
    pull(sandbox.mac)
    new = force_push(sandbox)
    git(sandbox.mac, "fetch", "-q")
    git(sandbox.mac, "reset", "-q", "--hard", "origin/main")  # git runs no hook for either
    verify = cli("ledger", "verify", cwd=sandbox.mac)
    assert verify.returncode == 1
    assert verify.stdout.splitlines() == [f"ledger.jsonl: {message(gone, new, 2, 1)}"]
    status = cli("status", cwd=sandbox.mac)
    assert f"warning: {message(gone, new, 2, 1)}" in status.stdout.splitlines()
    doctor = cli("doctor", "--repo", str(sandbox.mac), cwd=sandbox.mac)
    assert f"warn  {message(gone, new, 2, 1)}" in doctor.stdout.splitlines()
    (sandbox.mac / "mine.txt").write_text("x\n", encoding="utf-8")
    git(sandbox.mac, "add", "mine.txt")
    committed = git(sandbox.mac, "commit", "-q", "-m", "after the reset")
    assert said(committed.stderr) == []  # verify noticed it first: said once, kept for verify and status


def test_the_next_hook_says_a_rewrite_fetched_without_one(sandbox: Sandbox) -> None:
    gone = publish_verdicts(sandbox, "8R", "8S")
    pull(sandbox.mac)
    new = force_push(sandbox)
    git(sandbox.mac, "fetch", "-q")
    git(sandbox.mac, "reset", "-q", "--hard", "origin/main")
    (sandbox.mac / "mine.txt").write_text("x\n", encoding="utf-8")
    git(sandbox.mac, "add", "mine.txt")
    committed = git(sandbox.mac, "commit", "-q", "-m", "after the reset")  # the pre-commit hook runs
    assert said(committed.stderr) == [f"renderloop: {message(gone, new, 2, 1)}"]
    assert head(sandbox.mac, "HEAD~1") == new  # the commit went on


def test_verify_reports_it_until_full_accepts_what_is_left(sandbox: Sandbox) -> None:
    gone = publish_verdicts(sandbox, "8R", "8S")
    pull(sandbox.mac)
    new = force_push(sandbox)
    pull(sandbox.mac)
    for _ in range(2):
        again = cli("ledger", "verify", cwd=sandbox.mac)
        assert again.returncode == 1 and again.stdout == f"ledger.jsonl: {message(gone, new, 2, 1)}\n"
    full = cli("ledger", "verify", "--full", cwd=sandbox.mac)
    assert full.returncode == 0, full.stdout
    after = cli("ledger", "verify", cwd=sandbox.mac)
    assert after.returncode == 0 and "was rewritten" not in after.stdout
    assert "was rewritten" not in cli("status", cwd=sandbox.mac).stdout


def test_a_clone_that_verified_before_reports_it_a_fresh_clone_cannot(sandbox: Sandbox) -> None:
    """A fresh clone has no memory of what was dropped before it: documented, and asserted here."""
    gone = publish_verdicts(sandbox, "8R", "8S")
    pull(sandbox.mac)
    assert cli("ledger", "verify", cwd=sandbox.mac).returncode == 0
    new = force_push(sandbox)
    git(sandbox.mac, "fetch", "-q")
    found = cli("ledger", "verify", cwd=sandbox.mac)
    assert found.returncode == 1 and found.stdout == f"ledger.jsonl: {message(gone, new, 2, 1)}\n"
    fresh = sandbox.root / "fresh"
    git(sandbox.root, "clone", "-q", str(sandbox.remote), str(fresh))
    clean = cli("ledger", "verify", cwd=fresh)
    assert clean.returncode == 0 and "no line ever changed or removed" in clean.stdout
    docs = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert "A fresh clone has no memory" in docs


def test_the_check_costs_the_same_with_a_long_ledger(sandbox: Sandbox) -> None:
    """The hook's check reads no ledger when nothing was rewritten: a 100,000-line ledger adds nothing."""
    from mac_side.ledger_watch import notice

    pull(sandbox.mac)

    def timed() -> float:  # the fastest of 7: what it costs, not what the load on the machine adds
        runs = []
        for _ in range(7):
            started = time.perf_counter()
            notice(sandbox.mac)
            runs.append(time.perf_counter() - started)
        return min(runs)

    publish_verdicts(sandbox, "8R")
    pull(sandbox.mac)
    short = timed()
    clone = attacker(sandbox)
    with (clone / "ledger.jsonl").open("a", encoding="utf-8", newline="\n") as ledger:
        ledger.write("".join(LINE % f"{n:02d}"[-2:] for n in range(100000)))
    git(clone, "commit", "-q", "--no-verify", "-am", "many verdicts")
    git(clone, "push", "-q")
    pull(sandbox.mac)
    long = timed()
    assert long < short * 1.5 + 0.01, (short, long)
