"""Hooks are never run from the tree (issue 9, item 2).

`renderloop init` installs the hooks inside .git/hooks from the hooks/
templates, each running the exact interpreter renderloop is installed in; a
pushed change to hooks/ runs nowhere until the person installs it again, and
then they see the difference first.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mac_side.init import install_hooks
from studio.layout import Studio
from tests.helpers import BATCH_YAML, Sandbox, cli, git

PYTHON = Path(sys.executable).as_posix()
posix_only = pytest.mark.skipif(os.name == "nt", reason="hook scripts and links: POSIX here")


def push_hook_change(sandbox: Sandbox, marker: Path) -> None:
    """Someone with push access rewrites every hook template to leave a marker, and pushes."""
    clone = sandbox.root / "attacker"
    git(sandbox.root, "clone", "-q", str(sandbox.remote), str(clone))
    for name in ("post-merge", "post-checkout", "post-rewrite", "pre-commit"):
        (clone / "hooks" / name).write_text(f"#!/bin/sh\nPYTHON=python3\ntouch '{marker}-{name}'\n", encoding="utf-8")
    (clone / "batches").mkdir(exist_ok=True)
    (clone / "batches" / "hero.yaml").write_text(BATCH_YAML, encoding="utf-8")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "--no-verify", "-m", "hooks: 'improvements'")
    git(clone, "push", "-q")


def installed_hooks(clone: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in (clone / ".git" / "hooks").iterdir() if not p.name.endswith(".sample")}


@posix_only
def test_a_pushed_hook_change_is_not_run_on_pull_rebase_or_checkout(sandbox: Sandbox, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    before = installed_hooks(sandbox.mac)
    assert set(before) == {"pre-commit", "post-merge", "post-rewrite", "post-checkout"}
    push_hook_change(sandbox, marker)

    pulled = git(sandbox.mac, "pull", "-q")  # fires post-merge
    git(sandbox.mac, "checkout", "-q", "-b", "other")  # fires post-checkout
    (sandbox.mac / "notes.txt").write_text("x", encoding="utf-8")
    git(sandbox.mac, "add", "notes.txt")
    git(sandbox.mac, "commit", "-q", "-m", "a local commit")  # fires pre-commit
    git(sandbox.mac, "pull", "-q", "--rebase", "origin", "main")  # fires post-rewrite

    assert sorted(tmp_path.glob("ran-*")) == []
    assert installed_hooks(sandbox.mac) == before
    assert pulled.returncode == 0 and (sandbox.mac / "batches/hero.yaml").is_file()


@posix_only
def test_init_again_shows_the_difference_before_installing(sandbox: Sandbox, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    push_hook_change(sandbox, marker)
    git(sandbox.mac, "pull", "-q")
    result = cli("init", ".", cwd=sandbox.mac)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "--- .git/hooks/post-merge (installed)\n+++ hooks/post-merge (installing)\n" in out
    assert f"+touch '{marker}-post-merge'\n" in out
    assert '-exec "$PYTHON" -m renderloop hook post-merge "$@"\n' in out
    assert out.index("+++ hooks/post-merge") < out.index("updated the hooks pre-commit, post-merge")
    assert (sandbox.mac / ".git/hooks/post-merge").read_text() == (
        f"#!/bin/sh\nPYTHON='{PYTHON}'\ntouch '{marker}-post-merge'\n")


def test_installed_hooks_name_this_interpreter_and_nothing_from_the_tree(sandbox: Sandbox) -> None:
    for name, text in installed_hooks(sandbox.mac).items():
        assert text.splitlines()[3] == f"PYTHON='{PYTHON}'"
        assert text.endswith(f'exec "$PYTHON" -m renderloop hook {name} "$@"\n')
        assert "hooks/" not in text.replace("hooks/ ", "")  # no path into the tracked templates
    assert git(sandbox.mac, "config", "--get", "core.hooksPath", check=False).returncode == 1


@posix_only
def test_hooks_work_from_a_gui_client_without_renderloop_on_path(sandbox: Sandbox, tmp_path: Path) -> None:
    """A GUI client: a bare PATH (git only), no venv activated. The pre-commit still validates."""
    bare_bin = tmp_path / "bin"
    bare_bin.mkdir()
    (bare_bin / "git").symlink_to(shutil.which("git"))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["PATH"] = str(bare_bin)
    sandbox.write("batches/bad.yaml", BATCH_YAML.replace("slug: night-train", "slug: Night Train"))
    git(sandbox.mac, "add", "batches/bad.yaml")
    result = subprocess.run(["git", "commit", "-m", "bad batch"], cwd=sandbox.mac, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("batches/bad.yaml:13: prompts[2].slug: slug 'Night Train' is not allowed")


@posix_only
def test_a_vanished_interpreter_stops_the_commit_with_a_clear_line(sandbox: Sandbox, tmp_path: Path) -> None:
    gone = tmp_path / "old-venv" / "bin" / "python"
    install_hooks(Studio.at(sandbox.mac), python=str(gone))
    sandbox.write("batches/x.yaml", BATCH_YAML)
    git(sandbox.mac, "add", "batches/x.yaml")
    result = git(sandbox.mac, "commit", "-m", "x", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"renderloop: {gone}, the Python renderloop was installed with, is gone: reinstall renderloop, "
        "then run renderloop init . (the commit was stopped)")
    pulled = git(sandbox.mac, "pull", "-q")  # post-merge: a message, never a failed pull
    assert pulled.returncode == 0


def test_an_older_studios_hooks_path_is_removed(sandbox: Sandbox) -> None:
    git(sandbox.mac, "config", "core.hooksPath", "hooks")
    result = cli("init", ".", cwd=sandbox.mac)
    assert "git no longer runs the tracked hooks/ (removed core.hooksPath=hooks)" in result.stdout
    assert git(sandbox.mac, "config", "--get", "core.hooksPath", check=False).returncode == 1


def test_someone_elses_hooks_path_is_left_alone_with_a_warning(sandbox: Sandbox, tmp_path: Path) -> None:
    git(sandbox.mac, "config", "core.hooksPath", str(tmp_path / "husky"))
    result = cli("init", ".", cwd=sandbox.mac)
    assert f"warning: core.hooksPath={tmp_path / 'husky'} is set, so git runs hooks from there" in result.stdout
    assert git(sandbox.mac, "config", "core.hooksPath").stdout.strip() == str(tmp_path / "husky")


@posix_only
def test_a_template_that_is_a_link_or_lacks_the_python_line_is_not_installed(sandbox: Sandbox) -> None:
    before = installed_hooks(sandbox.mac)
    (sandbox.mac / "hooks/post-merge").unlink()
    (sandbox.mac / "hooks/post-merge").symlink_to("/etc/passwd")
    (sandbox.mac / "hooks/pre-commit").write_text("#!/bin/sh\nexec sh -c 'echo owned'\n", encoding="utf-8")
    result = cli("init", ".", cwd=sandbox.mac)
    assert "hooks/post-merge: is not a plain file; not installed" in result.stdout
    assert "hooks/pre-commit: has no PYTHON= line for the interpreter; not installed" in result.stdout
    assert installed_hooks(sandbox.mac) == before


def test_init_twice_installs_nothing_new(sandbox: Sandbox) -> None:
    result = cli("init", ".", cwd=sandbox.mac)
    assert result.returncode == 0
    assert "nothing to do" in result.stdout and "---" not in result.stdout
