"""`renderloop demo`: the whole loop, narrated, in a sandbox, in seconds."""
from __future__ import annotations

import time
from pathlib import Path

from tests.helpers import cli, git


def test_demo_runs_the_whole_loop_and_keeps_the_sandbox(tmp_path: Path) -> None:
    keep = tmp_path / "sandbox"
    started = time.monotonic()
    result = cli("demo", "--keep", str(keep), cwd=tmp_path, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < 30
    out = result.stdout
    for step in ("==> 1.", "==> 2.", "==> 3.", "==> 4.", "==> 5.", "==> 6.", "==> 7.", "==> 8."):
        assert step in out
    assert "batches/typo.yaml:5:" in out  # the pre-commit hook stopped a bad batch
    assert "recorded 4 verdicts in ledger.jsonl" in out
    mac = keep / "mac"
    log = git(mac, "log", "--oneline").stdout
    tail = out[out.index("==> 8."):]  # ends with git log --oneline of the person's clone
    assert [line.strip() for line in log.splitlines()] == [line.strip() for line in tail.splitlines()[1:len(log.splitlines()) + 1]]
    assert log.count("render(hero):") == 4 and log.count("render(hero-2):") == 1
    ledger = (mac / "ledger.jsonl").read_text().splitlines()
    assert len(ledger) == 4
    assert git(mac, "rev-parse", "HEAD").stdout == git(keep / "studio.git", "rev-parse", "main").stdout
    assert "The sandbox is kept in" in out


def test_demo_cleans_up_after_itself(tmp_path: Path) -> None:
    result = cli("demo", "--images", "2", cwd=tmp_path, timeout=120, env=_env_with_tmp(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    sandbox = Path(result.stdout.splitlines()[0].split(" at ", 1)[1])
    assert sandbox.parent == tmp_path and not sandbox.exists()


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "precious.txt").write_text("keep me")
    result = cli("demo", "--keep", str(tmp_path / "full"), cwd=tmp_path)
    assert result.returncode == 1
    assert "is not empty" in result.stderr
    assert (tmp_path / "full" / "precious.txt").read_text() == "keep me"


def _env_with_tmp(tmp_path: Path) -> dict[str, str]:
    import os

    env = os.environ.copy()
    env["TMPDIR"] = str(tmp_path)
    env["TEMP"] = env["TMP"] = str(tmp_path)
    return env
