"""The worker on Windows, where Windows cannot run: failing writes, held files, long paths.

Windows' behaviour is injected (a write that fails as a path too long, a
replace refused while another program holds the file, the platform check);
the worker around it is real: real git, real PNGs, the real command.
"""
from __future__ import annotations

import errno
import functools
from pathlib import Path
from typing import Any

import pytest

from renderloop.main import main
from studio import fsutil
from studio.record import RenderRecord
from tests.helpers import Sandbox, cli, git
from tests.test_worker import commit_batch, render_commits
from win_side import commits

PENDING = ".git/renderloop/pending"


def worker_in_process(sandbox: Sandbox, *extra: str) -> int:
    """``renderloop worker --once`` in this process, so a test can inject what Windows does."""
    return main(["worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once", *extra])


def fail_writes(monkeypatch: pytest.MonkeyPatch, name: str, times: int, error: OSError) -> list[Path]:
    """Make the worker's write of the file ``name`` fail ``times`` times with ``error``."""
    failed: list[Path] = []
    real = commits.write_atomic

    def write(path: Path, data: bytes) -> None:
        if path.name == name and len(failed) < times:
            failed.append(path)
            raise error
        real(path, data)

    monkeypatch.setattr(commits, "write_atomic", write)
    return failed


def test_a_path_too_long_keeps_the_render_and_the_next_run_commits_it(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commit_batch(sandbox)
    too_long = OSError(errno.ENAMETOOLONG, "File name too long")
    failed = fail_writes(monkeypatch, "night-train.png", 1, too_long)
    assert worker_in_process(sandbox) == 1
    err = capsys.readouterr().err
    assert failed and "1 finished render(s) could not be written" in err
    assert len(render_commits(sandbox.worker)) == 2  # the other two went on
    kept = sorted((sandbox.worker / PENDING).iterdir())
    assert [p.suffix for p in kept] == [".json", ".png"] and len(kept[0].stem) == 16  # short names
    record = RenderRecord.model_validate_json(kept[0].read_bytes())
    assert (record.slug, record.status) == ("night-train", "done")
    kept_record, kept_png = kept[0].read_bytes(), kept[1].read_bytes()

    # the next run (the real command) commits the kept render, and does not render it again
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once")
    assert result.returncode == 0, result.stderr
    assert (sandbox.worker / "renders/hero/night-train.json").read_bytes() == kept_record
    assert (sandbox.worker / "renders/hero/night-train.png").read_bytes() == kept_png
    assert render_commits(sandbox.worker)[0].startswith("render(hero): night-train")
    assert len(render_commits(sandbox.worker)) == 3
    assert not any((sandbox.worker / PENDING).iterdir())
    assert git(sandbox.worker, "status", "--porcelain").stdout == ""
    assert git(sandbox.remote, "rev-parse", "main").stdout == git(sandbox.worker, "rev-parse", "HEAD").stdout


def test_a_render_that_still_cannot_be_written_waits_and_is_not_rendered_again(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commit_batch(sandbox)
    fail_writes(monkeypatch, "night-train.png", 99, OSError(errno.ENAMETOOLONG, "File name too long"))
    assert worker_in_process(sandbox) == 1
    kept = {p.name: p.stat().st_mtime_ns for p in (sandbox.worker / PENDING).iterdir()}
    rendered: list[str] = []
    from win_side.backends import placeholder

    real_paint = placeholder.paint
    monkeypatch.setattr(placeholder, "paint", lambda request: rendered.append(request.slug) or real_paint(request))
    capsys.readouterr()
    assert worker_in_process(sandbox) == 1
    assert rendered == []  # it waits; it is not rendered again
    assert {p.name: p.stat().st_mtime_ns for p in (sandbox.worker / PENDING).iterdir()} == kept
    assert capsys.readouterr().err.count("still cannot write hero/night-train") == 1  # said once per run


def test_replace_over_a_held_file_is_retried_for_about_ten_seconds(tmp_path: Path) -> None:
    src, dst = tmp_path / "new", tmp_path / "old"
    src.write_bytes(b"new")
    dst.write_bytes(b"old")
    slept: list[float] = []

    def held(times: int) -> Any:
        refusals = [PermissionError(errno.EACCES, "The process cannot access the file")] * times

        def replace(a: Path, b: Path) -> None:
            if refusals:
                raise refusals.pop()
            fsutil.os.replace(a, b)

        return replace

    fsutil.replace_retrying(src, dst, replace=held(5), sleep=slept.append, windows=True)
    assert dst.read_bytes() == b"new" and slept == list(fsutil.REPLACE_DELAYS[:5])

    src.write_bytes(b"newer")
    slept.clear()
    with pytest.raises(PermissionError):
        fsutil.replace_retrying(src, dst, replace=held(99), sleep=slept.append, windows=True)
    assert 10 <= sum(slept) <= 12
    assert src.read_bytes() == b"newer" and dst.read_bytes() == b"new"  # nothing lost
    with pytest.raises(PermissionError):  # elsewhere a refused rename is final
        fsutil.replace_retrying(src, dst, replace=held(1), sleep=slept.append, windows=False)


def test_a_file_held_past_the_retries_keeps_the_render(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit_batch(sandbox)
    real = fsutil.replace_retrying
    slept: list[float] = []

    def replace(a: Path, b: Path) -> None:
        if Path(b).name == "harbor-at-dawn.json":
            raise PermissionError(errno.EACCES, "The process cannot access the file")  # OneDrive holds it
        fsutil.os.replace(a, b)

    monkeypatch.setattr(fsutil, "replace_retrying",
                        functools.partial(real, replace=replace, sleep=slept.append, windows=True))
    assert worker_in_process(sandbox) == 1
    assert sum(slept) >= 10
    kept = [RenderRecord.model_validate_json(p.read_bytes()) for p in (sandbox.worker / PENDING).glob("*.json")]
    assert [r.slug for r in kept] == ["harbor-at-dawn"]
    assert not list((sandbox.worker / "renders/hero").glob(".*.tmp"))
    monkeypatch.setattr(fsutil, "replace_retrying", real)  # the viewer let go
    assert worker_in_process(sandbox) == 0
    assert len(render_commits(sandbox.worker)) == 3
    assert git(sandbox.worker, "status", "--porcelain").stdout == ""


def test_temporary_names_are_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = fsutil.replace_retrying
    monkeypatch.setattr(fsutil, "replace_retrying", lambda a, b: seen.append(Path(a).name) or real(a, b))
    fsutil.write_atomic(tmp_path / ("x" * 80 + ".json"), b"{}")
    assert len(seen[0]) == len(".rl-12345678.tmp") and seen[0].startswith(".rl-") and fsutil.is_temp_name(seen[0])


def test_the_path_budget_is_checked_against_windows_limit(tmp_path: Path) -> None:
    from studio.layout import LONGEST_OUTPUT
    from studio.winpath import MAX_PATH
    from win_side.longpaths import path_budget_problem

    fits = Path("C:/" + "s" * (MAX_PATH - 1 - LONGEST_OUTPUT - 3))
    too_long = Path(str(fits) + "x")
    assert len(str(fits)) + 1 + LONGEST_OUTPUT == MAX_PATH
    assert path_budget_problem(fits, windows=True, enabled=lambda: False) is None
    problem = path_budget_problem(too_long, windows=True, enabled=lambda: False)
    assert problem and f"can reach {MAX_PATH + 1} characters" in problem and "LongPathsEnabled" in problem
    assert path_budget_problem(too_long, windows=True, enabled=lambda: True) is None
    assert path_budget_problem(too_long, windows=False, enabled=lambda: False) is None


def test_the_worker_warns_at_start_and_runs_git_with_long_paths(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from win_side import worker

    monkeypatch.setattr(worker, "path_budget_problem",
                        functools.partial(worker.path_budget_problem, windows=True, enabled=lambda: False))
    deep = sandbox.root / ("d" * 100)
    git(sandbox.root, "clone", "-q", str(sandbox.remote), str(deep))
    sandbox.worker = deep
    assert worker_in_process(sandbox) == 0
    err = capsys.readouterr().err
    assert f"paths in {deep} can reach {len(str(deep)) + 175} characters" in err
    assert "longpaths" not in (deep / ".git/config").read_text()  # the clone's settings are untouched...
    from studio import git as studio_git

    assert studio_git.config_get(deep, "core.longpaths") == "true"  # ...the worker's git gets it
