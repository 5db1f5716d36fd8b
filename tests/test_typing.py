"""The package code type-checks with mypy (settings in pyproject.toml's [tool.mypy]).

Checked for each platform renderloop runs on: the person's Mac, the Windows
worker, and Linux (CI, a Linux worker). ``sys.platform`` checks let mypy skip
the branches of the other platforms, so a POSIX-only call on the worker's
path fails here even when the suite runs on Linux.
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("studio", "mac_side", "win_side", "renderloop")


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_package_code_type_checks(platform: str) -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is not installed: pip install -e '.[test]'")
    # One cache per platform (a shared one would be rebuilt at each switch); .mypy_cache is git-ignored.
    cache = ROOT / ".mypy_cache" / f"test-{platform}"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--platform", platform, "--cache-dir", str(cache)],
        cwd=ROOT, capture_output=True, text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mypy --platform {platform} found errors:\n{output}"
    # The files setting covers every module of the four packages, not fewer.
    checked = re.search(r"no issues found in (\d+) source files", output)
    assert checked is not None, output
    modules = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    assert int(checked.group(1)) == len(modules), output
