"""Every package the code imports is declared in pyproject.toml (none arrives only as another's dependency)."""
from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("studio", "mac_side", "win_side", "renderloop")


def imported_modules() -> set[str]:
    """The top-level names of every module the package code imports, its own packages and the stdlib left out."""
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in PACKAGES and n not in sys.stdlib_module_names}


def declared() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    assert block is not None, "pyproject.toml has no dependencies list"
    return {_normal(m) for m in re.findall(r'^\s*"([A-Za-z0-9_.-]+)', block.group(1), re.M)}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_a_declared_dependency() -> None:
    distributions = packages_distributions()
    missing = {}
    for module in sorted(imported_modules()):
        owners = {_normal(d) for d in distributions.get(module, [])}
        assert owners, f"no installed distribution provides {module!r}"
        if not owners & declared():
            missing[module] = sorted(owners)
    assert missing == {}, f"imported but not in pyproject.toml's dependencies: {missing}"
