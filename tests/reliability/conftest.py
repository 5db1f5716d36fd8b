"""The reliability tests report what they measured (kills survived, races run, seconds to exit).

Figures are printed at the end of the run and, when ``RENDERLOOP_FIGURES``
names a file, written there as JSON (``docs/reliability.md`` quotes them).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.reliability import harness

_FIGURES: dict[str, dict[str, Any]] = {}


@pytest.fixture(autouse=True)
def no_worker_left() -> Iterator[None]:
    """A test that fails half-way leaves no worker running (each runs in a session of its own)."""
    yield
    while harness.STARTED:
        harness.STARTED.pop().stop()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A dict the test fills with its figures, reported under the test's name."""
    found: dict[str, Any] = {}
    _FIGURES[request.node.name] = found
    return found


def pytest_terminal_summary(terminalreporter: Any) -> None:
    reported = {name: values for name, values in _FIGURES.items() if values}
    if not reported:
        return
    terminalreporter.section("reliability figures")
    for name, values in reported.items():
        terminalreporter.write_line(f"{name}:")
        for key, value in values.items():
            terminalreporter.write_line(f"    {key}: {value}")
    target = os.environ.get("RENDERLOOP_FIGURES")
    if target:
        Path(target).write_text(json.dumps(reported, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
