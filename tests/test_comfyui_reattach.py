"""Issue 11: re-attach, never repeat. A worker killed with prompts queued on ComfyUI takes their images
when it starts again (no second execution) and withdraws the ones no longer wanted."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio.record import RenderRecord
from tests.comfyui_server import ComfyServer
from tests.comfyui_server.fixtures import capture, wait_for
from tests.helpers import Sandbox, cli, git
from win_side.backends.comfyui.reattach import survey, tag_of

IMAGES = 5


def ours(item: list, slug: str, spec_hash: str = "sha256:aa") -> list:
    """A captured queue item as renderloop submits it: the renderloop tag in extra_pnginfo."""
    item = copy.deepcopy(item)
    item[3]["extra_pnginfo"] = {"renderloop": {"batch": "b1", "slug": slug, "spec_hash": spec_hash, "spec": {}}}
    return item


def test_survey_sorts_the_captured_queue_and_history() -> None:
    queue = capture("queue_busy_delete_interrupt.json")["get_queue_busy"]["response"]["json"]
    running, pending = queue["queue_running"][0], queue["queue_pending"]
    history = capture("queue_busy_delete_interrupt.json")["history_c"]["response"]["json"]
    (done_id, done), = history.items()
    assert tag_of(running) is None and all(tag_of(item) is None for item in pending)  # not ours: left alone
    answer = {"queue_running": [ours(running, "wanted-running")],
              "queue_pending": [ours(pending[0], "stale", "sha256:old"), ours(pending[1], "wanted-pending"), *pending]}
    done = dict(done, prompt=ours(done["prompt"], "finished"))
    wanted = {("b1", "wanted-running"): "sha256:aa", ("b1", "wanted-pending"): "sha256:aa",
              ("b1", "stale"): "sha256:new", ("b1", "finished"): "sha256:aa"}
    found = survey(answer, {done_id: done}, wanted, inflight=set())
    assert found.held == {("b1", "wanted-running"): running[1], ("b1", "wanted-pending"): pending[1][1],
                          ("b1", "finished"): done_id}
    assert found.delete == [pending[0][1]] and found.interrupt == []
    assert survey(answer, {}, {}, inflight={running[1]}).interrupt == []  # a prompt this process waits on


def batch(reroll: str = "") -> str:
    lines = ["version: 1", "model: z-image-turbo", "width: 512", "height: 384", "prompts:"]
    for index in range(IMAGES):
        seed = 999 if f"img-{index}" == reroll else index + 1
        lines += [f"  - slug: img-{index}", f'    prompt: "image {index}"', f"    seed: {seed}"]
    return "\n".join(lines) + "\n"


def push_batch(sandbox: Sandbox, text: str) -> None:
    sandbox.write("batches/b1.yaml", text)
    git(sandbox.mac, "add", "batches/b1.yaml")
    git(sandbox.mac, "commit", "-q", "--no-verify", "-m", "batch b1")
    git(sandbox.mac, "pull", "-q", "--rebase")  # the killed worker may have pushed (its capability file)
    git(sandbox.mac, "push", "-q")


def worker_args(sandbox: Sandbox, server: ComfyServer) -> list[str]:
    return ["worker", "--repo", str(sandbox.worker), "--backend", "comfyui", "--comfyui", server.url,
            "--once", "--window", "3", "--name", "studio-pc"]


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_a_killed_worker_restarted_causes_no_extra_execution(sandbox: Sandbox, tmp_path: Path) -> None:
    push_batch(sandbox, batch())
    with ComfyServer(tmp_path / "comfyui", render_seconds=1.0, previews=False) as server:
        proc = subprocess.Popen([sys.executable, "-m", "renderloop", *worker_args(sandbox, server)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: server.posted_prompts() >= 3 and server.engine.running is not None, timeout=60,
                     what="three prompts on the server")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert server.engine.queue_remaining() >= 2  # N prompts orphaned on the server (one of them running)
        restarted = cli(*worker_args(sandbox, server), timeout=120)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        executed = [t.prompt_id for t in server.timeline]
        posted = server.posted_prompts()
    assert "re-attached" in restarted.stderr
    assert len(executed) == IMAGES and len(set(executed)) == IMAGES  # 0 extra executions
    assert posted == IMAGES  # the orphans were not submitted again
    for index in range(IMAGES):
        record = RenderRecord.model_validate_json((sandbox.worker / f"renders/b1/img-{index}.json").read_bytes())
        assert record.status == "done" and record.backend_ids["prompt_id"] in executed


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_a_queued_prompt_no_longer_wanted_is_deleted_not_executed(sandbox: Sandbox, tmp_path: Path) -> None:
    push_batch(sandbox, batch())
    with ComfyServer(tmp_path / "comfyui", render_seconds=1.0, previews=False) as server:
        proc = subprocess.Popen([sys.executable, "-m", "renderloop",
                                 *[a if a != "3" else str(IMAGES) for a in worker_args(sandbox, server)]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: server.posted_prompts() >= IMAGES, timeout=60, what="every prompt on the server")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        _, pending = server.engine.queue_lists()
        last = max(pending, key=lambda item: item[0])  # the last to run
        stale, slug = last[1], last[3]["extra_pnginfo"]["renderloop"]["slug"]
        push_batch(sandbox, batch(reroll=slug))  # the person rerolls that image meanwhile
        git(sandbox.worker, "pull", "-q", "--rebase")
        restarted = cli(*worker_args(sandbox, server), timeout=120)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        executed = [t.prompt_id for t in server.timeline]
    assert stale not in executed  # deleted from the queue before it ran
    assert len(executed) == IMAGES and len(set(executed)) == IMAGES
    record = RenderRecord.model_validate_json((sandbox.worker / f"renders/b1/{slug}.json").read_bytes())
    assert record.spec.seed == 999 and record.backend_ids["prompt_id"] in executed
