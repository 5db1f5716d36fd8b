"""Thin clones (studio/thin.py): a partial clone whose checkout leaves older batches' images out."""
from __future__ import annotations

from pathlib import Path

import pytest

from studio import thin
from studio.config import load_config
from studio.layout import Studio
from tests.bench.synthetic import Synthetic, build, clone
from tests.helpers import cli, git
from win_side.plan import make_plan


@pytest.fixture
def made(tmp_path: Path) -> Synthetic:
    """A remote with three batches of two rendered images (b0002 the newest) and a few verdicts."""
    return build(tmp_path / "gen", renders=6, ledger_lines=9, per_batch=2)


def _images_and_missing(root: Path) -> tuple[set[str], set[str]]:
    """The blob ids of HEAD's images, and of the objects this (partial) clone does not hold."""
    missing = {row[1:] for row in git(root, "rev-list", "--objects", "--missing=print", "HEAD").stdout.split()
               if row.startswith("?")}
    images = {row.split()[2] for row in git(root, "ls-tree", "-r", "HEAD", "renders").stdout.splitlines()
              if row.endswith(".png")}
    return images, missing


def _pngs(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "renders").glob("*/*.png"))


def test_a_thin_clone_holds_everything_but_the_older_images(made: Synthetic, tmp_path: Path) -> None:
    cloned = thin.clone(made.remote.as_uri(), tmp_path / "thin", newest=1)
    root = cloned.path
    assert cloned.batches == ["b0002", "b0001", "b0000"] and cloned.left_out == ["b0001", "b0000"]
    assert _pngs(root) == ["renders/b0002/b0002-000.png", "renders/b0002/b0002-001.png"]
    assert len(list((root / "renders").glob("*/*.json"))) == 6 and (root / "batches" / "b0000.yaml").is_file()
    assert (root / "ledger.jsonl").read_bytes().count(b"\n") == 9
    assert not git(root, "status", "--porcelain").stdout
    assert thin.left_out(root) == {"b0000", "b0001"}
    # partial: the left-out images were never fetched
    images, missing = _images_and_missing(root)
    assert len(images) == 6 and len(images & missing) == 4

    assert thin.open_batches(root, ["b0000", "b0002"]) == ["b0000"]
    assert _pngs(root)[:2] == ["renders/b0000/b0000-000.png", "renders/b0000/b0000-001.png"]
    assert thin.left_out(root) == {"b0001"} and not git(root, "status", "--porcelain").stdout

    everything = thin.clone(made.remote.as_uri(), tmp_path / "all", newest=None)
    assert everything.left_out == [] and len(_pngs(everything.path)) == 6 and not thin.is_sparse(everything.path)


def test_status_and_the_plan_in_a_thin_clone_are_those_of_a_full_clone(made: Synthetic, tmp_path: Path) -> None:
    full = clone(made.remote, tmp_path / "full")
    root = thin.clone(made.remote.as_uri(), tmp_path / "thin", newest=0).path
    assert _pngs(root) == []
    for here in (full, root):
        studio = Studio.at(here)
        plan = make_plan(studio, load_config(studio))
        assert plan.jobs == [] and plan.totals == {"b0000": (2, 2, 0), "b0001": (2, 2, 0), "b0002": (2, 2, 0)}
    assert cli("status", cwd=root).stdout == cli("status", cwd=full).stdout
    assert " 2 " in cli("status", cwd=root).stdout.splitlines()[1]


def test_the_worker_in_a_thin_clone_renders_only_what_is_new_and_leaves_it_clean(made: Synthetic, tmp_path: Path) -> None:
    person = clone(made.remote, tmp_path / "person")
    worker = thin.clone(made.remote.as_uri(), tmp_path / "worker", newest=0).path
    git(worker, "config", "user.name", "renderloop worker")
    git(worker, "config", "user.email", "worker@example.com")
    # the person changes one prompt of an old batch (its images are not in the worker's clone) and adds a batch
    batch = person / "batches" / "b0000.yaml"
    batch.write_text(batch.read_text().replace("b0000 image 1,", "b0000 image 1 at dusk,"), newline="\n")
    (person / "batches" / "fresh.yaml").write_text(
        "version: 1\nmodel: z-image-turbo\nwidth: 512\nheight: 384\nprompts:\n  - slug: one\n    prompt: one\n",
        newline="\n",
    )
    git(person, "add", "batches")
    git(person, "commit", "--quiet", "--no-verify", "-m", "reroll one, add one")
    git(person, "push", "--quiet")

    done = cli("worker", "--repo", str(worker), "--backend", "placeholder", "--once", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 rendered" in done.stderr
    assert not git(worker, "status", "--porcelain").stdout
    git(person, "pull", "--quiet", "--no-rebase")
    subjects = git(person, "log", "--format=%s", "-3").stdout.splitlines()
    assert sorted(s.split(" [")[0] for s in subjects[:2]) == ["render(b0000): b0000-001", "render(fresh): one"]
    assert (person / "renders" / "b0000" / "b0000-001.png").stat().st_size > 0
    again = cli("worker", "--repo", str(worker), "--backend", "placeholder", "--once", timeout=120)
    assert "0 rendered" in again.stderr and not git(worker, "status", "--porcelain").stdout


def test_the_commands_in_a_thin_clone(made: Synthetic, tmp_path: Path) -> None:
    done = cli("clone", made.remote.as_uri(), str(tmp_path / "thin"), "--batches", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "the images of the newest 1 of 3 batches" in done.stdout
    root = tmp_path / "thin"
    full = clone(made.remote, tmp_path / "full")
    for here in (root, full):
        assert cli("init", str(here)).returncode == 0
        git(here, "config", "user.name", "Person")

    # the review of a left-out batch says how to bring its images; otherwise the same as in a full clone
    reviewed = cli("review", "b0000", cwd=root)
    assert "its images are not in this clone: `renderloop open b0000` brings them" in reviewed.stdout
    assert reviewed.stdout.split("; its images")[0] == cli("review", "b0000", cwd=full).stdout.strip()
    assert (root / "renders/b0000/review.md").read_text() == (full / "renders/b0000/review.md").read_text()

    # the pre-commit hook folds a verdict into the ledger the same way
    for here in (root, full):
        review = here / "renders/b0000/review.md"
        text = review.read_text()
        at = text.index("verdict:", text.index("## b0000-001"))
        review.write_text(text[:at] + "verdict: keep" + text[at + len("verdict:"):], newline="\n")
        committed = git(here, "commit", "-q", "-am", "review b0000", check=False)
        assert committed.returncode == 0, committed.stderr
        assert not git(here, "status", "--porcelain").stdout
    assert cli("stats", cwd=root).stdout == cli("stats", cwd=full).stdout
    assert cli("status", cwd=root).stdout == cli("status", cwd=full).stdout

    opened = cli("open", "b0001", "b0002", "nothing", cwd=root)
    assert opened.stdout.splitlines() == [
        "b0001: images brought in", "b0002: images already here", "nothing: no renders in this clone",
        "1 older batch(es) still have their images left out.",
    ]
    assert thin.left_out(root) == {"b0000"} and not git(root, "status", "--porcelain").stdout

    # export brings in what it exports
    exported = cli("export", str(tmp_path / "out"), cwd=root)
    assert "Brought in the images of b0000 " in exported.stdout, exported.stdout + exported.stderr
    assert (tmp_path / "out" / "b0000-001.png").read_bytes() == (full / "renders/b0000/b0000-001.png").read_bytes()
    assert thin.left_out(root) == set() and len(_pngs(root)) == 6 and not git(root, "status", "--porcelain").stdout


def _missing_images(root: Path) -> set[str]:
    images, missing = _images_and_missing(root)
    return images & missing


def test_a_remote_that_ignores_the_filter_is_said_and_a_hub_serves_thin_clones(made: Synthetic, tmp_path: Path) -> None:
    """Without uploadpack.allowFilter git fetches every image and only warns: renderloop says it plainly."""
    plain = tmp_path / "plain.git"
    git(tmp_path, "clone", "-q", "--bare", str(made.remote), str(plain))  # no uploadpack settings
    done = cli("clone", plain.as_uri(), str(tmp_path / "full"), "--batches", "0", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "does not serve partial clones, so every image was fetched" in done.stderr
    assert "uploadpack.allowFilter true" in done.stderr and not _missing_images(tmp_path / "full")

    made_hub = cli("hub", "init", str(plain), cwd=tmp_path)  # an existing bare repository, re-configured
    assert made_hub.returncode == 0, made_hub.stderr
    done = cli("clone", plain.as_uri(), str(tmp_path / "thin"), "--batches", "0", cwd=tmp_path)
    assert done.returncode == 0 and "partial" not in done.stderr, done.stderr
    assert len(_missing_images(tmp_path / "thin")) == 6
    # `open` fetches one batch's images by their blob ids (uploadpack.allowAnySHA1InWant), and only those
    assert cli("open", "b0001", cwd=tmp_path / "thin").returncode == 0
    assert len(_missing_images(tmp_path / "thin")) == 4


def test_the_clone_command_never_prints_a_password_in_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A hosted remote's token in an https URL stays out of the terminal (the library does the cloning)."""
    from renderloop.commands.clone import clone as clone_command

    monkeypatch.setattr(thin, "clone", lambda url, dest, newest: thin.Cloned(dest, ["b1"], [], full=True))
    assert clone_command("https://ana:ghp_s3cret@git.example.com/studio.git", tmp_path / "c", 3) == 0
    said = capsys.readouterr()
    assert "ghp_s3cret" not in said.out + said.err
    assert said.out.startswith("Cloned https://ana:***@git.example.com/studio.git into ")
    assert said.err.startswith("Note: https://ana:***@git.example.com/studio.git does not serve partial clones")
