"""The Mac side's hooks, fired by real git: commits, pulls (plain and --rebase), rebases, two clones."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mac_side.init import init
from mac_side.review import STALE_NOTICE, parse
from studio.ledger import parse as parse_ledger
from studio.record import RenderError, RenderRecord
from tests.helpers import BATCH_YAML, Sandbox, cli, git, make_sandbox, type_into

REVIEW = "renders/hero/review.md"


def commit_batch(sandbox: Sandbox, text: str = BATCH_YAML, name: str = "hero", where: Path | None = None) -> None:
    repo = where or sandbox.mac
    sandbox.write(f"batches/{name}.yaml", text, where=repo)
    git(repo, "add", f"batches/{name}.yaml")
    git(repo, "commit", "-q", "-m", f"batch {name}")
    git(repo, "push", "-q")


def render(sandbox: Sandbox) -> None:
    """The real worker, once, with the placeholder backend: renders, commits each image, pushes."""
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once")
    assert result.returncode == 0, result.stderr


def fail(sandbox: Sandbox, slug: str, kind: str, message: str, batch: str = "hero") -> None:
    """Commit a failed record for ``slug`` from the worker clone, as a worker whose backend failed would."""
    worker = sandbox.worker
    git(worker, "pull", "-q", "--rebase")
    path = worker / "renders" / batch / f"{slug}.json"
    record = RenderRecord.model_validate_json(path.read_bytes())
    failed = record.model_copy(update={"status": "failed", "png_sha256": None, "error": RenderError(kind=kind, message=message)})
    path.write_text(failed.to_json(), encoding="utf-8", newline="\n")
    git(worker, "rm", "-q", f"renders/{batch}/{slug}.png")
    git(worker, "add", f"renders/{batch}/{slug}.json")
    git(worker, "commit", "-q", "-m", f"render({batch}): {slug} failed")
    git(worker, "push", "-q")


def pull(repo: Path, *args: str) -> str:
    result = git(repo, "pull", *args, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def judge(repo: Path, slug: str, typed: str) -> None:
    path = repo / REVIEW
    path.write_text(type_into(path.read_text(encoding="utf-8"), slug, typed), encoding="utf-8", newline="\n")


def commit(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return git(repo, "commit", *args, check=False)


def ledger(repo: Path):
    return parse_ledger((repo / "ledger.jsonl").read_bytes())


def staged(repo: Path) -> list[str]:
    return git(repo, "diff", "--cached", "--name-only").stdout.split()


def record(repo: Path, slug: str) -> RenderRecord:
    return RenderRecord.model_validate_json((repo / "renders" / "hero" / f"{slug}.json").read_bytes())


_TEMPLATE: dict[str, Sandbox] = {}


@pytest.fixture
def rendered(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Sandbox:
    """A batch committed by the person, rendered and pushed by the worker, not pulled yet.

    Built once with real git and the real worker, then copied for each test
    (the clones' remote URLs pointed at the copy's remote).
    """
    if "rendered" not in _TEMPLATE:
        template = make_sandbox(tmp_path_factory.mktemp("rendered"))
        commit_batch(template)
        render(template)
        _TEMPLATE["rendered"] = template
    template = _TEMPLATE["rendered"]
    root = tmp_path / "sandbox"
    shutil.copytree(template.root, root, symlinks=True)
    copy = Sandbox(root, root / template.remote.name, root / template.mac.name, root / template.worker.name)
    for clone in (copy.mac, copy.worker):
        git(clone, "remote", "set-url", "origin", str(copy.remote))
    return copy


# ---------------------------------------------------------------- the loop


def test_the_whole_loop(rendered: Sandbox) -> None:
    mac = rendered.mac
    out = pull(mac)
    assert "renderloop: hero: 3 rendered, 0 failed, 0 waiting -> renders/hero/review.md" in out
    assert staged(mac) == [REVIEW]
    judge(mac, "harbor-at-dawn", "verdict: reroll\ncues:\n- warmer palette\n- no text")
    judge(mac, "night-train", "verdict: keep\ncues:")
    result = commit(mac, "-am", "review")
    assert result.returncode == 0, result.stderr
    assert "recorded 2 verdicts in ledger.jsonl (hero: 1 keep, 1 reroll)" in result.stdout + result.stderr
    shown = git(mac, "show", "--stat", "--format=", "HEAD").stdout
    assert "ledger.jsonl" in shown and REVIEW in shown
    assert git(mac, "status", "--porcelain").stdout == ""  # staged into the commit's own index
    lines = ledger(mac)
    assert [(l.slug, l.verdict, l.cues) for l in lines] == [
        ("harbor-at-dawn", "reroll", ["warmer palette", "no text"]), ("night-train", "keep", [])
    ]
    harbor = record(mac, "harbor-at-dawn")
    first = lines[0]
    assert (first.batch, first.model, first.seed, first.archetype, first.reviewer) == (
        "hero", "z-image-turbo", 1234, "essay", "Ana Tester"
    )
    assert (first.spec_hash, first.png_sha256) == (harbor.spec_hash, harbor.png_sha256)
    assert lines[0].id != lines[1].id
    # committing the review again records nothing new
    (mac / "notes.txt").write_text("x\n", encoding="utf-8")
    git(mac, "add", "notes.txt")
    judge_again = (mac / REVIEW).read_text(encoding="utf-8") + "\nA closing note.\n"
    (mac / REVIEW).write_text(judge_again, encoding="utf-8", newline="\n")
    assert commit(mac, "-am", "note").returncode == 0
    assert len(ledger(mac)) == 2
    # a changed mind is a new line that supersedes the old one
    text = (mac / REVIEW).read_text(encoding="utf-8").replace("verdict: keep", "verdict: reject")
    (mac / REVIEW).write_text(text, encoding="utf-8", newline="\n")
    assert commit(mac, "-am", "changed my mind").returncode == 0
    assert [(l.slug, l.verdict) for l in ledger(mac)][-1] == ("night-train", "reject")
    assert git(mac, "push", "-q").returncode == 0
    verified = cli("ledger", "verify", "--repo", str(mac))
    assert verified.returncode == 0 and "3 lines, no line ever changed or removed" in verified.stdout


def test_pre_commit_validates_the_staged_batch_not_the_working_tree(sandbox: Sandbox) -> None:
    mac = sandbox.mac
    bad = BATCH_YAML.replace("width: 512", "width: 513").replace("model: flux-schnell", "model: nope")
    sandbox.write("batches/hero.yaml", bad)
    git(mac, "add", "batches/hero.yaml")
    sandbox.write("batches/hero.yaml", BATCH_YAML)  # fixed, but not staged
    result = commit(mac, "-m", "batch")
    assert result.returncode == 1
    assert "batches/hero.yaml:3: width 513 is not a multiple of 8" in result.stderr
    assert "batches/hero.yaml:15: unknown model 'nope'" in result.stderr
    assert git(mac, "log", "-1", "--format=%s").stdout.strip() == "renderloop: new studio"
    git(mac, "add", "batches/hero.yaml")
    sandbox.write("batches/hero.yaml", bad)  # broken again, but the staged one is fine
    assert commit(mac, "-m", "batch").returncode == 0


def test_pre_commit_names_syntax_errors_and_bad_slugs(sandbox: Sandbox) -> None:
    sandbox.write("batches/hero.yaml", "version: 1\nmodel: flux-schnell\nprompts:\n  - slug: ../etc\n    prompt: x\n")
    sandbox.write("batches/two.json", '{"version": 1,\n "prompts": [}\n')
    git(sandbox.mac, "add", "batches")
    result = commit(sandbox.mac, "-m", "bad")
    assert result.returncode == 1
    assert "batches/hero.yaml:4: prompts[0].slug: slug '../etc' is not allowed" in result.stderr
    assert "batches/two.json:2: JSON syntax error at column" in result.stderr


# ---------------------------------------------------------------- every kind of pull


def _local_commit(repo: Path) -> None:
    (repo / "notes.md").write_text("a local change\n", encoding="utf-8")
    git(repo, "add", "notes.md")
    git(repo, "commit", "-q", "-m", "local notes")


PULLS = {
    "plain pull": (False, ["pull", "--no-rebase"]),
    "plain pull over a local commit (merge)": (True, ["pull", "--no-rebase", "--no-edit"]),
    "pull --rebase": (False, ["pull", "--rebase"]),
    "pull --rebase over a local commit": (True, ["pull", "--rebase"]),
    "pull --rebase over a local commit, apply backend": (True, ["-c", "rebase.backend=apply", "pull", "--rebase"]),
    "fetch, then rebase with nothing to replay": (False, ["rebase", "origin/main"]),
}


@pytest.mark.parametrize("case", list(PULLS))
def test_every_kind_of_pull_writes_and_stages_the_review(rendered: Sandbox, case: str) -> None:
    local, command = PULLS[case]
    mac = rendered.mac
    if local:
        _local_commit(mac)
    if command[0] == "rebase":
        git(mac, "fetch", "-q")
    result = git(mac, *command, check=False)
    assert result.returncode == 0, result.stderr
    assert "hero: 3 rendered, 0 failed, 0 waiting -> renders/hero/review.md" in result.stdout + result.stderr
    review = parse((mac / REVIEW).read_text(encoding="utf-8"), REVIEW)
    assert [s.slug for s in review.sections] == ["harbor-at-dawn", "feedback-ledger-taxonomy", "night-train"]
    assert staged(mac) == [REVIEW]
    gitdir = mac / ".git"
    assert not (gitdir / "rebase-merge").exists() and not (gitdir / "rebase-apply").exists()
    assert git(mac, "symbolic-ref", "--short", "HEAD").stdout.strip() == "main"
    if local:
        assert "local notes" in git(mac, "log", "--format=%s").stdout
    assert git(mac, "rev-parse", "origin/main").stdout == git(mac, "rev-parse", "HEAD~1" if local and "rebase" in command else "origin/main").stdout
    # the commit processed is remembered in the clone's private state, never tracked
    state = gitdir / "renderloop" / "reviewed-commit"
    assert state.read_text(encoding="utf-8").strip() == git(mac, "rev-parse", "HEAD").stdout.strip()


def test_a_pull_with_nothing_new_writes_nothing(rendered: Sandbox) -> None:
    mac = rendered.mac
    pull(mac)
    commit(mac, "-qam", "review")
    (rendered.worker / "README.md").write_text("worker notes\n", encoding="utf-8")
    git(rendered.worker, "add", "README.md")
    git(rendered.worker, "commit", "-qm", "not a render")
    git(rendered.worker, "push", "-q")
    out = pull(mac, "--rebase")  # over the local review commit: post-checkout, then post-rewrite
    assert "renderloop:" not in out
    assert git(mac, "status", "--porcelain").stdout == ""


def test_post_checkout_ignores_file_checkouts_and_detached_heads(rendered: Sandbox) -> None:
    mac = rendered.mac
    git(mac, "fetch", "-q")
    assert "renderloop" not in git(mac, "checkout", "origin/main").stderr  # detached: a look at a commit
    assert not (mac / REVIEW).exists()
    git(mac, "checkout", "-q", "main")
    (mac / "renderloop.yaml").write_text("changed\n", encoding="utf-8")
    git(mac, "checkout", "--", "renderloop.yaml")  # flag 0
    assert not (mac / REVIEW).exists()
    result = git(mac, "checkout", "-b", "look", "origin/main")  # a branch with new renders
    assert "hero: 3 rendered" in result.stdout + result.stderr
    assert staged(mac) == [REVIEW]


def test_failed_and_waiting_in_the_summary_and_the_review(rendered: Sandbox) -> None:
    sandbox = rendered
    pull(sandbox.mac)
    git(sandbox.mac, "commit", "-qm", "review")
    commit_batch(sandbox, BATCH_YAML + '  - slug: lighthouse\n    prompt: "A lighthouse"\n')
    # the worker reports night-train failed before rendering the new prompt
    fail(sandbox, "night-train", "missing-model", "flux1-schnell.safetensors is not on the ComfyUI server")
    out = pull(sandbox.mac)
    assert (
        "hero: 2 rendered, 1 failed (night-train: missing-model: flux1-schnell.safetensors is not on the ComfyUI "
        "server), 1 waiting -> renders/hero/review.md"
    ) in out
    text = (sandbox.mac / REVIEW).read_text(encoding="utf-8")
    assert "**Render failed** · missing-model: flux1-schnell.safetensors is not on the ComfyUI server" in text
    assert "2 rendered · 1 failed · 1 waiting (lighthouse)" in text


# ---------------------------------------------------------------- never losing what was typed


def test_typed_verdicts_survive_a_pull_that_brings_more_renders(rendered: Sandbox) -> None:
    mac = rendered.mac
    pull(mac)
    git(mac, "commit", "-qm", "review")
    judge(mac, "harbor-at-dawn", "verdict: keep\ncues:\n- crisp\n\nLovely light.")  # not committed
    more = BATCH_YAML + '  - slug: lighthouse\n    prompt: "A lighthouse"\n'
    (mac / "batches" / "hero.yaml").write_text(more, encoding="utf-8", newline="\n")
    git(mac, "commit", "-qm", "one more", "batches/hero.yaml")
    git(mac, "push", "-q")
    render(rendered)
    out = pull(mac)
    assert "hero: 4 rendered" in out
    review = parse((mac / REVIEW).read_text(encoding="utf-8"), REVIEW)
    harbor = review.section("harbor-at-dawn")
    assert (harbor.verdict, harbor.cues) == ("keep", ["crisp"])
    assert "Lovely light." in (mac / REVIEW).read_text(encoding="utf-8")
    assert review.section("lighthouse") is not None
    result = commit(mac, "-am", "review")
    assert result.returncode == 0, result.stderr
    assert [(l.slug, l.verdict, l.cues) for l in ledger(mac)] == [("harbor-at-dawn", "keep", ["crisp"])]


def _reroll(sandbox: Sandbox, seed: int) -> None:
    text = BATCH_YAML.replace("seed: 1234", f"seed: {seed}")
    (sandbox.mac / "batches" / "hero.yaml").write_text(text, encoding="utf-8", newline="\n")
    git(sandbox.mac, "commit", "-qm", "reroll", "batches/hero.yaml")
    git(sandbox.mac, "push", "-q")
    render(sandbox)


def test_a_recorded_verdict_resets_the_section_when_the_image_is_rerendered(rendered: Sandbox) -> None:
    mac = rendered.mac
    pull(mac)
    judge(mac, "harbor-at-dawn", "verdict: reroll\ncues:\n- warmer palette")
    assert commit(mac, "-qam", "review").returncode == 0
    _reroll(rendered, 99)
    pull(mac)
    harbor = parse((mac / REVIEW).read_text(encoding="utf-8"), REVIEW).section("harbor-at-dawn")
    assert (harbor.verdict, harbor.cues) == (None, [])
    assert harbor.marker.spec_hash == record(mac, "harbor-at-dawn").spec_hash
    assert "seed 99" in (mac / REVIEW).read_text(encoding="utf-8")


def test_a_verdict_typed_for_the_old_image_is_recorded_against_the_old_spec(rendered: Sandbox) -> None:
    mac = rendered.mac
    pull(mac)
    git(mac, "commit", "-qm", "review")
    old_hash = record(mac, "harbor-at-dawn").spec_hash
    judge(mac, "harbor-at-dawn", "verdict: keep\ncues:")  # typed, not committed
    (mac / "batches" / "hero.yaml").write_text(BATCH_YAML.replace("seed: 1234", "seed: 7"), encoding="utf-8", newline="\n")
    git(mac, "commit", "-qm", "reroll", "batches/hero.yaml")
    git(mac, "push", "-q")
    render(rendered)
    pull(mac)
    text = (mac / REVIEW).read_text(encoding="utf-8")
    assert STALE_NOTICE.format(slug="harbor-at-dawn") in text
    result = commit(mac, "-am", "review")
    assert result.returncode == 0, result.stderr
    assert "verdict recorded for the earlier render" in result.stdout + result.stderr
    (line,) = ledger(mac)
    assert line.spec_hash == old_hash != record(mac, "harbor-at-dawn").spec_hash
    assert line.seed == 1234
    out = cli("review", "--repo", str(mac)).stdout  # now the section shows the new image
    assert "hero: 3 rendered" in out
    harbor = parse((mac / REVIEW).read_text(encoding="utf-8"), REVIEW).section("harbor-at-dawn")
    assert harbor.verdict is None and harbor.marker.seed == 7


# ---------------------------------------------------------------- the pre-commit hook refuses


@pytest.mark.parametrize(
    ("slug", "typed", "message"),
    [
        ("harbor-at-dawn", "verdict: maybe\ncues:", "unknown verdict 'maybe' for 'harbor-at-dawn'"),
        ("harbor-at-dawn", "verdict: keep\ncues: warm", "write each cue on its own line as a `- ` bullet"),
        ("night-train", "verdict: keep\ncues:", "'night-train' failed to render: it cannot be kept"),
    ],
)
def test_a_bad_review_stops_the_commit_with_its_line(rendered: Sandbox, slug: str, typed: str, message: str) -> None:
    fail(rendered, "night-train", "out-of-memory", "CUDA out of memory")
    mac = rendered.mac
    pull(mac)
    judge(mac, "feedback-ledger-taxonomy", "verdict: keep\ncues:")
    judge(mac, slug, typed)
    text = (mac / REVIEW).read_text(encoding="utf-8")
    line = text[: text.index(typed.split("\n")[1] if "warm" in typed else typed.split("\n")[0], text.index(f"## {slug}"))].count("\n") + 1
    result = commit(mac, "-am", "review")
    assert result.returncode == 1
    assert f"{REVIEW}:{line}: {message}" in result.stderr
    assert "the commit was stopped" in result.stderr
    assert (mac / "ledger.jsonl").read_bytes() == b""  # nothing appended for the good verdict either
    assert "ledger.jsonl" not in staged(mac)


def test_a_heading_not_in_the_batch_stops_the_commit(rendered: Sandbox) -> None:
    mac = rendered.mac
    pull(mac)
    text = (mac / REVIEW).read_text(encoding="utf-8") + "\n## lighthouse\n\nverdict: keep\n"
    (mac / REVIEW).write_text(text, encoding="utf-8", newline="\n")
    result = commit(mac, "-am", "review")
    line = text.count("\n", 0, text.index("## lighthouse")) + 1
    assert result.returncode == 1
    assert f"{REVIEW}:{line}: 'lighthouse' is not a slug in batch 'hero'" in result.stderr


def _ledger_commit(mac: Path) -> bytes:
    pull(mac)
    judge(mac, "harbor-at-dawn", "verdict: keep\ncues:")
    judge(mac, "feedback-ledger-taxonomy", "verdict: reject\ncues:")
    judge(mac, "night-train", "verdict: reroll\ncues:")
    assert commit(mac, "-qam", "review").returncode == 0
    return (mac / "ledger.jsonl").read_bytes()


def _edits(raw: bytes) -> dict[str, bytes]:
    a, b, c = raw.splitlines(keepends=True)
    changed = a.replace(b'"keep"', b'"reject"')
    return {
        "changed": changed + b + c,
        "removed": a + c,
        "invalid JSON appended": raw + b"{not json\n",
    }


@pytest.mark.parametrize("edit", list(_edits(b"a\nb\nc\n")))
def test_hand_edits_of_the_ledger_stop_the_commit(rendered: Sandbox, edit: str) -> None:
    mac = rendered.mac
    raw = _ledger_commit(mac)
    (mac / "ledger.jsonl").write_bytes(_edits(raw)[edit])
    git(mac, "add", "ledger.jsonl")
    result = commit(mac, "-m", "edit the ledger")
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("ledger.jsonl:")
    assert "the commit was stopped" in result.stderr
    assert git(mac, "log", "-1", "--format=%s").stdout.strip() == "review"


def test_a_valid_line_appended_by_hand_is_accepted(rendered: Sandbox) -> None:
    mac = rendered.mac
    raw = _ledger_commit(mac)
    last = json.loads(raw.splitlines()[-1])
    last.update(id="01JD3Z6Q4W9H8K2M5N7P0R1S3T", verdict="keep")
    (mac / "ledger.jsonl").write_bytes(raw + json.dumps(last).encode() + b"\n")
    assert commit(mac, "-qam", "by hand").returncode == 0


def test_unstaged_ledger_edits_are_refused_when_folding_a_review(rendered: Sandbox) -> None:
    mac = rendered.mac
    raw = _ledger_commit(mac)
    (mac / "ledger.jsonl").write_bytes(raw.splitlines(keepends=True)[0])  # not staged
    text = (mac / REVIEW).read_text(encoding="utf-8").replace("verdict: keep", "verdict: reroll")
    (mac / REVIEW).write_text(text, encoding="utf-8", newline="\n")
    git(mac, "add", REVIEW)
    result = commit(mac, "-m", "review")
    assert result.returncode == 1
    assert "(unstaged change in the working tree)" in result.stderr


# ---------------------------------------------------------------- the index the commit is built from


def test_plain_commit_and_path_commit_both_record_and_leave_a_clean_tree(rendered: Sandbox) -> None:
    mac = rendered.mac
    pull(mac)
    judge(mac, "harbor-at-dawn", "verdict: keep\ncues:")
    git(mac, "add", REVIEW)
    assert commit(mac, "-qm", "staged review").returncode == 0
    assert git(mac, "status", "--porcelain").stdout == ""
    text = (mac / REVIEW).read_text(encoding="utf-8").replace("verdict: keep", "verdict: reject")
    (mac / REVIEW).write_text(text, encoding="utf-8", newline="\n")
    assert commit(mac, "-qm", "path commit", REVIEW).returncode == 0  # built in a temporary index
    assert git(mac, "status", "--porcelain").stdout == ""
    assert "ledger.jsonl" in git(mac, "show", "--stat", "--format=", "HEAD").stdout
    assert [l.verdict for l in ledger(mac)] == ["keep", "reject"]


def test_hooks_ignore_the_git_variables_of_the_caller(rendered: Sandbox) -> None:
    """A commit made with GIT_DIR and GIT_WORK_TREE from elsewhere still records into the right index."""
    mac = rendered.mac
    pull(mac)
    judge(mac, "night-train", "verdict: keep\ncues:")
    env = dict(os.environ, GIT_DIR=str(mac / ".git"), GIT_WORK_TREE=str(mac))
    result = subprocess.run(["git", "commit", "-qam", "review"], cwd=rendered.root, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert git(mac, "status", "--porcelain").stdout == ""
    assert [l.slug for l in ledger(mac)] == ["night-train"]


# ---------------------------------------------------------------- two clones


def _second_clone(sandbox: Sandbox, name: str, user: str) -> Path:
    clone = sandbox.root / name
    git(sandbox.root, "clone", "-q", str(sandbox.remote), str(clone))
    init(clone)  # installs the hooks inside .git, as a person does in a fresh clone
    git(clone, "config", "user.name", user)
    return clone


def _two_reviewers(sandbox: Sandbox, ana_judges: tuple[str, str], ben_judges: tuple[str, str]) -> tuple[Path, Path]:
    """Ana commits the blank review and pushes; Ben clones; each judges one slug and commits; Ana pushes."""
    ana = sandbox.mac
    pull(ana)
    assert commit(ana, "-qm", "blank review").returncode == 0
    git(ana, "push", "-q")
    ben = _second_clone(sandbox, "ben", "Ben")
    judge(ana, *ana_judges)
    assert commit(ana, "-qam", "ana's review").returncode == 0
    assert git(ana, "push", "-q").returncode == 0
    judge(ben, *ben_judges)
    assert commit(ben, "-qam", "ben's review").returncode == 0
    return ana, ben


def _both_verified(*clones: Path) -> None:
    for clone in clones:
        verified = cli("ledger", "verify", "--repo", str(clone))
        assert verified.returncode == 0, verified.stdout


def test_two_clones_append_verdicts_and_merge_by_union(rendered: Sandbox) -> None:
    ana, ben = _two_reviewers(
        rendered, ("harbor-at-dawn", "verdict: keep\ncues:"), ("night-train", "verdict: reject\ncues:\n- no bridge")
    )
    merged = git(ben, "pull", "--no-rebase", "--no-edit", check=False)
    assert merged.returncode == 0 and "CONFLICT" not in merged.stdout, merged.stdout + merged.stderr
    assert git(ben, "push", "-q").returncode == 0
    pull(ana)
    for clone in (ana, ben):
        assert sorted((l.slug, l.verdict, l.reviewer) for l in ledger(clone)) == [
            ("harbor-at-dawn", "keep", "Ana Tester"), ("night-train", "reject", "Ben")
        ]
        review = parse((clone / REVIEW).read_text(encoding="utf-8"), REVIEW)
        assert review.section("harbor-at-dawn").verdict == "keep"
        assert review.section("night-train").verdict == "reject"
    _both_verified(ana, ben)


def test_two_clones_rebasing_over_each_others_verdicts(rendered: Sandbox) -> None:
    _, ben = _two_reviewers(
        rendered, ("harbor-at-dawn", "verdict: reroll\ncues:"), ("feedback-ledger-taxonomy", "verdict: keep\ncues:")
    )
    rebased = git(ben, "pull", "--rebase", check=False)
    assert rebased.returncode == 0, rebased.stdout + rebased.stderr
    assert sorted(l.slug for l in ledger(ben)) == ["feedback-ledger-taxonomy", "harbor-at-dawn"]
    git(ben, "push", "-q")
    _both_verified(ben)


def test_each_clone_adding_its_own_review_conflicts_on_the_review_not_the_ledger(rendered: Sandbox) -> None:
    """Both clones wrote review.md before either committed it: an add/add conflict on the review.

    The ledger still merges by union; resolving the review and committing the
    merge records nothing twice.
    """
    ana = rendered.mac
    ben = _second_clone(rendered, "ben", "Ben")
    pull(ana)
    assert cli("review", "--repo", str(ben)).returncode == 0  # ben's clone was made after the renders
    judge(ana, "harbor-at-dawn", "verdict: keep\ncues:")
    assert commit(ana, "-qam", "ana's review").returncode == 0
    git(ana, "push", "-q")
    judge(ben, "night-train", "verdict: reject\ncues:")
    assert commit(ben, "-qam", "ben's review").returncode == 0
    merged = git(ben, "pull", "--no-rebase", "--no-edit", check=False)
    assert "CONFLICT (add/add): Merge conflict in renders/hero/review.md" in merged.stdout
    assert git(ben, "diff", "--name-only", "--diff-filter=U").stdout.split() == [REVIEW]  # not the ledger
    git(ben, "checkout", "--ours", REVIEW)
    judge_text = (ben / REVIEW).read_text(encoding="utf-8").replace(
        "verdict:\ncues:", "verdict: keep\ncues:", 1)  # take ana's verdict too
    (ben / REVIEW).write_text(judge_text, encoding="utf-8", newline="\n")
    git(ben, "add", REVIEW)
    result = commit(ben, "--no-edit")
    assert result.returncode == 0, result.stderr
    assert sorted((l.slug, l.verdict) for l in ledger(ben)) == [("harbor-at-dawn", "keep"), ("night-train", "reject")]
    _both_verified(ben)


def test_identical_verdicts_from_two_clones_stay_two_lines(rendered: Sandbox) -> None:
    mac = rendered.mac
    pull(mac)
    assert commit(mac, "-qm", "blank review").returncode == 0
    git(mac, "push", "-q")
    other = _second_clone(rendered, "other", "Ana on her other Mac")
    for clone in (mac, other):
        judge(clone, "harbor-at-dawn", "verdict: keep\ncues:")
        assert commit(clone, "-qam", "same verdict").returncode == 0
    git(mac, "push", "-q")
    result = git(other, "pull", "--no-rebase", "--no-edit", check=False)
    assert result.returncode == 0 and "CONFLICT" not in result.stdout, result.stdout + result.stderr
    lines = ledger(other)
    assert [(l.slug, l.verdict) for l in lines] == [("harbor-at-dawn", "keep")] * 2
    assert lines[0].id != lines[1].id
    _both_verified(other)


def test_a_deleted_section_records_nothing_for_it_and_comes_back(rendered: Sandbox) -> None:
    """Deleting a slug's section by hand is not an error: its image simply has no verdict yet."""
    mac = rendered.mac
    pull(mac)
    judge(mac, "harbor-at-dawn", "verdict: keep\ncues:")
    path = mac / REVIEW
    text = path.read_text(encoding="utf-8")
    start = text.index("\n## night-train\n")
    end = text.find("\n## ", start + 1)
    path.write_text(text[:start] + (text[end:] if end > 0 else "\n"), encoding="utf-8", newline="\n")
    result = commit(mac, "-am", "review without night-train")
    assert result.returncode == 0, result.stderr
    assert [(line.slug, line.verdict) for line in ledger(mac)] == [("harbor-at-dawn", "keep")]
    # the next regeneration brings the section back, blank, and keeps the verdict typed
    assert cli("review", "-C", str(mac)).returncode == 0
    review = parse(path.read_text(encoding="utf-8"), REVIEW)
    assert review.section("night-train") is not None and review.section("night-train").verdict is None
    assert review.section("harbor-at-dawn").verdict == "keep"
