"""Kill the worker at any moment, again and again: the batch ends rendered once, nothing lost.

The worker is a real process rendering a batch (placeholder backend) into a
clone of a bare remote, while the person keeps pushing ledger lines.  It is
killed with SIGKILL (whole process group, or the worker alone with its git
command left to finish) at random moments, and at the narrow moments the
test-only crash points of ``win_side.faults`` reach: during a render, between
the PNG and its record, with files staged, while ``git commit``, ``git push``
or ``git rebase`` runs, just after a push landed.  After every kill it is
restarted (continuous or ``--once``).  At the end the whole history is
proven: one render commit per slug, every committed PNG complete, decodable
and matching its record, the remote equal to the worker's branch, and every
ledger line the person pushed still there.

CI runs 10 images and 12 kills; ``RENDERLOOP_FULL=1`` runs 30 images and 30 kills.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tests.helpers import Sandbox
from tests.reliability.harness import (
    FULL,
    POSIX,
    batch_yaml,
    commit_and_push,
    isolate_remote_server,
    ledger_line,
    leftovers,
    plain_clone,
    prove_clean_and_pushed,
    prove_history,
    prove_once_each,
    rng,
    slugs_of,
    start_worker,
)

pytestmark = pytest.mark.skipif(not POSIX, reason="SIGKILL of a process group is POSIX")

# (crash point, what it means); "+S" kills S seconds after the point, while the next step runs.
CRASH_POINTS = [
    ("render:1+0.15", "during a render"),
    ("rendered:1", "render finished, nothing written"),
    ("after-png:1", "between writing the PNG and its record"),
    ("after-record:1", "PNG and record written, not staged"),
    ("commit:1", "files staged, before git commit"),
    ("commit:1+0.004", "while git commit runs"),
    ("after-commit:1", "committed, before the push was asked for"),
    ("push:1+0.01", "while git push runs"),
    ("after-push:1", "pushed, before the worker knew"),
    ("rebase:1+0.008", "while git rebase runs"),
]


def kill_plan(images: int) -> list[str | None]:
    """Crash points (each once in CI, twice in full), with random kills between them."""
    if FULL:
        return [p for point, _ in CRASH_POINTS for p in (point, None)] + [p for p, _ in CRASH_POINTS]
    return [p for point, _ in CRASH_POINTS[:8] for p in (point,)] + [None, "rebase:1+0.008", None, None]


def test_kill_storm(sandbox: Sandbox, figures: dict[str, Any]) -> None:
    images = 30 if FULL else 10
    seconds = 0.6 if FULL else 0.4
    random = rng()
    isolate_remote_server(sandbox.worker)
    logs = sandbox.root / "logs"
    slugs = slugs_of(images)
    laptop = plain_clone(sandbox, "laptop")  # the person's clone; hooks off, for speed
    commit_and_push(laptop, {"batches/storm.yaml": batch_yaml(images)}, "batch storm")
    person: list[str] = []  # ledger lines the person pushed
    kills: Counter[str] = Counter()
    hit: Counter[str] = Counter()
    started = time.monotonic()
    plan = kill_plan(images)

    def person_pushes() -> None:
        line = ledger_line("earlier", f"note-{len(person) + 1}")
        commit_and_push(laptop, {"ledger.jsonl": line}, f"review: note {len(person) + 1}", append=True)
        person.append(line)

    for fault in plan:
        once = random.random() < 0.3
        if fault and fault.startswith("rebase") or random.random() < 0.25:
            person_pushes()  # the remote moves: the worker fetches and rebases on start
        run = start_worker(sandbox.worker, logs, *(["--once"] if once else ["--poll", "0.3"]),
                           fault=fault, seconds=seconds)
        run.wait_started(sandbox.worker)
        if fault is None:
            time.sleep(random.uniform(0.05, 1.0))
            if random.random() < 0.3:
                person_pushes()
            if not run.alive():  # only a --once run may end by itself, and only well
                assert once and run.proc.returncode == 0, run.output
                kills["--once ended before the random kill, exited 0"] += 1
                continue
            whole_group = random.random() < 0.5
            run.kill(whole_group=whole_group)
            kills["random SIGKILL, " + ("process group" if whole_group else "worker only")] += 1
        else:
            code = run.wait(timeout=8)
            if code is None:  # the crash point was not reached in time: kill it anyway
                run.kill()
                kills[f"{fault} not reached, random SIGKILL"] += 1
            else:
                run.wait_orphans()
                reached = "RENDERLOOP_FAULT: killed at" in run.output
                assert reached or code == 0, run.output
                kills[fault if reached else f"{fault} not reached, exited {code}"] += 1
                if not reached:
                    continue  # not a kill
        hit.update(leftovers(sandbox))

    total_kills = sum(n for kind, n in kills.items() if "exited" not in kind)
    final = start_worker(sandbox.worker, logs, "--once", seconds=0)
    assert final.wait(timeout=120) == 0, final.output
    elapsed = time.monotonic() - started

    history = prove_history(sandbox.remote, "main")
    prove_once_each(history, "storm", slugs)
    prove_clean_and_pushed(sandbox)
    ledger = (sandbox.worker / "ledger.jsonl").read_text(encoding="utf-8")
    assert all(line in ledger for line in person), "a ledger line the person pushed was lost"
    assert ledger.count("\n") == len(person)
    assert total_kills >= (20 if FULL else 8)

    figures.update({
        "images": images,
        "kills survived": total_kills,
        "kills by moment": dict(sorted(kills.items())),
        "what the kills left behind (then recovered)": dict(sorted(hit.items())),
        "person's pushes during the storm": len(person),
        "commits proven (every tree walked)": history.commits,
        "PNGs decoded and matched to their record": history.pngs_checked,
        "render commits per slug": sorted(set(history.render_commits.values())),
        "lost": "nothing",
        "seconds": round(elapsed, 1),
        "seed": random.seed_value,  # type: ignore[attr-defined]
    })
