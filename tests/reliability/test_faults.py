"""The crash points are inert unless RENDERLOOP_FAULT is set, and say so when it is set wrong."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from win_side import faults

PACKAGES = [Path(__file__).resolve().parents[2] / name for name in ("studio", "win_side", "mac_side", "renderloop")]


def test_without_the_variable_every_point_is_a_no_op() -> None:
    assert "RENDERLOOP_FAULT" not in os.environ
    for name in faults.POINTS:
        for _ in range(3):
            faults.point(name)  # still alive


def test_only_the_faults_module_reads_the_variable() -> None:
    readers = [path.name for package in PACKAGES for path in package.rglob("*.py")
               if "RENDERLOOP_FAULT" in path.read_text(encoding="utf-8")]
    assert readers == ["faults.py"]
    assert "ENV = \"RENDERLOOP_FAULT\"" in Path(faults.__file__).read_text(encoding="utf-8")


def test_a_misspelt_point_stops_the_worker_with_a_clear_line() -> None:
    env = {**os.environ, "RENDERLOOP_FAULT": "after-pgn:1"}
    result = subprocess.run([sys.executable, "-c", "import win_side.faults"], check=False, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "RENDERLOOP_FAULT='after-pgn:1': expected POINT:N[+SECONDS]" in result.stderr


def test_the_point_kills_at_the_nth_time_and_not_before() -> None:
    code = "from win_side import faults\nfor i in range(5):\n    print(i, flush=True)\n    faults.point('after-png')\n"
    env = {**os.environ, "RENDERLOOP_FAULT": "after-png:3"}
    result = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True)
    assert result.stdout.split() == ["0", "1", "2"]
    assert result.returncode != 0 and "killed at after-png #3" in result.stderr
