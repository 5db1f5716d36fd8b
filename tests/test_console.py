"""The console as Windows has it: a code page that cannot show every character, QuickEdit, a log file."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import pytest

from renderloop.console import ENABLE_EXTENDED_FLAGS, ENABLE_QUICK_EDIT_MODE, log_to_file, quick_edit_off
from tests.helpers import Sandbox, cli, git, type_into
from tests.test_worker import commit_batch

CJK_BATCH = """\
version: 1
model: z-image-turbo
width: 512
height: 384
prompts:
  - slug: harbor
    prompt: "港の夜明け, 编辑插画"
    archetype: 港湾
"""


def cp1252() -> dict[str, str]:
    """The environment of a Windows worker whose output goes to a file or a pipe."""
    return {**os.environ, "PYTHONIOENCODING": "cp1252"}


def run(*args: str) -> tuple[int, str]:
    result = cli(*args, env=cp1252())
    return result.returncode, result.stdout + result.stderr


def test_commands_write_what_the_code_page_cannot_hold_as_replacements(sandbox: Sandbox) -> None:
    commit_batch(sandbox, text=CJK_BATCH)
    code, out = run("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once")
    assert code == 0, out
    git(sandbox.mac, "pull", "-q")
    code, out = run("review", "--repo", str(sandbox.mac))
    assert code == 0, out
    review = sandbox.mac / "renders/hero/review.md"
    review.write_text(type_into(review.read_text(encoding="utf-8"), "harbor", "verdict: keep"), encoding="utf-8")
    git(sandbox.mac, "add", "renders/hero/review.md")
    git(sandbox.mac, "commit", "-q", "-m", "review")  # the pre-commit hook runs renderloop, in cp1252 too
    code, out = run("stats", "--repo", str(sandbox.mac))
    assert code == 0 and "??" in out and "UnicodeEncodeError" not in out, out  # the archetype 港湾
    sandbox.write("batches/bad.yaml", CJK_BATCH.replace("slug: harbor", "slug: 港"))
    code, out = run("status", "--repo", str(sandbox.mac))
    assert code == 0 and "slug '?' is not allowed" in out and "UnicodeEncodeError" not in out, out


class FakeConsole:
    def __init__(self, mode: Optional[int]) -> None:
        self.mode = mode
        self.set_to: list[int] = []

    def get(self) -> Optional[int]:
        return self.mode

    def set(self, mode: int) -> bool:
        self.set_to.append(mode)
        return True


def test_quick_edit_is_turned_off_in_a_windows_console() -> None:
    console = FakeConsole(0x01F7)  # Windows 10's default: QuickEdit and insert mode on
    assert quick_edit_off(console, windows=True)
    assert console.set_to == [(0x01F7 & ~ENABLE_QUICK_EDIT_MODE) | ENABLE_EXTENDED_FLAGS]
    off = FakeConsole(0x01B7)
    assert not quick_edit_off(off, windows=True) and off.set_to == []  # already off: left alone
    none = FakeConsole(None)
    assert not quick_edit_off(none, windows=True) and none.set_to == []  # no console (Task Scheduler)
    elsewhere = FakeConsole(0x01F7)
    assert not quick_edit_off(elsewhere, windows=False) and elsewhere.set_to == []


def test_the_log_file_rotates(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "worker.log"
    handler = log_to_file(path, max_bytes=2000, backups=2)
    log = logging.getLogger("renderloop.worker")
    level = logging.getLogger("renderloop").level
    logging.getLogger("renderloop").setLevel(logging.INFO)
    try:
        for i in range(200):
            log.info("line %d of the worker's log, 港", i)
    finally:
        logging.getLogger("renderloop").removeHandler(handler)
        logging.getLogger("renderloop").setLevel(level)
        handler.close()
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["worker.log", "worker.log.1", "worker.log.2"]
    assert all(p.stat().st_size <= 2000 for p in path.parent.iterdir())
    assert "line 199 of the worker's log, 港" in path.read_text(encoding="utf-8")


def test_the_worker_keeps_its_log_in_the_file_asked_for(sandbox: Sandbox, tmp_path: Path) -> None:
    commit_batch(sandbox, text=CJK_BATCH)
    log_file = tmp_path / "logs" / "worker.log"
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once",
                 "--log-file", str(log_file), env=cp1252())
    assert result.returncode == 0, result.stderr
    text = log_file.read_text(encoding="utf-8")
    assert "hero/harbor done" in text and "1 rendered, 0 failed" in text
    assert "1 rendered, 0 failed" in result.stderr  # and on the console as before
