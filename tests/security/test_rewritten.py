"""Issue 9, item 8 (the worker's side): a rewritten remote is noticed and said, and never answered in kind.

Someone with push access runs ``git push -f``: the worker says so in one
line naming the old and the new commit, keeps its own unpushed renders
(rebased on the new tip, as usual), does not bring back the commits the
force-push dropped, and never force-pushes itself.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from studio import git as studio_git
from studio.layout import Studio
from tests.helpers import Sandbox, git
from tests.security.helpers import GOOD, attacker, remote_files, run_worker
from win_side.repo import WorkerRepo


LINE = ('{"id": "01KE6P4YM0Y6H5N8YH53HVFX%s", "at": "2026-03-01T09:00:00Z", "batch": "b0000", "slug": "b0000-000", '
        '"verdict": "keep", "cues": [], "model": null, "seed": null, "spec_hash": null, "png_sha256": null, '
        '"archetype": null, "reviewer": null}\n')


def head(repo: Path, rev: str = "HEAD") -> str:
    return git(repo, "rev-parse", rev).stdout.strip()


def force_push_dropping_the_last_commit(sandbox: Sandbox, message: str = "rewritten") -> tuple[str, str]:
    """From another clone: drop the remote's last commit, add another, ``git push -f``. (dropped, new tip)."""
    clone = attacker(sandbox)
    dropped = head(clone)
    git(clone, "reset", "-q", "--hard", "HEAD~1")
    (clone / "notes.txt").write_text("history rewritten\n", encoding="utf-8")
    git(clone, "add", "notes.txt")
    git(clone, "commit", "-q", "--no-verify", "-m", message)
    git(clone, "push", "-q", "-f", "origin", "HEAD:main")
    return dropped, head(clone)


def publish(sandbox: Sandbox, rel: str, text: str) -> str:
    clone = attacker(sandbox)
    path = clone / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")
    git(clone, "add", rel)
    git(clone, "commit", "-q", "--no-verify", "-m", f"add {rel}")
    git(clone, "push", "-q")
    return head(clone)


def worker_repo(sandbox: Sandbox) -> WorkerRepo:
    return WorkerRepo(Studio.at(sandbox.worker))


def local_render_commit(sandbox: Sandbox, rel: str = "renders/own/one.json") -> str:
    path = sandbox.worker / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"rendered": "by the worker"}\n', encoding="utf-8")
    git(sandbox.worker, "add", rel)
    git(sandbox.worker, "commit", "-q", "--no-verify", "-m", "render own/one")
    return head(sandbox.worker)


def own_render_then_force_push(sandbox: Sandbox) -> tuple[WorkerRepo, str, str]:
    """The worker up to date with one unpushed render commit; then a force-push drops the remote's last commit."""
    publish(sandbox, "notes/first.txt", "one\n")
    repo = worker_repo(sandbox)
    repo.fetch()
    repo.integrate()
    local_render_commit(sandbox)
    dropped, new = force_push_dropping_the_last_commit(sandbox)
    return repo, dropped, new


def said_on_fetch(repo: WorkerRepo, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the worker logs about a rewrite as it fetches."""
    with caplog.at_level(logging.WARNING, logger="renderloop.worker"):
        repo.fetch()
    return [r.getMessage() for r in caplog.records if "rewritten" in r.getMessage()]


def logged(seen: str, new: str, verdicts: str) -> str:
    return (f"origin/main was rewritten (a force-push): it was at {seen[:12]} and is now at {new[:12]}, which does "
            f"not contain it; {verdicts}; following the new history, the worker's own unpushed commits rebased "
            "on top (it never force-pushes)")


def test_a_force_push_is_said_in_one_line_naming_both_commits(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    seen = publish(sandbox, "notes/first.txt", "one\n")
    repo = worker_repo(sandbox)
    repo.fetch()
    repo.integrate()
    assert head(sandbox.worker) == seen
    dropped, new = force_push_dropping_the_last_commit(sandbox)
    assert dropped == seen
    assert said_on_fetch(repo, caplog) == [logged(seen, new, "no verdict dropped")]


def test_the_worker_says_how_many_verdicts_the_force_push_dropped(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    publish(sandbox, "ledger.jsonl", LINE % "8R" + LINE % "8S")
    seen = publish(sandbox, "ledger.jsonl", LINE % "8R" + LINE % "8S" + LINE % "8T")
    repo = worker_repo(sandbox)
    repo.fetch()
    repo.integrate()
    clone = attacker(sandbox)
    git(clone, "reset", "-q", "--hard", "HEAD~2")  # both verdict commits
    (clone / "ledger.jsonl").write_text(LINE % "8S", encoding="utf-8", newline="\n")
    git(clone, "commit", "-q", "--no-verify", "-am", "rewritten")
    git(clone, "push", "-q", "-f", "origin", "HEAD:main")
    new = head(clone)
    assert said_on_fetch(repo, caplog) == [
        logged(seen, new, "2 verdict line(s) dropped or changed (the first: ledger.jsonl line 1)")
    ]


def test_a_worker_killed_between_fetch_and_rebase_still_leaves_the_dropped_commits_out(sandbox: Sandbox) -> None:
    """The rewrite is kept in .git until integrated: a new run rebases only the worker's own commits."""
    repo, dropped, new = own_render_then_force_push(sandbox)
    repo.fetch()  # the tracking ref now says the new tip; the process dies here
    assert (sandbox.worker / ".git" / "renderloop" / "remote-rewritten").read_text() == f"{dropped} {new}\n"
    again = worker_repo(sandbox)  # the next run
    assert again.rewritten == (dropped, new)
    assert again.integrate()
    history = git(sandbox.worker, "rev-list", "HEAD").stdout.split()
    assert dropped not in history and head(sandbox.worker, "HEAD~1") == new
    assert not (sandbox.worker / "notes/first.txt").exists()
    assert not (sandbox.worker / ".git" / "renderloop" / "remote-rewritten").exists() and again.rewritten is None


def test_an_ordinary_push_is_not_called_a_rewrite(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    repo = worker_repo(sandbox)
    repo.fetch()
    publish(sandbox, "notes/a.txt", "a\n")
    with caplog.at_level(logging.DEBUG, logger="renderloop.worker"):
        repo.fetch()
        repo.integrate()
    assert not [r for r in caplog.records if "rewritten" in r.getMessage()]
    assert repo.rewritten is None


def test_the_workers_unpushed_render_survives_and_the_dropped_commit_stays_dropped(sandbox: Sandbox) -> None:
    repo, dropped, new = own_render_then_force_push(sandbox)
    own = head(sandbox.worker)
    repo.fetch()
    assert repo.integrate()
    history = git(sandbox.worker, "rev-list", "HEAD").stdout.split()
    assert new in history and dropped not in history and own not in history  # rebased: a new commit
    assert git(sandbox.worker, "log", "-1", "--format=%s").stdout.strip() == "render own/one"
    assert (sandbox.worker / "renders/own/one.json").is_file()
    assert not (sandbox.worker / "notes/first.txt").exists()  # what the force-push removed is not brought back
    assert repo.push_once() == head(sandbox.worker)
    assert head(sandbox.remote, "main") == head(sandbox.worker)
    assert studio_git.is_ancestor(sandbox.remote, new, head(sandbox.remote, "main"))  # a fast-forward


def test_a_worker_behind_the_old_tip_keeps_only_its_own_commits(sandbox: Sandbox) -> None:
    """The worker had fetched but not rebased onto the old tip when the rewrite came: what it dropped stays dropped."""
    deep = publish(sandbox, "notes/deep.txt", "deep\n")
    repo = worker_repo(sandbox)
    repo.fetch()
    repo.integrate()
    local_render_commit(sandbox)
    publish(sandbox, "notes/later.txt", "later\n")
    repo.fetch()  # not integrated: the worker's HEAD is behind the tip it has seen
    clone = attacker(sandbox)
    git(clone, "reset", "-q", "--hard", f"{deep}~1")  # drops the deep commit, under the worker's HEAD
    (clone / "notes.txt").write_text("rewritten\n", encoding="utf-8")
    git(clone, "add", "notes.txt")
    git(clone, "commit", "-q", "--no-verify", "-m", "rewritten")
    git(clone, "push", "-q", "-f", "origin", "HEAD:main")
    repo.fetch()
    assert repo.integrate()
    assert head(sandbox.worker, "HEAD~1") == head(clone)  # only the worker's render on top
    assert git(sandbox.worker, "log", "-1", "--format=%s").stdout.strip() == "render own/one"
    assert not (sandbox.worker / "notes/deep.txt").exists() and not (sandbox.worker / "notes/later.txt").exists()


def test_the_worker_never_force_pushes_over_a_rewrite(sandbox: Sandbox) -> None:
    """A push of the old history after a force-push is refused, not forced: the remote keeps the new tip."""
    repo, _, new = own_render_then_force_push(sandbox)
    from win_side.repo import PushRejected

    with pytest.raises(PushRejected):
        repo.push_once()
    assert head(sandbox.remote, "main") == new


def test_the_real_worker_says_it_and_renders_on_the_new_history(sandbox: Sandbox) -> None:
    publish(sandbox, "batches/hero.yaml", GOOD)
    first = run_worker(sandbox, "--log-file", str(sandbox.root / "first.log"))
    assert first.returncode == 0, first.stderr
    assert "renders/hero/fine.png" in remote_files(sandbox)
    rendered = head(sandbox.remote, "main")
    dropped, new = force_push_dropping_the_last_commit(sandbox)  # drops the worker's render commit
    assert dropped == rendered
    log = sandbox.root / "second.log"
    second = run_worker(sandbox, "--log-file", str(log))
    assert second.returncode == 0, second.stderr
    text = log.read_text(encoding="utf-8")
    assert f"origin/main was rewritten (a force-push): it was at {rendered[:12]} and is now at {new[:12]}" in text
    tip = head(sandbox.remote, "main")
    assert studio_git.is_ancestor(sandbox.remote, new, tip)  # on top of the rewrite: never forced
    assert "renders/hero/fine.png" in remote_files(sandbox)  # rendered again: its commit was dropped
    history = git(sandbox.remote, "rev-list", "main").stdout.split()
    assert dropped not in history


def test_docs_say_how_to_make_the_hub_refuse_a_rewrite() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "setup.md").read_text(encoding="utf-8")
    assert "git config receive.denyNonFastForwards true" in docs
    assert "git config receive.denyDeletes true" in docs


def test_a_hub_set_as_documented_refuses_the_force_push(sandbox: Sandbox) -> None:
    git(sandbox.remote, "config", "receive.denyNonFastForwards", "true")
    git(sandbox.remote, "config", "receive.denyDeletes", "true")
    publish(sandbox, "notes/first.txt", "one\n")
    before = head(sandbox.remote, "main")
    clone = attacker(sandbox)
    git(clone, "reset", "-q", "--hard", "HEAD~1")
    forced = git(clone, "push", "-f", "origin", "HEAD:main", check=False)
    assert forced.returncode != 0 and "denying non-fast-forward" in forced.stderr
    deleted = git(clone, "push", "origin", ":main", check=False)
    assert deleted.returncode != 0 and "denying ref deletion" in deleted.stderr
    assert head(sandbox.remote, "main") == before
