"""The layering of DEVELOPERS.md, checked by import-linter (contracts in pyproject.toml)."""
from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.fail("import-linter is not installed: pip install -e '.[test]'")
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


# The fault injector kills the worker on purpose (tests/reliability): its last words and exit are its job.
PRINTS_ON_PURPOSE = {"win_side/faults.py"}


def _output_calls(path: Path) -> list[str]:
    """``file:line: call`` for each print, exit or write to stdout/stderr in one module."""
    shown = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name in ("print", "sys.exit", "os._exit", "exit", "quit") or name.startswith(("sys.stdout", "sys.stderr")):
            found.append(f"{shown}:{node.lineno}: {name}()")
        elif isinstance(node.func, ast.Name) and node.func.id == "SystemExit":
            found.append(f"{shown}:{node.lineno}: SystemExit")
    return found


def test_libraries_neither_print_nor_exit() -> None:
    """mac_side, win_side and studio return values or raise; only renderloop/ prints and picks exit codes."""
    found = []
    for package in ("mac_side", "win_side", "studio"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.relative_to(ROOT).as_posix() not in PRINTS_ON_PURPOSE:
                found += _output_calls(path)
    assert found == []


def test_the_check_finds_a_print(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text("import sys\nprint('x')\nsys.stderr.write('y')\nraise SystemExit(2)\n", encoding="utf-8")
    assert _output_calls(module) == ["probe.py:2: print()", "probe.py:3: sys.stderr.write()", "probe.py:4: SystemExit"]
