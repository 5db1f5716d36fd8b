"""Benchmarks: fixtures that start and always stop the processes, and the summary of the four figures.

Run them with ``python -m pytest tests/bench --benchmark-only -q`` (see docs/benchmarks.md); the
normal test run never collects this folder (``norecursedirs`` in pyproject.toml).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from tests.bench import figures
from tests.bench.harness import Rig, ServerProcess, WorkerProcess


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(render_seconds: float, load_seconds: float = 0.0) -> ServerProcess:
        server = ServerProcess(tmp_path / f"comfyui-{len(started)}", render_seconds, load_seconds)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def start_worker() -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(rig: Rig, urls: list[str], *extra: str, env: Optional[dict[str, str]] = None) -> WorkerProcess:
        worker = WorkerProcess(rig, urls, *extra, env=env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def pytest_sessionstart(session: pytest.Session) -> None:
    figures.RESULTS.load_before = _load()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    _scale_summary(terminalreporter)
    lines = figures.summary()
    if lines:
        terminalreporter.section("renderloop: the four figures of issue 3")
        terminalreporter.write_line(f"load average (1, 5, 15 min) before: {figures.RESULTS.load_before}; "
                                    f"after: {_load()}; {os.cpu_count()} CPUs")
        for line in lines:
            terminalreporter.write_line(line)


def _scale_summary(terminalreporter: pytest.TerminalReporter) -> None:
    scale: dict[str, float] = getattr(sys.modules.get("tests.bench.test_scale"), "FIGURES", {})
    if scale:
        terminalreporter.section("renderloop: issue 13, medians in seconds")
        for name, value in sorted(scale.items()):
            terminalreporter.write_line(f"{name}: {value:.3f}")
