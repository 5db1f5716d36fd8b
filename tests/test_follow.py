"""`renderloop follow`: the person watches the worker's commits arrive and gets the review."""
from __future__ import annotations

import subprocess
import sys
import time

from tests.helpers import BATCH_YAML, Sandbox, cli, git


def push_batch(sandbox: Sandbox) -> None:
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    git(sandbox.mac, "add", "batches/hero.yaml")
    git(sandbox.mac, "commit", "-q", "-m", "batch hero")
    git(sandbox.mac, "push", "-q")


def test_follow_pulls_progress_and_writes_the_review_when_complete(sandbox: Sandbox) -> None:
    push_batch(sandbox)
    follower = subprocess.Popen(
        [sys.executable, "-m", "renderloop", "follow", "--poll", "0.2", "--timeout", "90"],
        cwd=sandbox.mac, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.0)
        worker = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder",
                     "--placeholder-seconds", "0.4", "--window", "1", "--once")
        assert worker.returncode == 0, worker.stderr
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert "Following hero" in out
    assert "hero: 3/3 rendered, 0 failed, 0 pending" in out
    assert "3 rendered, 0 failed, 0 waiting -> renders/hero/review.md" in out
    # the person's clone has the worker's commits and the staged review
    assert git(sandbox.mac, "rev-parse", "HEAD").stdout == git(sandbox.remote, "rev-parse", "main").stdout
    assert (sandbox.mac / "renders/hero/review.md").is_file()
    staged = git(sandbox.mac, "diff", "--cached", "--name-only").stdout.split()
    assert "renders/hero/review.md" in staged


def test_follow_with_nothing_pending_returns_at_once(sandbox: Sandbox) -> None:
    result = cli("follow", "--poll", "0.1", cwd=sandbox.mac, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Nothing to wait for" in result.stdout


def test_follow_gives_up_after_its_timeout(sandbox: Sandbox) -> None:
    push_batch(sandbox)
    started = time.monotonic()
    result = cli("follow", "--poll", "0.1", "--timeout", "1", cwd=sandbox.mac, timeout=30)
    assert result.returncode == 1
    assert "gave up after 1 s: 3 image(s) still pending in hero" in result.stderr
    assert time.monotonic() - started < 15
