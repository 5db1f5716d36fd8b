"""The person and the worker push at the same moment, many times: nothing lost, no conflict.

A ``pre-receive`` hook on the bare remote (``RaceReferee``) makes every race
real: it holds one side's push after its objects arrived, lets the other
side's push land, then lets the held one go on to its ref update, which
fails as a lost race does.  The loser alternates: the worker must fetch,
rebase and push again (never force); the person pulls and pushes again.

CI runs 30 races between the person and the worker and 30 between two
people; ``RENDERLOOP_FULL=1`` runs 100 and 100.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from studio.ledger import parse
from tests.helpers import Sandbox, cli, git
from tests.reliability.harness import (
    FULL,
    POSIX,
    STAGED_BEFORE_PULL,
    RaceReferee,
    WorkerRun,
    batch_yaml,
    commit_and_push,
    ledger_line,
    plain_clone,
    prove_clean_and_pushed,
    prove_history,
    prove_once_each,
    push_counting,
    renders_in,
    slugs_of,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.skipif(not POSIX, reason="the referee is a shell hook; the worker is stopped with SIGINT")

RACES = 100 if FULL else 30


def append_line(clone: Path, line: str, message: str) -> None:
    with open(clone / "ledger.jsonl", "a", encoding="utf-8", newline="\n") as ledger:
        ledger.write(line)
    git(clone, "commit", "-q", "--no-verify", "-m", message, "--", "ledger.jsonl")


def remote_head(sandbox: Sandbox) -> str:
    return git(sandbox.remote, "rev-parse", "main").stdout.strip()


def worker_pushed_since(sandbox: Sandbox, before: str) -> bool:
    head = remote_head(sandbox)
    return head != before and git(sandbox.remote, "log", "-1", "--format=%ce", head).stdout.startswith("worker@")


class Dispatcher:
    """A script on a third machine that keeps the worker busy: a race needs a worker about to push.

    Whenever fewer than ``low`` images wait, it adds prompts to its own batch and pushes them.
    """

    def __init__(self, sandbox: Sandbox, elsewhere: Callable[[], int] = lambda: 0, images: int = 4) -> None:
        self.sandbox = sandbox
        self.clone = plain_clone(sandbox, "dispatcher")
        git(self.clone, "config", "user.email", "dispatcher@example.com")
        self.elsewhere = elsewhere  # images dispatched in other batches
        self.images = images
        self.text = batch_yaml(images)
        self.pushed = [commit_and_push(self.clone, {"batches/backlog.yaml": self.text}, "batch backlog")]

    def keep_busy(self, low: int = 2, more: int = 4) -> None:
        if self.images + self.elsewhere() - renders_in(self.sandbox.worker) >= low:
            return
        self.text += more_prompts(self.images, more)
        self.images += more
        self.pushed.append(commit_and_push(self.clone, {"batches/backlog.yaml": self.text}, f"{more} more images"))


def more_prompts(first: int, count: int) -> str:
    return "".join(f'  - slug: image-{n:02d}\n    prompt: "test image {n}"\n' for n in range(first + 1, first + count + 1))


def race(sandbox: Sandbox, referee: RaceReferee, clone: Path, loser: str, busy: Dispatcher,
         rebase: bool = True) -> tuple[str, int]:
    """Push ``clone``'s commits at the same moment as the worker pushes; ``loser`` loses the race.

    Returns the person's commit as it landed and how often their push was rejected.
    """
    referee.hold(loser)
    if loser == "worker":  # held after its objects arrived; the person's push lands meanwhile
        referee.wait_held("worker", meanwhile=busy.keep_busy)
        landed = push_counting(clone, rebase=rebase)  # (a pull first if the worker pushed just before)
        referee.release()
        return landed
    before = remote_head(sandbox)
    landed = push_in_background(clone, rebase)
    referee.wait_held(loser)
    wait_for(lambda: worker_pushed_since(sandbox, before) or busy.keep_busy(), 30, "the worker's push to land")
    referee.release()
    sha, rejections = landed()
    assert rejections >= 1, "the person's push should have lost the race"
    return sha, rejections


def push_in_background(clone: Path, rebase: bool) -> Callable[[], tuple[str, int]]:
    """Start ``push_counting`` in a thread; the returned function waits for its result."""
    result: list[tuple[str, int]] = []
    pusher = threading.Thread(target=lambda: result.append(push_counting(clone, rebase=rebase)))
    pusher.start()

    def landed() -> tuple[str, int]:
        pusher.join(timeout=60)
        assert result, f"the push from {clone.name} did not finish"
        return result[0]

    return landed


def finish(sandbox: Sandbox, run: WorkerRun, images: int) -> str:
    """Wait for every image to be pushed, stop the worker with Ctrl+C; its output."""
    wait_for(lambda: renders_in(sandbox.remote, "main") == images
             and remote_head(sandbox) == git(sandbox.worker, "rev-parse", "HEAD").stdout.strip(),
             120, "every image rendered and pushed")
    run.signal(signal.SIGINT)
    assert run.wait(timeout=30) == 0, run.output
    return run.output


def test_person_and_worker_push_at_the_same_moment(sandbox: Sandbox, figures: dict[str, Any]) -> None:
    laptop = plain_clone(sandbox, "laptop")  # the person's clone (hooks off: many commits in seconds)
    busy = Dispatcher(sandbox)
    referee = RaceReferee(sandbox.remote, sandbox.root / "referee")
    run = start_worker(sandbox.worker, sandbox.root / "logs", "--poll", "0.3", "--window", "1", seconds=0.25)
    person_lines: list[str] = []
    person_commits: list[str] = []
    lost = {"worker": 0, "ana": 0}
    try:
        for i in range(RACES):
            line = ledger_line("race", f"verdict-{i:03d}")
            append_line(laptop, line, f"review: verdict {i}")
            loser = "worker" if i % 2 == 0 else "ana"
            person_commits.append(race(sandbox, referee, laptop, loser, busy)[0])
            person_lines.append(line)
            lost[loser] += 1
        output = finish(sandbox, run, busy.images)
    finally:
        run.stop()
    worker_rejections = output.count("push rejected")
    assert worker_rejections >= lost["worker"]
    assert "cannot rebase" not in output and "conflict" not in output.lower()
    # nothing lost: every person commit (as pushed) is in the history, every render once
    for sha in person_commits + busy.pushed:
        assert git(sandbox.remote, "merge-base", "--is-ancestor", sha, "main", check=False).returncode == 0
    prove_once_each(prove_history(sandbox.remote, "main"), "backlog", slugs_of(busy.images))
    prove_clean_and_pushed(sandbox)
    ledger = (sandbox.worker / "ledger.jsonl").read_bytes()
    assert [line.to_line() for line in parse(ledger)] == person_lines
    verify = cli("ledger", "verify", "--repo", str(sandbox.worker))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    figures.update({
        "races": RACES,
        "races the worker lost (fetched, rebased, pushed again)": lost["worker"],
        "races the person lost (pulled --rebase, pushed again)": lost["ana"],
        "worker push rejections logged": worker_rejections,
        "render commits": busy.images,
        "person commits kept": len(person_commits), "dispatcher commits kept": len(busy.pushed),
        "ledger lines kept": len(person_lines),
        "lost": "nothing", "conflicts": 0,
    })


def test_two_people_append_to_the_ledger_at_the_same_moment(sandbox: Sandbox, figures: dict[str, Any]) -> None:
    """``ledger.jsonl merge=union``: both appends survive a pull --rebase and a pull (merge) alike."""
    ana = plain_clone(sandbox, "ana")
    ben = plain_clone(sandbox, "ben")
    git(ben, "config", "user.name", "Ben Tester")
    git(ben, "config", "user.email", "ben@example.com")
    referee = RaceReferee(sandbox.remote, sandbox.root / "referee")
    written: list[str] = []
    merges = rebases = 0
    for i in range(RACES):
        first, second = (ana, ben) if i % 2 == 0 else (ben, ana)
        loser = "ana" if first is ana else "ben"
        line_a = ledger_line("essays", f"slug-{i:03d}", "keep", reviewer=loser)
        line_b = ledger_line("essays", f"slug-{i:03d}", "reroll", reviewer="other")
        append_line(first, line_a, f"review {i}")
        append_line(second, line_b, f"review {i}")
        referee.hold(loser)
        rebase = i % 4 < 2
        landed = push_in_background(first, rebase)
        referee.wait_held(loser)
        push_counting(second)
        referee.release()
        assert landed()[1] >= 1, "the held push should have lost the race"
        rebases, merges = rebases + rebase, merges + (not rebase)
        written += [line_a, line_b]
        for clone in (ana, ben):  # both start the next race up to date
            git(clone, "pull", "-q", "--rebase", "origin", "main")
    ledger = git(sandbox.remote, "show", "main:ledger.jsonl").stdout
    lines = ledger.splitlines(keepends=True)
    assert sorted(lines) == sorted(written), "a ledger line was lost or doubled"
    assert "<<<<<<<" not in ledger
    parse(ledger.encode())
    verify = cli("ledger", "verify", "--repo", str(ana))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    figures.update({
        "races": RACES, "settled by pull --rebase": rebases, "settled by pull (merge)": merges,
        "ledger lines written": len(written), "ledger lines kept": len(lines), "conflicts": 0, "lost": "nothing",
    })


def type_verdict(review: Path, verdict: str) -> str | None:
    """Type ``verdict`` under the first image of the review still without one; its slug, or None."""
    text = review.read_text(encoding="utf-8")
    head, *sections = text.split("\n## ")
    for number, section in enumerate(sections):
        if "\nverdict:\ncues:" in section:
            sections[number] = section.replace("\nverdict:\ncues:", f"\nverdict: {verdict}\ncues:\n- warmer palette", 1)
            review.write_text("\n## ".join([head, *sections]), encoding="utf-8", newline="\n")
            return section.split("\n", 1)[0].strip()
    return None


def pull_and_type(clone: Path, review: Path, verdict: str) -> str | None:
    """Pull (the post-merge hook writes the review) and type ``verdict`` for an image without one."""
    pulled = git(clone, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main", check=False)
    assert pulled.returncode == 0, f"pull failed in {clone}: {pulled.stdout}{pulled.stderr}"
    return type_verdict(review, verdict) if review.exists() else None


def test_reviews_through_the_real_hooks_race_the_worker(sandbox: Sandbox, figures: dict[str, Any]) -> None:
    """The person's loop for real: pull (the post-merge hook writes the review), type a verdict and
    dispatch two more images, commit (the pre-commit hook appends the ledger line), push, racing the worker."""
    races = 20 if FULL else 2
    staged_before = len(STAGED_BEFORE_PULL)
    mac = sandbox.mac  # hooks enabled
    loop = {"images": 3, "text": batch_yaml(3)}
    pushed = [commit_and_push(mac, {"batches/loop.yaml": loop["text"]}, "batch loop", verify=True)]
    busy = Dispatcher(sandbox, elsewhere=lambda: loop["images"], images=2)
    referee = RaceReferee(sandbox.remote, sandbox.root / "referee")
    run = start_worker(sandbox.worker, sandbox.root / "logs", "--poll", "0.3", "--window", "1", seconds=0.5)
    review = mac / "renders/loop/review.md"
    judged: list[tuple[str, str]] = []
    try:
        for i in range(races):
            verdict = ("keep", "reroll", "reject")[i % 3]
            slug = wait_for(lambda v=verdict: pull_and_type(mac, review, v), 30, "an image to review", interval=0.2)
            loop["text"] += more_prompts(loop["images"], 2)  # counted once pushed (the dispatcher reads it)
            (mac / "batches/loop.yaml").write_text(loop["text"], encoding="utf-8", newline="\n")
            git(mac, "add", "renders/loop/review.md", "batches/loop.yaml")
            committed = git(mac, "commit", "-q", "-m", f"review {slug}, two more images", check=False)
            assert committed.returncode == 0, committed.stderr
            assert "recorded 1 verdict" in committed.stdout + committed.stderr
            judged.append((slug, verdict))
            pushed.append(race(sandbox, referee, mac, "worker" if i % 2 == 0 else "ana", busy, rebase=False)[0])
            loop["images"] += 2
        output = finish(sandbox, run, loop["images"] + busy.images)
    finally:
        run.stop()
    assert "cannot rebase" not in output
    for sha in pushed + busy.pushed:
        assert git(sandbox.remote, "merge-base", "--is-ancestor", sha, "main", check=False).returncode == 0
    history = prove_history(sandbox.remote, "main")
    prove_once_each(history, "loop", slugs_of(loop["images"]))
    prove_once_each(history, "backlog", slugs_of(busy.images))
    prove_clean_and_pushed(sandbox)
    lines = parse(git(sandbox.remote, "show", "main:ledger.jsonl").stdout.encode())
    assert [(line.slug, line.verdict) for line in lines] == judged
    verify = cli("ledger", "verify", "--repo", str(sandbox.worker))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    figures.update({"races": races, "reviews committed through the pre-commit hook": len(judged),
                    "images dispatched while racing": loop["images"] + busy.images, "ledger lines kept": len(lines),
                    "pulls refused over a review the hook had staged (committed first)":
                        len(STAGED_BEFORE_PULL) - staged_before,
                    "lost": "nothing"})
