"""Helpers for tests: build studios, run git and the CLI for real."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mac_side.init import init


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run real git, as a person would, and return the completed process."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=check, capture_output=True, text=True, encoding="utf-8"
    )


def cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``renderloop`` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "renderloop", *args],
        cwd=cwd, check=check, capture_output=True, text=True, encoding="utf-8", timeout=timeout,
        env=env if env is not None else os.environ.copy(),
    )


@dataclass
class Sandbox:
    root: Path
    remote: Path  # bare repository
    mac: Path  # the person's clone, hooks enabled
    worker: Path  # the worker's clone

    def write(self, rel: str, text: str, where: Path | None = None) -> Path:
        path = (where or self.mac) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        return path

    def push_batch(self, name: str, text: str) -> None:
        """The person commits ``batches/<name>.yaml`` (through the hooks) and pushes it."""
        self.write(f"batches/{name}.yaml", text)
        git(self.mac, "add", f"batches/{name}.yaml")
        git(self.mac, "commit", "-q", "-m", f"batch {name}")
        git(self.mac, "push", "-q")


def config_rows(stdout: str) -> dict[str, list[str]]:
    """`renderloop config`'s table: setting -> the words after it (value as shown, then its source)."""
    return {line.split()[0]: line.split()[1:] for line in stdout.splitlines()[2:]}


def make_sandbox(tmp_path: Path) -> Sandbox:
    seed = tmp_path / "seed"
    init(seed)
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(seed), str(remote))
    mac = tmp_path / "mac"
    worker = tmp_path / "worker"
    git(tmp_path, "clone", "--quiet", str(remote), str(mac))
    git(tmp_path, "clone", "--quiet", str(remote), str(worker))
    git(worker, "config", "user.name", "renderloop worker")
    git(worker, "config", "user.email", "worker@example.com")
    init(mac)  # in a fresh clone: only enables the hooks
    return Sandbox(tmp_path, remote, mac, worker)


BATCH_YAML = """\
version: 1
model: z-image-turbo
width: 512
height: 384
prompts:
  - slug: harbor-at-dawn
    prompt: "A harbor at dawn, editorial illustration"
    seed: 1234
    archetype: essay
  - slug: feedback-ledger-taxonomy
    prompt: "Index cards pinned on a cork board, flat illustration"
    archetype: diagram
  - slug: night-train
    prompt: "A night train crossing a bridge, gouache"
    model: flux-schnell
"""


def type_into(text: str, slug: str, typed: str) -> str:
    """A review with the blank ``verdict:``/``cues:`` of ``slug``'s section replaced by ``typed``."""
    head = text.index(f"## {slug}\n")
    at = text.index("verdict:\ncues:", head)
    return text[:at] + typed + text[at + len("verdict:\ncues:"):]
