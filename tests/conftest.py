"""Shared fixtures: real git in temporary folders, isolated from the user's config.

Every test runs with HOME and the global git config pointing into its own
temporary folder (this machine's settings too: ``machine.yaml`` there,
absent unless a test writes it), so nothing the tests do can touch the
developer's files,
and with the folder of the running Python first on PATH, so the hook shims
find this very ``renderloop``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from studio import git as studio_git
from studio.machine import env_name, leaves
from tests.helpers import Sandbox, make_sandbox


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Ana Tester\n\temail = ana@example.com\n"
        "[init]\n\tdefaultBranch = main\n"
        "[advice]\n\tdetachedHead = false\n"
        "[protocol \"file\"]\n\tallow = always\n",
        encoding="utf-8",
    )
    for name in list(os.environ):
        if name.startswith("GIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.delenv("FAL_KEY", raising=False)
    studio_git.reset()  # a worker run in this process earlier set it up for its clone
    for leaf in leaves():  # this machine's settings: only what a test gives
        monkeypatch.delenv(env_name(leaf), raising=False)
    monkeypatch.setenv("RENDERLOOP_MACHINE_CONFIG", str(home / "machine.yaml"))
    return home


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    """A bare remote holding a fresh studio, a person's clone and a worker clone."""
    return make_sandbox(tmp_path)
