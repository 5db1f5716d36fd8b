"""Ctrl+C and SIGTERM: commit what is finished, push, exit 0 in seconds; twice: leave at once."""
from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.helpers import Sandbox
from tests.reliability.harness import (
    POSIX,
    RaceReferee,
    batch_yaml,
    commit_and_push,
    isolate_remote_server,
    plain_clone,
    prove_clean_and_pushed,
    prove_history,
    prove_once_each,
    renders_in,
    slugs_of,
    start_worker,
    wait_for,
    working_tree_is_whole,
)

pytestmark = pytest.mark.skipif(not POSIX, reason="signals to a child process are POSIX here")

IMAGES = 8


def dispatch(sandbox: Sandbox, count: int = IMAGES) -> None:
    commit_and_push(plain_clone(sandbox, "laptop"), {"batches/hero.yaml": batch_yaml(count)}, "batch hero")


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_stop_commits_what_is_finished_pushes_and_exits_0(sandbox: Sandbox, figures: dict[str, Any],
                                                          name: str) -> None:
    dispatch(sandbox)
    run = start_worker(sandbox.worker, sandbox.root / "logs", "--poll", "0.3", seconds=0.5)
    wait_for(lambda: renders_in(sandbox.remote, "main") >= 2, 30, "two images pushed")
    sent = time.monotonic()
    run.signal(getattr(signal, name))
    code = run.wait(timeout=30)
    seconds = time.monotonic() - sent
    assert code == 0, run.output
    assert seconds < 5, f"took {seconds:.1f} s to stop"
    assert "stopping: committing what is finished" in run.output
    done = renders_in(sandbox.remote, "main")
    assert 2 <= done < IMAGES, "the batch should have been stopped midway"
    prove_clean_and_pushed(sandbox)  # what was finished is committed and pushed, nothing half-written
    prove_history(sandbox.remote, "main")
    # the next run finishes the batch without rendering anything twice
    again = start_worker(sandbox.worker, sandbox.root / "logs", "--once")
    assert again.wait(timeout=60) == 0, again.output
    prove_once_each(prove_history(sandbox.remote, "main"), "hero", slugs_of(IMAGES))
    figures.update({"images committed and pushed before stopping": done, "seconds to exit": round(seconds, 2),
                    "exit code": code})


def test_stop_does_not_wait_for_a_long_render(sandbox: Sandbox, figures: dict[str, Any]) -> None:
    """Renders in flight are cancelled, not awaited: a 60 s render does not hold up Ctrl+C."""
    dispatch(sandbox, 2)
    run = start_worker(sandbox.worker, sandbox.root / "logs", "--poll", "0.3", seconds=60)
    wait_for(lambda: "queued 2 images" in run.output, 20, "the renders to start")
    time.sleep(0.5)
    sent = time.monotonic()
    run.signal(signal.SIGINT)
    code = run.wait(timeout=30)
    seconds = time.monotonic() - sent
    assert code == 0, run.output
    assert seconds < 5
    assert renders_in(sandbox.remote, "main") == 0
    prove_clean_and_pushed(sandbox)
    figures.update({"seconds to exit with two 60 s renders in flight": round(seconds, 2)})


def test_second_ctrl_c_leaves_at_once_without_a_partial_file(sandbox: Sandbox, figures: dict[str, Any]) -> None:
    """The first Ctrl+C waits for a push that hangs (held by the remote); the second leaves at once."""
    dispatch(sandbox)
    logs = sandbox.root / "logs"
    referee = RaceReferee(sandbox.remote, sandbox.root / "referee")
    referee.hold("worker")  # the worker's first push hangs on the server
    isolate_remote_server(sandbox.worker)  # leaving kills the worker's git push, not the server's side
    run = start_worker(sandbox.worker, logs, "--poll", "0.3", seconds=0.2)
    referee.wait_held("worker")
    run.signal(signal.SIGINT)
    wait_for(lambda: "stopping: committing what is finished" in run.output, 10, "the first Ctrl+C to be taken")
    time.sleep(0.2)
    assert run.alive(), "the first Ctrl+C should wait for the push"
    second = time.monotonic()
    run.signal(signal.SIGINT)
    code = run.wait(timeout=30)
    seconds = time.monotonic() - second
    referee.release()
    run.wait_orphans()
    assert code == 130, run.output
    assert seconds < 1.0
    assert "stopping now" in run.output
    temporary = working_tree_is_whole(sandbox.worker)
    # the next start recovers whatever was left and finishes the batch, once each
    again = start_worker(sandbox.worker, logs, "--once")
    assert again.wait(timeout=60) == 0, again.output
    prove_once_each(prove_history(sandbox.remote, "main"), "hero", slugs_of(IMAGES))
    prove_clean_and_pushed(sandbox)
    figures.update({"seconds to exit after the second Ctrl+C (a push hanging)": round(seconds, 3), "exit code": code,
                    "temporary files left (ignored by git, removed at the next start)": temporary})
