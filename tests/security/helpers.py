"""Helpers for the security tests: an attacker's clone that pushes links, and the real worker."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import Sandbox, cli, git

posix_only = pytest.mark.skipif(os.name == "nt", reason="symbolic links and FIFOs: POSIX here")

GOOD = "version: 1\nmodel: z-image-turbo\nwidth: 64\nheight: 64\nprompts:\n  - slug: fine\n    prompt: a fine image\n"


def attacker(sandbox: Sandbox) -> Path:
    """A clone of the studio without hooks: someone with push access."""
    clone = sandbox.root / "attacker"
    if not clone.exists():
        git(sandbox.root, "clone", "--quiet", str(sandbox.remote), str(clone))
    else:
        git(clone, "pull", "-q", "--no-verify")
    return clone


def push(sandbox: Sandbox, files: dict[str, str] | None = None, links: dict[str, str] | None = None,
         message: str = "hostile content") -> Path:
    """Commit ``files`` (text) and ``links`` (symbolic links: rel -> target) from the attacker's clone, and push."""
    clone = attacker(sandbox)
    for rel, text in (files or {}).items():
        path = clone / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
    for rel, target in (links or {}).items():
        path = clone / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
    git(clone, "add", "--all")
    git(clone, "commit", "-q", "--no-verify", "-m", message)
    git(clone, "push", "-q")
    return clone


def run_worker(sandbox: Sandbox, *extra: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``renderloop worker --once --backend placeholder`` in the worker's clone; a hang fails the test."""
    return cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once", *extra,
               timeout=timeout)


def batch_error(sandbox: Sandbox, batch: str) -> dict:
    """The committed error record of ``batch``, as pushed to the remote."""
    shown = git(sandbox.remote, "show", f"main:renders/{batch}/batch-error.json").stdout
    return json.loads(shown)


def remote_files(sandbox: Sandbox, under: str = "") -> list[str]:
    args = ["ls-tree", "-r", "--name-only", "main"] + ([under] if under else [])
    return git(sandbox.remote, *args).stdout.split()


def files_under(folder: Path) -> dict[str, bytes]:
    """Every regular file below ``folder`` (links not followed), with its bytes."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[path.relative_to(folder).as_posix()] = path.read_bytes()
    return found
