"""`renderloop init`: a studio anywhere, idempotent, and hooks-only in a fresh clone."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import pytest
import yaml

from studio.config import load_config
from studio.layout import Studio
from studio.shims import BOOT
from tests.helpers import cli, git


def test_init_makes_a_studio_with_everything_and_a_first_commit(tmp_path: Path) -> None:
    target = tmp_path / "studio"
    result = cli("init", str(target))
    assert result.returncode == 0, result.stderr
    assert "Created a renderloop studio" in result.stdout
    for rel in ("renderloop.yaml", ".gitattributes", "ledger.jsonl", "batches", "renders",
                "hooks/pre-commit", "hooks/post-merge", "hooks/post-rewrite", "hooks/post-checkout"):
        assert (target / rel).exists(), rel
    assert (target / "ledger.jsonl").read_bytes() == b""
    attributes = (target / ".gitattributes").read_text()
    assert "ledger.jsonl merge=union text eol=lf" in attributes
    assert "*.png binary -delta" in attributes
    assert git(target, "config", "--get", "core.hooksPath", check=False).returncode == 1
    for name in ("pre-commit", "post-merge", "post-rewrite", "post-checkout"):
        assert f"PYTHON='{Path(sys.executable).as_posix()}'" in (target / ".git/hooks" / name).read_text()
    config = load_config(Studio.at(target))
    for model, (width, height, steps) in {
        "flux-schnell": (1024, 1024, 4), "flux-dev": (1024, 1024, 20),
        "z-image-turbo": (1024, 1024, 8), "qwen-image": (1328, 1328, 20),
    }.items():
        settings = config.models[model]
        assert (settings.width, settings.height, settings.steps) == (width, height, steps)
        assert settings.max_pixels > 0 and settings.max_side >= max(width, height)
    # one commit holding every file, hooks executable in git
    assert git(target, "rev-list", "--count", "HEAD").stdout.strip() == "1"
    tree = git(target, "ls-tree", "-r", "HEAD").stdout
    assert "100755 blob" in tree.split("hooks/pre-commit")[0].splitlines()[-1]
    assert git(target, "status", "--porcelain").stdout == ""
    # the hooks are one call each: `renderloop hook NAME` (the studio not on Python's path), python filled in
    assert f'exec "$PYTHON" -c \'{BOOT}\' hook pre-commit "$@"' in (target / "hooks/pre-commit").read_text()
    assert "PYTHON=python3\n" in (target / "hooks/pre-commit").read_text()
    yaml.safe_load((target / "renderloop.yaml").read_text())  # plain YAML, comments and all


def test_init_again_changes_nothing_and_says_so(tmp_path: Path) -> None:
    target = tmp_path / "studio"
    assert cli("init", str(target)).returncode == 0
    head = git(target, "rev-parse", "HEAD").stdout
    snapshot = {p: p.read_bytes() for p in target.rglob("*") if p.is_file() and ".git" not in p.parts}
    again = cli("init", str(target))
    assert again.returncode == 0
    assert "already a renderloop studio" in again.stdout and "nothing to do" in again.stdout
    assert git(target, "rev-parse", "HEAD").stdout == head
    assert {p: p.read_bytes() for p in snapshot} == snapshot


def test_init_in_a_fresh_clone_only_enables_the_hooks(tmp_path: Path) -> None:
    assert cli("init", str(tmp_path / "seed")).returncode == 0
    git(tmp_path, "clone", "-q", str(tmp_path / "seed"), str(tmp_path / "clone"))
    clone = tmp_path / "clone"
    assert not (clone / ".git/hooks/post-merge").exists()  # git never brings hooks with a clone
    head = git(clone, "rev-parse", "HEAD").stdout
    result = cli("init", ".", cwd=clone)
    assert result.returncode == 0
    assert (f"installed the hooks pre-commit, post-merge, post-rewrite, post-checkout in {clone / '.git' / 'hooks'} "
            f"(running {Path(sys.executable).as_posix()})") in result.stdout
    assert git(clone, "config", "--get", "core.hooksPath", check=False).returncode == 1
    assert (clone / ".git/hooks/post-merge").read_text() == (clone / "hooks/post-merge").read_text().replace(
        "PYTHON=python3", f"PYTHON='{Path(sys.executable).as_posix()}'")
    assert git(clone, "config", "rebase.autoStash").stdout.strip() == "true"
    assert git(clone, "rev-parse", "HEAD").stdout == head
    assert git(clone, "status", "--porcelain").stdout == ""


def test_init_adds_a_studio_to_an_existing_repository(tmp_path: Path) -> None:
    repo = tmp_path / "site"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "index.html").write_text("<h1>hi</h1>")
    git(repo, "add", "index.html")
    git(repo, "commit", "-q", "-m", "site")
    (repo / "draft.txt").write_text("not mine to commit")
    assert cli("init", str(repo)).returncode == 0
    files = git(repo, "show", "--name-only", "--format=", "HEAD").stdout.split()
    assert "renderloop.yaml" in files and "draft.txt" not in files and "index.html" not in files
    assert git(repo, "status", "--porcelain").stdout.strip() == "?? draft.txt"


def test_init_refuses_a_folder_inside_another_repository(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    result = cli("init", str(tmp_path / "sub"))
    assert result.returncode == 1
    assert "is inside the git repository" in result.stderr


def test_help_lists_every_command_with_one_line() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("init", "new", "status", "review", "ledger", "stats", "export", "follow",
                    "worker", "local", "wake", "config", "doctor", "demo"):
        assert any(line.strip().startswith(command + " ") for line in result.stdout.splitlines()), command
    # `hook` is for git's shims, not for people: it runs but is not listed
    assert not any(line.strip().startswith("hook ") for line in result.stdout.splitlines())


def test_debug_is_accepted_after_the_command_and_shows_the_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    plain = cli("status", "-C", str(missing))
    assert plain.returncode == 1
    assert plain.stderr.strip() == f"renderloop: error: {missing}: no such folder"
    debug = cli("status", "-C", str(missing), "--debug")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr


@pytest.mark.parametrize("default, branch", [(None, "main"), ("trunk", "trunk")])
def test_a_new_studio_is_on_main_unless_the_person_chose_another_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default: Optional[str], branch: str
) -> None:
    """Git's own default is still 'master' on many machines; `renderloop hub init` prints `git push -u origin main`."""
    config = tmp_path / "gitconfig"
    config.write_text("[user]\n\tname = Ana\n\temail = ana@example.com\n"
                      + (f"[init]\n\tdefaultBranch = {default}\n" if default else ""), encoding="utf-8")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    result = cli("init", str(tmp_path / "studio"))
    assert result.returncode == 0, result.stderr
    assert git(tmp_path / "studio", "branch", "--show-current").stdout.strip() == branch
