"""The remote goes away while a continuous worker renders: commits wait locally, then all are pushed."""
from __future__ import annotations

import re
import signal
import time
from typing import Any

import pytest

from tests.helpers import Sandbox, git
from tests.reliability.harness import (
    FULL,
    POSIX,
    batch_yaml,
    commit_and_push,
    ledger_line,
    plain_clone,
    prove_clean_and_pushed,
    prove_history,
    prove_once_each,
    push_with_retry,
    renders_in,
    slugs_of,
    start_worker,
    take_remote_away,
    wait_for,
)

pytestmark = pytest.mark.skipif(not POSIX, reason="renaming a folder in use is refused on Windows")

IMAGES = 10


def test_remote_away_then_back(sandbox: Sandbox, figures: dict[str, Any]) -> None:
    laptop = plain_clone(sandbox, "laptop")
    commit_and_push(laptop, {"batches/night.yaml": batch_yaml(IMAGES)}, "batch night")
    run = start_worker(sandbox.worker, sandbox.root / "logs", "--poll", "0.3", seconds=0.3)
    try:
        wait_for(lambda: renders_in(sandbox.remote, "main") >= 2, 30, "the first images pushed")
        away = take_remote_away(sandbox, run)
        gone = time.monotonic()
        # the worker renders on; its commits wait locally and it says when it will try again
        wait_for(lambda: renders_in(sandbox.worker) == IMAGES, 60, "the batch rendered while the remote is away")
        retries = 4 if FULL else 2  # the remote stays away long enough to see the wait grow
        wait_for(lambda: run.output.count("will try again") >= retries, 90, f"{retries} failed pushes")
        waiting = renders_in(sandbox.worker) - renders_in(away, "main")
        assert waiting >= 3, "commits should wait locally while the remote is away"
        # the person, away from the remote too, reviews meanwhile; both push once it is back
        line = ledger_line("earlier", "harbor-at-dawn")
        with open(laptop / "ledger.jsonl", "a", encoding="utf-8", newline="\n") as ledger:
            ledger.write(line)
        git(laptop, "commit", "-q", "--no-verify", "-am", "review: a verdict written offline")
        outage = time.monotonic() - gone
        away.rename(sandbox.remote)
        back = time.monotonic()
        person = push_with_retry(laptop)
        wait_for(lambda: git(sandbox.remote, "rev-parse", "main").stdout == git(sandbox.worker, "rev-parse", "HEAD").stdout
                 and renders_in(sandbox.remote, "main") == IMAGES, 90, "every waiting commit pushed")
        caught_up = time.monotonic() - back
        run.signal(signal.SIGINT)
        assert run.wait(timeout=30) == 0, run.output
    finally:
        run.stop()
    output = run.output
    delays = [float(d) for d in re.findall(r"will try again in ([\d.]+) s", output)]
    assert delays and max(delays) <= 60
    assert len(delays) >= 2 and delays == sorted(delays), "the wait grows (capped backoff) while the remote is away"
    history = prove_history(sandbox.remote, "main")
    prove_once_each(history, "night", slugs_of(IMAGES))
    prove_clean_and_pushed(sandbox)
    assert git(sandbox.remote, "merge-base", "--is-ancestor", person, "main", check=False).returncode == 0
    assert line in (sandbox.worker / "ledger.jsonl").read_text(encoding="utf-8")
    figures.update({
        "outage seconds": round(outage, 1),
        "commits waiting locally at most": waiting,
        "retry delays logged (s)": delays,
        "seconds from the remote's return to all pushed": round(caught_up, 1),
        "lost": "nothing",
    })


def test_a_remote_that_refuses_every_push_is_retried_on_a_backoff(sandbox: Sandbox, figures: dict[str, Any]) -> None:
    """A stale ``main.lock`` on the server rejects every push: not a race to retry at once, a wait."""
    commit_and_push(plain_clone(sandbox, "laptop"), {"batches/night.yaml": batch_yaml(2)}, "batch night")
    stale = sandbox.remote / "refs/heads/main.lock"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("")  # a git on the server crashed holding the branch
    run = start_worker(sandbox.worker, sandbox.root / "logs", "--once")
    assert run.wait(timeout=120) == 1, run.output
    output = run.output
    attempts = output.count("push rejected")
    assert "the remote refuses the push" in output and "will try again in" in output
    assert "2 commits could not be pushed" in output
    assert attempts <= 10, f"{attempts} pushes in a few seconds: retrying without a pause"
    stale.unlink()  # the person removes the lock: the next run pushes what waited
    again = start_worker(sandbox.worker, sandbox.root / "logs", "--once")
    assert again.wait(timeout=60) == 0, again.output
    prove_once_each(prove_history(sandbox.remote, "main"), "night", slugs_of(2))
    prove_clean_and_pushed(sandbox)
    figures.update({"push attempts during the 10 s flush of --once": attempts, "lost": "nothing"})
