"""A person's first week, walked as the README prints it (issue 10, Mac side).

Real clones of a bare remote, the hooks fired by real git commands, the
person's own global git config in a file of its own (GIT_CONFIG_GLOBAL).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import Sandbox, cli, git
from tests.test_pull_while_reviewing import batch, render

ONE = "version: 1\nmodel: flux-schnell\nwidth: 256\nheight: 256\nprompts:\n  - slug: a\n    prompt: a red kite\n  - slug: b\n    prompt: a blue boat\n"



def global_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: str) -> None:
    """The person's global git config, with ``extra`` settings of their own."""
    base = Path(os.environ["GIT_CONFIG_GLOBAL"]).read_text(encoding="utf-8")
    mine = tmp_path / "person.gitconfig"
    mine.write_text(base + extra, encoding="utf-8")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(mine))


# ---------------------------------------------------------------- 1. a plain `git pull` works


GLOBALS = {
    "none": "",
    "ff-only": "[pull]\n\tff = only\n",
    "merge": "[pull]\n\trebase = false\n",
    "rebase-no-autostash": "[pull]\n\trebase = true\n[rebase]\n\tautoStash = false\n",
}


@pytest.mark.parametrize("person", sorted(GLOBALS))
def test_a_plain_pull_after_a_rejected_push_works_whatever_the_global_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, person: str
) -> None:
    global_config(monkeypatch, tmp_path, GLOBALS[person])
    from tests.helpers import make_sandbox

    sandbox = make_sandbox(tmp_path / "s")
    # a second clone of the studio, enabled the README's way
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "--quiet", str(sandbox.remote), str(fresh))
    enabled = cli("init", ".", cwd=fresh)
    assert enabled.returncode == 0, enabled.stderr
    for clone in (sandbox.mac, fresh):
        # the worker pushes while the person commits a batch
        sandbox.write("batches/other.yaml" if clone == sandbox.mac else "batches/third.yaml",
                      batch("x" if clone == sandbox.mac else "y"), where=sandbox.worker)
        git(sandbox.worker, "add", "batches")
        git(sandbox.worker, "commit", "-q", "-m", "someone else's batch")
        render(sandbox)
        name = f"batches/{clone.name}.yaml"
        sandbox.write(name, batch(clone.name), where=clone)
        git(clone, "add", "batches")
        git(clone, "commit", "-q", "-m", f"batch: {clone.name}")
        assert git(clone, "push", "-q", check=False).returncode != 0  # rejected: the worker pushed first
        pulled = git(clone, "pull", check=False)
        assert pulled.returncode == 0, pulled.stderr
        assert git(clone, "push", "-q", check=False).returncode == 0
        assert (clone / "renders" / ("other" if clone == sandbox.mac else "third") / "review.md").is_file()


# ---------------------------------------------------------------- 2. a clone without its hooks says so


def test_every_command_in_a_clone_without_hooks_says_so_once_with_the_fix(sandbox: Sandbox, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "--quiet", str(sandbox.remote), str(fresh))
    for args in (["status"], ["review"], ["stats"], ["new", "first"], ["ledger", "verify"]):
        result = cli(*args, cwd=fresh)
        warned = [line for line in result.stderr.splitlines() if "hooks" in line]
        assert warned == [f"renderloop: the hooks are off in this clone (not installed in {fresh / '.git' / 'hooks'}: "
                          "pre-commit, post-merge, post-rewrite, post-checkout): "
                          "batches are not checked and pulls write no review; run `renderloop init .`"], (args, result.stderr)
    elsewhere = cli("status", "-C", str(fresh), cwd=tmp_path)
    assert f"run `renderloop init {fresh}`" in elsewhere.stderr
    assert cli("init", ".", cwd=fresh).returncode == 0
    assert "hooks" not in cli("status", cwd=fresh).stderr
    # an outdated installed hook (an older renderloop installed it) is not current either
    (fresh / ".git/hooks/post-merge").write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stale = cli("status", cwd=fresh)
    assert "(hooks/ changed, or another Python): post-merge" in stale.stderr and "renderloop init ." in stale.stderr
    assert "post-merge" in cli("init", ".", cwd=fresh).stdout
    assert "hooks" not in cli("status", cwd=fresh).stderr
    # the person's enabled clone, and the worker's clone (which runs no hooks), hear nothing
    assert "hooks" not in cli("status", cwd=sandbox.mac).stderr
    assert "hooks" not in cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once").stderr


# ---------------------------------------------------------------- 4, 5. what was asked; a cue is its bullet line


def pull_review(sandbox: Sandbox, text: str = ONE, name: str = "one") -> Path:
    sandbox.write(f"batches/{name}.yaml", text)
    git(sandbox.mac, "add", "batches")
    git(sandbox.mac, "commit", "-q", "-m", f"batch: {name}")
    git(sandbox.mac, "push", "-q")
    render(sandbox)
    git(sandbox.mac, "pull", "-q")
    return sandbox.mac / "renders" / name / "review.md"


def test_the_review_shows_the_prompt_as_rendered_and_a_note_under_a_cue_is_an_error(sandbox: Sandbox) -> None:
    asked = ONE.replace("width: 256", 'negative: "blurry"\nwidth: 256').replace(
        "prompt: a red kite", 'prompt: a red kite\n    cues: ["warmer palette", "no text"]')
    review = pull_review(sandbox, asked)
    text = review.read_text()
    a = text[text.index("## a"):text.index("## b")]
    assert "> prompt: a red kite, warmer palette\n>\n> negative: blurry, text\n" in a
    assert "> prompt: a blue boat\n>\n> negative: blurry\n\n<!--" in text
    sheet = cli("review", "one", "--html", cwd=sandbox.mac)
    assert sheet.returncode == 0, sheet.stderr
    page = (sandbox.mac / "renders/one/review.html").read_text()
    assert "<b>prompt:</b> a red kite, warmer palette" in page and "<b>negative:</b> blurry, text" in page
    # a note typed right under a cue: Markdown would glue it into the cue
    glued = text.replace("## a", "## a", 1)
    head = glued.index("## a")
    at = glued.index("verdict:\ncues:", head)
    glued = glued[:at] + "verdict: reroll\ncues:\n- bigger kite\ncolour notes here" + glued[at + len("verdict:\ncues:"):]
    review.write_text(glued, encoding="utf-8")
    stopped = git(sandbox.mac, "commit", "-am", "review", check=False)
    line = glued.splitlines().index("colour notes here") + 1
    assert stopped.returncode != 0
    assert f"renders/one/review.md:{line}: this line would be glued to the cue above it" in stopped.stderr
    assert (sandbox.mac / "ledger.jsonl").read_text() == ""
    # the documented place for notes: after a blank line below the cues (and ### headings)
    review.write_text(glued.replace("- bigger kite\ncolour notes here", "- bigger kite\n- no birds\n\n### notes\n\ncolour notes here\n- not a cue"), encoding="utf-8")
    committed = git(sandbox.mac, "commit", "-am", "review", check=False)
    assert committed.returncode == 0, committed.stderr
    assert '"cues": ["bigger kite", "no birds"]' in (sandbox.mac / "ledger.jsonl").read_text()
    made = cli("new", "two", "--rerolls", cwd=sandbox.mac)
    assert made.returncode == 0, made.stderr
    from studio.batch import load_batch
    from studio.config import load_config
    from studio.layout import Studio

    studio = Studio.at(sandbox.mac)
    (job,) = load_batch(studio, sandbox.mac / "batches/two.yaml", load_config(studio)).jobs
    assert job.spec.prompt == "a red kite, warmer palette, bigger kite"
    assert job.spec.negative == "blurry, text, birds"


# ---------------------------------------------------------------- 3. two clones, one review


def wait_for(predicate, seconds: float = 20) -> bool:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def settled(clone: Path) -> bool:
    """The deferred review writer is done: no conflict left, the stash applied."""
    gitdir = clone / ".git"
    return not (gitdir / "MERGE_AUTOSTASH").exists() and not (gitdir / "rebase-merge").exists()


def second_clone(sandbox: Sandbox, tmp_path: Path) -> Path:
    other = tmp_path / "other"
    git(tmp_path, "clone", "--quiet", str(sandbox.remote), str(other))
    assert cli("init", ".", cwd=other).returncode == 0
    return other


MARK = "<" * 7


def type_verdict(review: Path, slug: str, typed: str) -> None:
    text = review.read_text()
    head = text.index(f"## {slug}\n")
    at = text.index("verdict:\ncues:", head)
    review.write_text(text[:at] + typed + text[at + len("verdict:\ncues:"):], encoding="utf-8")


def test_two_clones_one_review_never_commit_markers_and_never_lose_typing(sandbox: Sandbox, tmp_path: Path) -> None:
    other = second_clone(sandbox, tmp_path)
    review = pull_review(sandbox)  # the person's clone: the review is written and staged
    git(other, "pull", "-q")
    theirs = other / "renders/one/review.md"
    # the same renders give the same bytes in every clone
    assert theirs.read_bytes() == review.read_bytes()
    # the person half-types a verdict; the other clone commits something unrelated with -am and pushes
    type_verdict(review, "a", "verdict: keep\ncues:\n- lovely")
    (other / "batches/two.yaml").write_text(batch("c"), encoding="utf-8")
    git(other, "add", "batches/two.yaml")
    git(other, "commit", "-q", "-am", "batch: two")
    git(other, "push", "-q")
    pulled = git(sandbox.mac, "pull", check=False)
    assert pulled.returncode == 0, pulled.stderr
    assert wait_for(lambda: settled(sandbox.mac) and "lovely" in review.read_text()
                    and git(sandbox.mac, "diff", "--name-only", "--diff-filter=U").stdout == "")
    text = review.read_text()
    assert MARK not in text and "verdict: keep\ncues:\n- lovely" in text
    committed = git(sandbox.mac, "commit", "-q", "-am", "review: one", check=False)
    assert committed.returncode == 0, committed.stderr
    assert '"verdict": "keep"' in (sandbox.mac / "ledger.jsonl").read_text()
    git(sandbox.mac, "push", "-q")

    # both clones type into the same section: a real conflict, for the person
    git(other, "pull", "-q")
    assert wait_for(lambda: settled(other))
    type_verdict(review, "b", "verdict: keep\ncues:")
    type_verdict(theirs, "b", "verdict: reroll\ncues:\n- bigger boat")
    git(other, "commit", "-q", "-am", "review: one (other)")
    git(other, "push", "-q")
    pulled = git(sandbox.mac, "pull", check=False)
    assert wait_for(lambda: settled(sandbox.mac))
    text = review.read_text()
    assert MARK in text and "verdict: keep" in text and "bigger boat" in text  # nothing typed is lost
    before = (sandbox.mac / "ledger.jsonl").read_bytes()
    stopped = git(sandbox.mac, "commit", "-am", "review", check=False)
    line = text.splitlines().index(next(l for l in text.splitlines() if l.startswith(MARK))) + 1
    assert stopped.returncode != 0
    assert f"renders/one/review.md:{line}: unresolved conflict" in stopped.stderr, stopped.stderr
    assert (sandbox.mac / "ledger.jsonl").read_bytes() == before  # no verdict read from a conflicted file
    assert MARK not in git(sandbox.mac, "show", "HEAD:renders/one/review.md").stdout
    # any text file of the studio, not only reviews
    (sandbox.mac / "notes.md").write_text(f"x\n{MARK} mine\na\n=======\nb\n{'>' * 7} theirs\n", encoding="utf-8")
    git(sandbox.mac, "add", "notes.md")
    refused = git(sandbox.mac, "commit", "-m", "notes", "notes.md", check=False)
    assert refused.returncode != 0 and "notes.md:2: unresolved conflict (markers at lines 2, 4 and 6)" in refused.stderr


# ---------------------------------------------------------------- 7. a reroll is gathered once


def test_a_reroll_is_gathered_once_and_the_new_batch_says_where_each_prompt_came_from(sandbox: Sandbox) -> None:
    review = pull_review(sandbox)
    type_verdict(review, "a", "verdict: reroll\ncues:\n- bigger kite")
    type_verdict(review, "b", "verdict: keep\ncues:")
    assert git(sandbox.mac, "commit", "-q", "-am", "review: one").returncode == 0
    made = cli("new", "two", "--rerolls", cwd=sandbox.mac)
    assert made.returncode == 0, made.stderr
    written = (sandbox.mac / "batches/two.yaml").read_text()
    assert "  - slug: a\n    from: one/a\n" in written
    git(sandbox.mac, "add", "batches")
    git(sandbox.mac, "commit", "-q", "-m", "batch: two")
    # sent, not rendered yet: asking again gathers nothing twice
    again = cli("new", "three", "--rerolls", cwd=sandbox.mac)
    assert again.returncode == 1
    assert "a (one): already gathered into batches/two.yaml (from: one/a)" in again.stderr
    assert not (sandbox.mac / "batches/three.yaml").exists()
    # rewriting the same batch (--force) gathers it again
    assert cli("new", "two", "--rerolls", "--force", cwd=sandbox.mac).returncode == 0
    assert (sandbox.mac / "batches/two.yaml").read_text().count("from: one/a") == 1
    # rendered, rerolled again there: gathered from the new batch
    git(sandbox.mac, "push", "-q")
    render(sandbox)
    git(sandbox.mac, "pull", "-q")
    type_verdict(sandbox.mac / "renders/two/review.md", "a", "verdict: reroll\ncues:")
    git(sandbox.mac, "commit", "-q", "-am", "review: two")
    third = cli("new", "three", "--rerolls", cwd=sandbox.mac)
    assert third.returncode == 0, third.stderr
    assert "from: two/a" in (sandbox.mac / "batches/three.yaml").read_text()


# ---------------------------------------------------------------- 8. export drops no image


def test_export_writes_every_kept_image_when_two_batches_keep_the_same_slug(sandbox: Sandbox, tmp_path: Path) -> None:
    review = pull_review(sandbox)
    type_verdict(review, "a", "verdict: keep\ncues:")
    type_verdict(review, "b", "verdict: keep\ncues:")
    git(sandbox.mac, "commit", "-q", "-am", "review: one")
    second = pull_review(sandbox, ONE.replace("a red kite", "a green kite"), name="two")
    type_verdict(second, "a", "verdict: keep\ncues:")
    type_verdict(second, "b", "verdict: reject\ncues:")
    git(sandbox.mac, "commit", "-q", "-am", "review: two")
    site = tmp_path / "site"
    exported = cli("export", str(site), cwd=sandbox.mac)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines() == [
        f"Exported 3 kept images to {site}.",
        "a was kept in 2 batches: a.png is the latest keep; also written: one--a.png",
    ]
    assert sorted(p.name for p in site.iterdir()) == ["a.png", "b.png", "one--a.png"]
    assert (site / "a.png").read_bytes() == (sandbox.mac / "renders/two/a.png").read_bytes()
    assert (site / "one--a.png").read_bytes() == (sandbox.mac / "renders/one/a.png").read_bytes()
    assert (site / "b.png").read_bytes() == (sandbox.mac / "renders/one/b.png").read_bytes()


# ---------------------------------------------------------------- 6. every problem of a batch file at once


def test_every_problem_of_a_batch_file_in_one_commit_with_near_matches(sandbox: Sandbox) -> None:
    bad = (
        "version: 1\n"                        # 1
        "model: flux-schnel\n"                # 2
        "width: 256\n"                        # 3
        "height: 256\n"                       # 4
        "prompts:\n"                          # 5
        "  - slug: a\n"                       # 6
        "    promt: a red kite\n"             # 7
        "  - slug: b\n"                       # 8
        "    prompt: a blue boat\n"           # 9
        "    widht: 512\n"                    # 10
        "  - slug: b\n"                       # 11
        "    prompt: again\n"                 # 12
        "  - slug: c\n"                       # 13
        "    prompt: a cat\n"                 # 14
        "    model: flux-schnell\n"           # 15
        "    width: 100\n"                    # 16
    )
    sandbox.write("batches/bad.yaml", bad)
    git(sandbox.mac, "add", "batches")
    stopped = git(sandbox.mac, "commit", "-m", "bad", check=False)
    assert stopped.returncode != 0
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("batches/bad.yaml:")]
    assert lines == [
        "batches/bad.yaml:2: unknown model 'flux-schnel'; did you mean 'flux-schnell'?",
        "batches/bad.yaml:6: missing required key 'prompt' in prompts[0]",
        "batches/bad.yaml:7: unknown key 'promt' in prompts[0]; did you mean 'prompt'?",
        "batches/bad.yaml:10: unknown key 'widht' in prompts[1]; did you mean 'width'?",
        "batches/bad.yaml:11: duplicate slug 'b' (first at line 8)",
        "batches/bad.yaml:16: width 100 is not a multiple of 8",
    ], stopped.stderr


# ---------------------------------------------------------------- 9. acknowledging a violation that was undone


def test_a_tamper_undone_with_git_revert_can_be_acknowledged_in_git(sandbox: Sandbox) -> None:
    review = pull_review(sandbox)
    type_verdict(review, "a", "verdict: keep\ncues:")
    git(sandbox.mac, "commit", "-q", "-am", "review: one")
    assert cli("ledger", "verify", cwd=sandbox.mac).returncode == 0
    ledger = sandbox.mac / "ledger.jsonl"
    ledger.write_text(ledger.read_text().replace('"keep"', '"reject"'), encoding="utf-8")
    git(sandbox.mac, "commit", "-q", "--no-verify", "-am", "fix a verdict by hand")
    tamper = git(sandbox.mac, "rev-parse", "HEAD").stdout.strip()
    red = cli("ledger", "verify", cwd=sandbox.mac)
    assert red.returncode == 1 and f"renderloop ledger acknowledge {tamper[:7]} --reason" in red.stdout
    git(sandbox.mac, "revert", "--no-edit", "HEAD")  # the README's undo
    revert = git(sandbox.mac, "rev-parse", "HEAD").stdout.strip()
    still = cli("ledger", "verify", cwd=sandbox.mac)
    assert still.returncode == 1 and revert[:7] in still.stdout  # the revert removes the tampered line too
    # only commits verify names can be acknowledged, and a reason is required
    first = git(sandbox.mac, "rev-list", "--max-parents=0", "HEAD").stdout.strip()
    wrong = cli("ledger", "acknowledge", first, "--reason", "x", cwd=sandbox.mac)
    assert wrong.returncode == 1 and "reports no violation in this commit" in wrong.stderr
    assert cli("ledger", "acknowledge", tamper, cwd=sandbox.mac).returncode == 2
    done = cli("ledger", "acknowledge", tamper[:7], revert[:7], "--reason", "hand edit, reverted", cwd=sandbox.mac)
    assert done.returncode == 0, done.stderr
    message = git(sandbox.mac, "log", "-1", "--format=%B").stdout
    assert "hand edit, reverted" in message
    assert f"Renderloop-Acknowledge: {tamper}" in message and f"Renderloop-Acknowledge: {revert}" in message
    green = cli("ledger", "verify", cwd=sandbox.mac)
    assert green.returncode == 0, green.stdout
    assert f"violation(s), acknowledged in" in green.stdout and "outside acknowledged commits" in green.stdout
    # pushed, it holds in every clone; a new tamper is red again
    assert git(sandbox.mac, "push", "-q", check=False).returncode == 0
    ledger.write_text(ledger.read_text().replace('"keep"', '"reroll"'), encoding="utf-8")
    git(sandbox.mac, "commit", "-q", "--no-verify", "-am", "again")
    assert cli("ledger", "verify", cwd=sandbox.mac).returncode == 1
