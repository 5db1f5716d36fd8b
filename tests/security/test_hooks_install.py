"""Hooks are never run from the tree (issue 9, item 2).

`renderloop init` installs the hooks inside .git/hooks: renderloop's own
shim, running the exact interpreter renderloop is installed in. A pushed change
to hooks/ runs nowhere, not even after `renderloop init`: a template that is not
renderloop's shim is refused. Nor does a pushed Python package: a hook never
puts the studio on Python's path.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mac_side.init import install_hooks
from studio.shims import BOOT, installed, renderloop_argv, shim
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
def test_init_again_refuses_a_pushed_hook_template_and_nothing_of_it_runs(sandbox: Sandbox, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    before = installed_hooks(sandbox.mac)
    push_hook_change(sandbox, marker)
    git(sandbox.mac, "pull", "-q")
    result = cli("init", ".", cwd=sandbox.mac)  # what the stale-hooks warning would have the person run
    assert result.returncode == 0, result.stderr
    for name in ("pre-commit", "post-merge", "post-rewrite", "post-checkout"):
        assert f"hooks/{name}: is not renderloop's hook (it would run other commands on this machine); not installed" \
            in result.stdout
    assert installed_hooks(sandbox.mac) == before
    (sandbox.mac / "notes.txt").write_text("x", encoding="utf-8")
    git(sandbox.mac, "add", "notes.txt")
    git(sandbox.mac, "commit", "-q", "-m", "a local commit")  # pre-commit
    git(sandbox.mac, "pull", "-q")  # post-merge
    assert sorted(tmp_path.glob("ran-*")) == []


@posix_only
def test_init_brings_an_earlier_renderloops_hooks_up_to_date_showing_the_difference(sandbox: Sandbox) -> None:
    """Hooks written by a renderloop that started `python -m renderloop` (the studio first on Python's path)."""
    for name in ("pre-commit", "post-merge", "post-rewrite", "post-checkout"):
        for where in (sandbox.mac / "hooks" / name, sandbox.mac / ".git" / "hooks" / name):
            text = where.read_text(encoding="utf-8")
            earlier = text[: text.rindex("exec ")] + f'exec "$PYTHON" -m renderloop hook {name} "$@"\n'
            where.write_text(earlier, encoding="utf-8")
    result = cli("init", ".", cwd=sandbox.mac)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "--- .git/hooks/post-merge (installed)\n+++ hooks/post-merge (installing)\n" in out
    assert '-exec "$PYTHON" -m renderloop hook post-merge "$@"\n' in out
    assert f"+exec \"$PYTHON\" -c '{BOOT}' hook post-merge \"$@\"\n" in out
    assert out.index("+++ hooks/post-merge") < out.index("updated the hooks pre-commit, post-merge")
    assert "updated the hook templates pre-commit, post-merge, post-rewrite, post-checkout to this renderloop's" in out
    for name, text in installed_hooks(sandbox.mac).items():
        assert text == installed(shim(name), PYTHON) and (sandbox.mac / "hooks" / name).read_text() == shim(name)


@posix_only
def test_a_pushed_python_package_never_runs_in_a_hook(sandbox: Sandbox, tmp_path: Path) -> None:
    """renderloop/, studio/ and mac_side/ packages at the studio's top: `python -m renderloop` would import them."""
    marker = tmp_path / "ran"
    clone = sandbox.root / "attacker"
    git(sandbox.root, "clone", "-q", str(sandbox.remote), str(clone))
    for package in ("renderloop", "studio", "mac_side"):
        (clone / package).mkdir()
        (clone / package / "__init__.py").write_text(
            f"import pathlib\npathlib.Path({str(marker)!r} + '-{package}').write_text('x')\n", encoding="utf-8")
    (clone / "renderloop" / "__main__.py").write_text("print('not renderloop')\n", encoding="utf-8")
    (clone / "batches" / "hero.yaml").write_text(BATCH_YAML, encoding="utf-8")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "--no-verify", "-m", "packages")
    git(clone, "push", "-q")
    pulled = git(sandbox.mac, "pull", "-q")  # post-merge, in the studio's top folder
    (sandbox.mac / "notes.txt").write_text("x", encoding="utf-8")
    git(sandbox.mac, "add", "notes.txt")
    committed = git(sandbox.mac, "commit", "-q", "-m", "a local commit")  # pre-commit
    assert pulled.returncode == 0 and committed.returncode == 0
    assert "not renderloop" not in pulled.stdout + pulled.stderr
    assert sorted(tmp_path.glob("ran-*")) == []
    # and the command the worker's service runs, started in its clone as the service starts it
    done = subprocess.run([*renderloop_argv(), "--version"], cwd=sandbox.mac, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("renderloop "), done.stdout + done.stderr
    assert sorted(tmp_path.glob("ran-*")) == []


def test_installed_hooks_name_this_interpreter_and_nothing_from_the_tree(sandbox: Sandbox) -> None:
    for name, text in installed_hooks(sandbox.mac).items():
        assert text.splitlines()[3] == f"PYTHON='{PYTHON}'"
        assert text.endswith(f'exec "$PYTHON" -c \'{BOOT}\' hook {name} "$@"\n')
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
