"""The ledger: appending, the append-only guard, folding verdicts, and `renderloop ledger verify` on real git."""
from __future__ import annotations

import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mac_side.init import init
from mac_side.ledger import fold
from mac_side.review import parse
from studio.batch import load_batch_bytes
from studio.config import builtin_config
from studio.errors import InvalidFile
from studio.ledger import Ledger, LedgerLine, append, guard, latest_by_slug, new_id
from studio.record import RenderRecord
from tests.helpers import BATCH_YAML, cli, git, type_into

AT = datetime(2026, 11, 27, 8, 15, 2, tzinfo=timezone.utc)


def line(slug: str = "harbor-at-dawn", verdict: str = "keep", n: int = 0, **extra) -> LedgerLine:
    return LedgerLine(id=new_id(), at=AT, batch="hero", slug=slug, verdict=verdict, seed=n, **extra)


def raw(*lines: LedgerLine) -> bytes:
    return "".join(l.to_line() for l in lines).encode()


# ---------------------------------------------------------------- append and guard


def test_append_adds_at_the_end_without_rewriting_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    first = raw(line(n=1))
    path.write_bytes(first)
    inode = path.stat().st_ino
    append(path, [line(n=2), line(n=3)])
    data = path.read_bytes()
    assert data.startswith(first) and data.count(b"\n") == 3
    assert path.stat().st_ino == inode  # the same file, appended to: not replaced
    append(path, [])
    assert path.read_bytes() == data


def test_append_refuses_a_ledger_whose_last_line_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(raw(line())[:-5])
    with pytest.raises(Exception, match="looks truncated"):
        append(path, [line()])


def _ledger3() -> tuple[bytes, list[bytes]]:
    data = raw(line(n=1), line(n=2), line(n=3))
    return data, data.splitlines(keepends=True)


@pytest.mark.parametrize(
    ("name", "message", "number"),
    [
        ("changed", "existing ledger line was changed, removed or reordered", 2),
        ("removed", "existing ledger line was changed, removed or reordered", 2),
        ("reordered", "existing ledger line was changed, removed or reordered", 1),
        ("truncated", "existing ledger line was truncated or extended", 3),
        ("emptied", "existing ledger line was removed", 1),
        ("dropped last", "existing ledger line was removed", 3),
        ("invalid JSON appended", "not a valid ledger line", 4),
        ("unknown verdict appended", "not a valid ledger line: verdict", 4),
        ("blank line appended", "blank line in the ledger", 4),
        ("CRLF appended", "CRLF line end", 4),
        ("unterminated line appended", "last line is not terminated by a newline", 4),
    ],
)
def test_guard_refuses_every_change_that_is_not_an_append(name: str, message: str, number: int) -> None:
    old, (a, b, c) = _ledger3()
    new = {
        "changed": a + b.replace(b'"keep"', b'"reject"') + c,
        "removed": a + c,
        "reordered": b + a + c,
        "truncated": a + b + c[:40],
        "emptied": b"",
        "dropped last": a + b,
        "invalid JSON appended": old + b"{not json\n",
        "unknown verdict appended": old + line().to_line().replace('"keep"', '"meh"').encode(),
        "blank line appended": old + b"\n",
        "CRLF appended": old + line().to_line().encode().replace(b"\n", b"\r\n"),
        "unterminated line appended": old + line().to_line().encode().rstrip(b"\n"),
    }[name]
    problems = guard(old, new, "ledger.jsonl")
    assert problems, name
    assert problems[0].path == "ledger.jsonl" and problems[0].line == number, problems
    assert message in problems[0].message


def test_guard_accepts_valid_appends() -> None:
    old, _ = _ledger3()
    assert guard(old, old + raw(line(n=4), line("night-train", "reroll", cues=["no bridge"]))) == []
    assert guard(b"", raw(line())) == [] and guard(old, old) == []


# ---------------------------------------------------------------- folding a review


def _review_with(typed: dict[str, str]):
    from mac_side.review import render

    batch = load_batch_bytes(BATCH_YAML.encode(), "batches/hero.yaml", builtin_config())
    records = {
        job.slug: RenderRecord(batch="hero", slug=job.slug, status="done", spec=job.spec, spec_hash=job.spec_hash,
                               backend="placeholder", worker="w", png_sha256="ab" * 32)
        for job in batch.jobs
    }
    text = render(batch, records, None, lambda *a: False, lambda job: True)
    for slug, verdict in typed.items():
        text = type_into(text, slug, verdict)
    return batch, records, parse(text, "renders/hero/review.md")


def test_fold_makes_one_line_per_new_or_changed_verdict() -> None:
    batch, records, review = _review_with({
        "harbor-at-dawn": "verdict: reroll\ncues:\n- warmer palette",
        "night-train": "verdict: keep\ncues:",
        "feedback-ledger-taxonomy": "verdict:\ncues:\n- later",
    })
    result = fold(review, "hero", batch, records.get, Ledger([]), "Ana")
    assert result.problems == []
    assert [(l.slug, l.verdict, l.cues, l.archetype, l.reviewer) for l in result.lines] == [
        ("harbor-at-dawn", "reroll", ["warmer palette"], "essay", "Ana"),
        ("night-train", "keep", [], None, "Ana"),
    ]
    assert result.lines[0].spec_hash == records["harbor-at-dawn"].spec_hash
    assert result.notes and "cues but no verdict" in result.notes[0]
    # already in the ledger: nothing new; a changed verdict or cue list: a new line
    again = fold(review, "hero", batch, records.get, Ledger(result.lines), "Ana")
    assert again.lines == []
    _, _, changed = _review_with({
        "harbor-at-dawn": "verdict: reroll\ncues:\n- warmer palette\n- no text",
        "night-train": "verdict: keep\ncues:",
    })
    third = fold(changed, "hero", batch, records.get, Ledger(result.lines), "Ana")
    assert [(l.slug, l.cues) for l in third.lines] == [("harbor-at-dawn", ["warmer palette", "no text"])]


def test_fold_without_a_batch_file_names_every_section() -> None:
    _, records, review = _review_with({"night-train": "verdict: keep\ncues:"})
    result = fold(review, "hero", None, records.get, Ledger([]), None)
    assert result.lines == []
    assert [p.message for p in result.problems][0] == "'harbor-at-dawn' is not a slug in batch 'hero' (it has no batch file)"


def test_a_lenient_read_keeps_every_good_line_of_a_ledger_with_bad_lines() -> None:
    good = line(spec_hash="sha256:x")
    crlf = raw(line("night-train", "reroll", n=2, spec_hash="sha256:y")).replace(b"\n", b"\r\n")
    data = raw(good) + b"{broken\n" + crlf
    ledger = Ledger.lenient(data)
    assert ledger.holds("hero", "harbor-at-dawn", "sha256:x", "keep", [])
    assert not ledger.holds("hero", "harbor-at-dawn", "sha256:x", "reject", [])
    assert ledger.holds("hero", "night-train", "sha256:y", "reroll", [])  # a CRLF line: a problem, not lost
    assert [(p.line, p.message.split(":")[0]) for p in ledger.problems] == [
        (2, "not a valid ledger line"), (3, "CRLF line end")
    ]
    with pytest.raises(InvalidFile) as strict:  # the same problems, strictly
        Ledger.parse(data)
    assert strict.value.problems == ledger.problems


def test_the_verdict_in_force_is_the_latest_line_of_each_batch_and_slug() -> None:
    first = line(verdict="reroll", n=1)
    other_batch = line(verdict="keep", n=2).model_copy(update={"batch": "hero-2"})
    train = line("night-train", "keep", n=3)
    second = line(verdict="reject", n=4)
    ledger = Ledger([first, other_batch, train, second])
    in_force = ledger.in_force()
    assert in_force == {("hero-2", "harbor-at-dawn"): other_batch, ("hero", "night-train"): train,
                        ("hero", "harbor-at-dawn"): second}
    assert list(in_force) == [("hero-2", "harbor-at-dawn"), ("hero", "night-train"), ("hero", "harbor-at-dawn")]
    # a slug judged in two batches: the latest verdict in force wins, and a filter applies before it
    assert latest_by_slug(in_force.values())["harbor-at-dawn"] == second
    kept = latest_by_slug(l for l in in_force.values() if l.verdict == "keep")
    assert kept == {"harbor-at-dawn": other_batch, "night-train": train}


def test_reading_a_ledger_with_bad_lines_logs_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ledger.jsonl"
    assert Ledger.read(path) == Ledger()
    path.write_bytes(raw(line()) + b"{broken\n\n")
    with caplog.at_level("WARNING", logger="renderloop.ledger"):
        ledger = Ledger.read(path)
    assert len(ledger.lines) == 1
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("ledger.jsonl:2: not a valid ledger line: ")
    assert message.endswith(" (and 1 more); such lines are left out")


def test_a_read_for_some_batches_validates_and_returns_only_their_lines(tmp_path: Path) -> None:
    """A review of one batch reads its own verdicts in force, not one line per image of the studio."""
    path = tmp_path / "ledger.jsonl"
    other = line("far").model_copy(update={"batch": "other"})
    path.write_bytes(raw(line("a", "reroll"), other, line("a", "keep"), line("b")) + b'{"batch": "other", "slug": 1}\n')
    whole = Ledger.read(path, quiet=True)
    assert [(l.batch, l.slug, l.verdict) for l in whole.lines] == [("other", "far", "keep"), ("hero", "a", "keep"),
                                                                   ("hero", "b", "keep")]
    hero = Ledger.read(path, quiet=True, batches={"hero"})
    assert [(l.slug, l.verdict) for l in hero.lines] == [("a", "keep"), ("b", "keep")]
    assert Ledger.read(path, quiet=True, batches={"nothing"}).lines == []


# ---------------------------------------------------------------- renderloop ledger verify


@pytest.fixture
def studio(tmp_path: Path) -> Path:
    root = tmp_path / "studio"
    init(root)
    return root


def commit_ledger(repo: Path, data: bytes, message: str) -> str:
    (repo / "ledger.jsonl").write_bytes(data)
    git(repo, "add", "ledger.jsonl")
    git(repo, "commit", "-q", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "--short", "HEAD").stdout.strip()


def verify(repo: Path) -> subprocess.CompletedProcess[str]:
    return cli("ledger", "verify", "--repo", str(repo))


def test_verify_a_clean_history(studio: Path) -> None:
    data = b""
    for n in range(3):
        data += raw(line(n=n))
        commit_ledger(studio, data, f"review {n}")
    result = verify(studio)
    assert result.returncode == 0
    assert result.stdout.startswith("ledger.jsonl: 4 commits, 3 lines, no line ever changed or removed")


def test_verify_names_each_commit_and_line_that_broke_the_ledger(studio: Path) -> None:
    a, b, c = line(n=1), line(n=2), line(n=3)
    commit_ledger(studio, raw(a, b, c), "three verdicts")
    edited = raw(a).decode() + b.to_line().replace('"keep"', '"reject"') + c.to_line()
    changed = commit_ledger(studio, edited.encode(), "fix a verdict by hand")
    removed = commit_ledger(studio, raw(a), "drop two lines")
    bad = commit_ledger(studio, raw(a) + b'{"id": "x"}\n', "append garbage")
    result = verify(studio)
    assert result.returncode == 1
    out = result.stdout.splitlines()
    assert out[0].startswith(f'{changed} "fix a verdict by hand": ledger.jsonl:2: line 2 of the ledger in ')
    assert "was changed or removed: " in out[0] and b.id in out[0]
    assert out[1].startswith(f'{removed} "drop two lines": ledger.jsonl:2: ')
    assert out[2].startswith(f'{removed} "drop two lines": ledger.jsonl:3: ')
    assert out[3].startswith(f'{bad} "append garbage": ledger.jsonl:2: not a valid ledger line')
    assert out[-2] == "ledger.jsonl: 4 problem(s) in 3 of 5 commits"
    assert out[-1].startswith("Undo them (`git revert COMMIT`, or re-add the lines), then record that in git: "
                              "renderloop ledger acknowledge ")


def test_verify_catches_a_same_size_edit_buried_under_later_appends(studio: Path) -> None:
    """An edit that keeps the ledger's size (reroll -> reject) is caught by content, not by size."""
    a, b = line(verdict="reroll", n=1), line(verdict="reroll", n=2)
    commit_ledger(studio, raw(a, b), "two rerolls")
    edited = raw(a).replace(b'"reroll"', b'"reject"') + raw(b)
    assert len(edited) == len(raw(a, b))
    sneaky = commit_ledger(studio, edited, "quietly change a verdict")
    for n in range(3):
        edited += raw(line(n=10 + n))
        commit_ledger(studio, edited, f"more verdicts {n}")
    result = verify(studio)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(f'{sneaky} "quietly change a verdict": ledger.jsonl:1: line 1 of')
    assert result.stdout.splitlines()[-2] == "ledger.jsonl: 1 problem(s) in 1 of 6 commits"


def test_verify_accepts_union_merges_and_catches_a_merge_that_drops_a_side(studio: Path) -> None:
    base = raw(line(n=0))
    commit_ledger(studio, base, "base")
    git(studio, "checkout", "-q", "-b", "other")
    theirs = line(n=2)
    commit_ledger(studio, base + raw(theirs), "theirs")
    git(studio, "checkout", "-q", "main")
    commit_ledger(studio, base + raw(line(n=1)), "ours")
    merged = git(studio, "merge", "--no-edit", "other", check=False)  # .gitattributes: merge=union
    assert merged.returncode == 0, merged.stdout
    assert verify(studio).returncode == 0
    # a side branch whose lines a merge throws away
    git(studio, "checkout", "-q", "-b", "lost", "other")
    lost = line(n=3)
    commit_ledger(studio, base + raw(theirs, lost), "lost verdict")
    git(studio, "checkout", "-q", "main")
    git(studio, "merge", "-q", "-s", "ours", "--no-edit", "-m", "merge dropping lost", "lost")
    result = verify(studio)
    assert result.returncode == 1
    short = git(studio, "rev-parse", "--short", "HEAD").stdout.strip()
    assert f'{short} "merge dropping lost": ledger.jsonl:3: line 3 of the ledger in ' in result.stdout
    assert lost.id in result.stdout


def test_verify_catches_a_ledger_deleted_and_recreated(studio: Path) -> None:
    commit_ledger(studio, raw(line(n=1)), "one")
    git(studio, "rm", "-q", "ledger.jsonl")
    git(studio, "commit", "-q", "--no-verify", "-m", "delete the ledger")
    commit_ledger(studio, raw(line(n=2)), "start over")
    result = verify(studio)
    assert result.returncode == 1 and '"delete the ledger": ledger.jsonl:1: line 1' in result.stdout


def fast_import_history(repo: Path, commits: int, lines_per_commit: int, merge_every: int) -> int:
    """A studio history of ``commits`` ledger commits built with git fast-import; returns the line count.

    Every ``merge_every`` commits a side branch adds its own lines and is
    merged back with the union of both sides, as ``merge=union`` does.
    """
    stream = []
    ledger = b""
    mark = 0

    def commit(ref: str, data: bytes, message: str, parents: list[int]) -> int:
        nonlocal mark
        mark += 1
        msg = message.encode()
        stream.append(b"commit %s\nmark :%d\ncommitter Ana <ana@example.com> %d +0000\ndata %d\n%s\n"
                      % (ref.encode(), mark, 1_700_000_000 + mark, len(msg), msg))
        if parents:
            stream.append(b"from :%d\n" % parents[0])
        for other in parents[1:]:
            stream.append(b"merge :%d\n" % other)
        stream.append(b"M 100644 inline ledger.jsonl\ndata %d\n%s\n" % (len(data), data))
        return mark

    head = commit("refs/heads/main", b"", "new studio", [])
    for n in range(commits):
        added = raw(*(line(n=n * 100 + k, cues=["warmer palette"], spec_hash="sha256:" + "5d" * 32,
                           png_sha256="9f" * 32, model="z-image-turbo", archetype="essay", reviewer="Ana")
                      for k in range(lines_per_commit)))
        if merge_every and n % merge_every == merge_every - 1:
            side = commit("refs/heads/side", ledger + added, f"review {n} (other Mac)", [head])
            ours = raw(line(n=n))
            mine = commit("refs/heads/main", ledger + ours, f"review {n}", [head])
            ledger = ledger + ours + added
            head = commit("refs/heads/main", ledger, f"merge {n}", [mine, side])
        else:
            ledger += added
            head = commit("refs/heads/main", ledger, f"review {n}", [head])
    stream.append(b"done\n")
    subprocess.run(["git", "fast-import", "--quiet", "--done"], cwd=repo, input=b"".join(stream), check=True)
    git(repo, "reset", "-q", "--hard", "main")
    return ledger.count(b"\n")


@pytest.mark.parametrize(("commits", "per_commit"), [(1000, 1), (200, 20)])
def test_verify_is_fast_on_a_long_history(tmp_path: Path, commits: int, per_commit: int) -> None:
    repo = tmp_path / "long"
    repo.mkdir()
    git(repo, "init", "-q")
    lines = fast_import_history(repo, commits, per_commit, merge_every=50)
    started = time.monotonic()
    result = verify(repo)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout
    merges = commits // 50
    assert f"{commits + 1 + 2 * merges} commits, {lines} lines, no line ever changed or removed" in result.stdout
    print(f"verify: {commits} ledger commits x {per_commit} lines ({lines} lines): {seconds:.2f} s")
    assert seconds < 20
