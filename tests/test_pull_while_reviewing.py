"""Pulling again while a review is open (staged by the hook, verdicts half typed)."""
from __future__ import annotations

import re
import time

import pytest

from tests.helpers import Sandbox, cli, git

ONE = "version: 1\nmodel: flux-schnell\nwidth: 256\nheight: 256\nprompts:\n  - slug: a\n    prompt: a\n  - slug: b\n    prompt: b\n"


def batch(slug: str) -> str:
    return f"version: 1\nmodel: flux-schnell\nwidth: 256\nheight: 256\nprompts:\n  - slug: {slug}\n    prompt: {slug}\n"


def render(sandbox: Sandbox) -> None:
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("mode", ["--no-rebase", "--rebase"])
def test_a_pull_that_must_merge_keeps_the_open_review(sandbox: Sandbox, mode: str) -> None:
    assert git(sandbox.mac, "config", "rebase.autoStash").stdout.strip() == "true"
    sandbox.write("batches/one.yaml", ONE)
    git(sandbox.mac, "add", "batches")
    git(sandbox.mac, "commit", "-q", "-m", "one")
    git(sandbox.mac, "push", "-q")
    render(sandbox)
    git(sandbox.mac, "pull", "-q")
    review = sandbox.mac / "renders/one/review.md"
    assert "A  renders/one/review.md" in git(sandbox.mac, "status", "--short").stdout
    review.write_text(re.sub(r"(?m)^verdict:", "verdict: keep", review.read_text(), count=1), encoding="utf-8")
    # a local commit of only a new batch: the review stays staged and edited
    sandbox.write("batches/two.yaml", batch("c"))
    git(sandbox.mac, "add", "batches/two.yaml")
    git(sandbox.mac, "commit", "-q", "-m", "two", "batches/two.yaml")
    # meanwhile someone else's batch is rendered and pushed
    sandbox.write("batches/three.yaml", batch("d"), where=sandbox.worker)
    git(sandbox.worker, "add", "batches")
    git(sandbox.worker, "commit", "-q", "-m", "three")
    render(sandbox)
    pulled = git(sandbox.mac, "pull", mode, check=False)
    assert pulled.returncode == 0, pulled.stderr
    assert re.search(r"(?m)^verdict: keep$", review.read_text())
    # git puts the open review back after its hooks ran: the new review follows at once after
    deadline = time.monotonic() + 20
    while not (sandbox.mac / "renders/three/review.md").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (sandbox.mac / "renders/three/review.md").is_file()
    assert git(sandbox.mac, "diff", "--name-only", "--diff-filter=U").stdout == ""
    # and the review then commits with its verdict into the ledger
    git(sandbox.mac, "commit", "-q", "-am", "review")
    assert '"verdict": "keep"' in (sandbox.mac / "ledger.jsonl").read_text()
