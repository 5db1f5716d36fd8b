"""``renderloop status``: pending, rendered, failed and reviewed per batch, invalid files with their problem."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from renderloop.output import plain_table, print_table
from mac_side.status import BatchStatus, batch_statuses
from renderloop.commands.status import row, status
from studio.layout import Studio
from tests.helpers import BATCH_YAML, Sandbox, cli, git, type_into
from tests.studio_data import append_ledger, put_render, review_round, studio_root, verdict, write_batch  # noqa: F401


HERO_ORDER = [  # BATCH_YAML pending: what `renderloop status` says the worker renders next
    "",
    "Render order (one model at a time, first needed first; a worker with several servers renders some of"
    " these side by side):",
    "  1. z-image-turbo: 2 images (hero 2)",
    "  2. flux-schnell: 1 image (hero 1)",
    "Batches complete in this order: hero",
]


def counts(root: Path) -> dict[str, tuple]:
    return {s.batch: (s.prompts, s.pending, s.rendered, s.failed, s.reviewed, s.problem) for s in batch_statuses(Studio.at(root))}


def test_an_empty_studio_says_how_to_start(studio_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert status(studio_root) == 0
    assert capsys.readouterr().out == "No batches yet: `renderloop new NAME` scaffolds batches/NAME.yaml.\n"


def test_status_follows_the_loop(sandbox: Sandbox) -> None:
    mac = sandbox.mac
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    git(mac, "add", "batches/hero.yaml")
    git(mac, "commit", "-q", "-m", "batch")
    git(mac, "push", "-q")
    before = cli("status", "--repo", str(mac))
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines() == [
        "batch  prompts  pending  rendered  failed  reviewed",
        "hero         3        3         0       0         0",
        *HERO_ORDER,
    ]
    assert cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once").returncode == 0
    git(mac, "pull", "-q")
    assert counts(mac) == {"hero": (3, 0, 3, 0, 0, None)}
    review = mac / "renders" / "hero" / "review.md"
    text = type_into(review.read_text(encoding="utf-8"), "harbor-at-dawn", "verdict: keep\ncues:")
    text = type_into(text, "night-train", "verdict: reroll\ncues:\n- moonlight")
    review.write_text(text, encoding="utf-8", newline="\n")
    assert git(mac, "commit", "-q", "-am", "review", check=False).returncode == 0
    assert counts(mac) == {"hero": (3, 0, 3, 0, 2, None)}
    # a new seed is a reroll in place: pending again, and its old verdict no longer counts
    sandbox.write("batches/hero.yaml", BATCH_YAML.replace("seed: 1234", "seed: 99"))
    after = cli("status", "--repo", str(mac / "renders"))
    assert after.stdout.splitlines()[1] == "hero         3        1         2       0         1"


def test_failed_stale_and_missing_images(studio_root: Path) -> None:
    hero = write_batch(studio_root, "hero", BATCH_YAML)
    harbor, ledger_taxonomy, train = hero.jobs
    put_render(studio_root, harbor)
    put_render(studio_root, ledger_taxonomy, status="failed")
    put_render(studio_root, train, png=False)  # a done record whose PNG was deleted: render it again
    assert counts(studio_root)["hero"] == (3, 1, 1, 1, 0, None)


def test_the_review_counts_a_done_record_without_its_png_as_waiting_like_status(studio_root: Path) -> None:
    hero = write_batch(studio_root, "hero", BATCH_YAML)
    harbor, ledger_taxonomy, train = hero.jobs
    put_render(studio_root, harbor)
    put_render(studio_root, ledger_taxonomy, status="failed")
    put_render(studio_root, train, png=False)
    assert counts(studio_root)["hero"] == (3, 1, 1, 1, 0, None)
    result = cli("review", "hero", "--repo", str(studio_root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("hero: 1 rendered, 1 failed (feedback-ledger-taxonomy: out-of-memory: ")
    # and how to render it again
    assert result.stdout.endswith(", 1 waiting -> renders/hero/review.md; to render again: fix the cause, then run "
                                  "`renderloop worker --retry-failed` on the worker (or change the seed)\n")
    text = (studio_root / "renders" / "hero" / "review.md").read_text(encoding="utf-8")
    assert "\n1 rendered · 1 failed · 1 waiting (night-train)\n" in text
    # a record for an older spec is pending work
    write_batch(studio_root, "hero", BATCH_YAML.replace("seed: 1234", "seed: 5"))
    assert counts(studio_root)["hero"] == (3, 2, 0, 1, 0, None)


def test_reviewed_counts_verdicts_on_the_current_spec_only(studio_root: Path) -> None:
    hero = write_batch(studio_root, "hero", BATCH_YAML)
    records = [put_render(studio_root, job) for job in hero.jobs]
    other = write_batch(studio_root, "other", BATCH_YAML)
    append_ledger(
        studio_root,
        verdict("hero", "harbor-at-dawn", "keep", record=records[0]),
        verdict("hero", "harbor-at-dawn", "reroll", record=records[0]),  # two verdicts, one image reviewed
        verdict("hero", "night-train", "reject", record=records[2]),
        verdict("other", "night-train", "keep", job=other.jobs[2]),  # the other batch's image
    )
    assert counts(studio_root) == {
        "hero": (3, 0, 3, 0, 2, None),
        "other": (3, 3, 0, 0, 1, None),
    }
    write_batch(studio_root, "hero", BATCH_YAML.replace("seed: 1234", "seed: 5"))
    assert counts(studio_root)["hero"][4] == 1


def test_invalid_batches_are_listed_with_their_first_problem(studio_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_batch(studio_root, "hero", BATCH_YAML)
    bad = studio_root / "batches" / "broken.yaml"
    bad.write_text(BATCH_YAML.replace("width: 512", "width: 513").replace("model: flux-schnell", "model: nope"), encoding="utf-8")
    (studio_root / "batches" / "twice.yaml").write_text(BATCH_YAML, encoding="utf-8")
    (studio_root / "batches" / "twice.json").write_text("{}", encoding="utf-8")
    assert status(studio_root) == 0
    assert capsys.readouterr().out.splitlines() == [
        "batch   prompts  pending  rendered  failed  reviewed",
        "broken  invalid",
        "hero          3        3         0       0         0",
        "twice   invalid",
        "broken: invalid: batches/broken.yaml:3: width 513 is not a multiple of 8 (and 1 more)",
        "twice: invalid: batches/twice.json:1: batch 'twice' is defined twice, by batches/twice.json and "
        "batches/twice.yaml: keep one (and 1 more)",
        *HERO_ORDER,
    ]


def test_status_shows_the_render_order_and_which_batch_completes_first(
        studio_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11: model by model, first needed first; a batch of the first model alone completes before one
    that mixes models, though its file comes later."""
    write_batch(studio_root, "a-mixed", BATCH_YAML)
    write_batch(studio_root, "b-solo", BATCH_YAML.replace("    model: flux-schnell\n", ""))
    assert status(studio_root) == 0
    out = capsys.readouterr().out
    assert "  1. z-image-turbo: 5 images (a-mixed 2, b-solo 3)\n  2. flux-schnell: 1 image (a-mixed 1)\n" in out
    assert out.endswith("Batches complete in this order: b-solo, a-mixed\n")


def test_records_of_slugs_no_longer_in_the_batch_are_ignored(studio_root: Path) -> None:
    hero = write_batch(studio_root, "hero", BATCH_YAML)
    for job in hero.jobs:
        put_render(studio_root, job)
    write_batch(studio_root, "hero", BATCH_YAML.split("  - slug: feedback-ledger-taxonomy")[0])
    assert counts(studio_root)["hero"] == (1, 0, 1, 0, 0, None)


def test_status_outside_a_studio(tmp_path: Path) -> None:
    result = cli("status", "--repo", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"renderloop: error: {tmp_path.resolve()} is not a renderloop studio (no renderloop.yaml): run `renderloop init`"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_rich_table_and_a_pipe_plain_text() -> None:
    rows = [row(BatchStatus("hero", 3, 1, 1, 1, 0)), row(BatchStatus("broken", problem="x"))]
    terminal = Terminal()
    print_table("", ("batch", "prompts", "pending", "rendered", "failed", "reviewed"), rows, out=terminal)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue())
    assert "┃ batch " in shown and "│ hero   │" in shown and "│ broken │ invalid │" in shown
    pipe = io.StringIO()
    print_table("Title", ("a", "n"), [("x", 1), ("longer", 22)], out=pipe)
    assert pipe.getvalue() == "Title\na        n\nx        1\nlonger  22\n"
    assert plain_table("", ("a", "b"), [("x", None)], numeric_from=2) == ["a  b", "x"]
