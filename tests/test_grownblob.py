"""studio.grownblob: the blob of a grown file written at the cost of what was appended, on real git."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from studio import grownblob
from tests.helpers import git

LINE = b'{"batch": "b", "slug": "s", "verdict": "keep"}\n'


def repo(tmp_path: Path, object_format: str = "sha1") -> Path:
    here = tmp_path / "repo"
    git(tmp_path, "init", "-q", f"--object-format={object_format}", str(here))
    git(here, "config", "user.name", "t")
    git(here, "config", "user.email", "t@example.com")
    (here / "ledger.jsonl").write_bytes(LINE * 500)
    git(here, "add", "ledger.jsonl")
    git(here, "commit", "-q", "-m", "ledger")
    return here


def staged(here: Path) -> tuple[str, int]:
    blob = git(here, "rev-parse", ":ledger.jsonl").stdout.strip()
    return blob, int(git(here, "cat-file", "-s", blob).stdout)


def loose(here: Path, blob: str) -> bytes:
    return (here / ".git" / "objects" / blob[:2] / blob[2:]).read_bytes()


def grow_and_add(here: Path, extra: bytes) -> str | None:
    previous = staged(here)
    with (here / "ledger.jsonl").open("ab") as f:
        f.write(extra)
    written = grownblob.prepare_add(here, "ledger.jsonl", previous)
    git(here, "add", "ledger.jsonl")
    return written


@pytest.mark.parametrize("object_format", ["sha1", "sha256"])
def test_each_version_is_the_file_and_reuses_the_last(tmp_path: Path, object_format: str) -> None:
    here = repo(tmp_path, object_format)
    first = grow_and_add(here, LINE * 3)  # the previous version is git's own: all of it compressed here
    assert first == staged(here)[0]
    assert loose(here, first).startswith(grownblob._head(staged(here)[1]))
    git(here, "commit", "-q", "-m", "first")
    second = grow_and_add(here, b'{"batch": "b", "slug": "t", "verdict": "reroll"}\n')
    assert second == staged(here)[0] != first
    old_body = loose(here, first)[len(grownblob._head(len(LINE) * 503)) : -grownblob.TRAILER]
    assert old_body in loose(here, second)  # copied, not compressed again
    git(here, "commit", "-q", "-m", "second")
    for blob in (first, second):  # git reads each back as the file it was
        assert git(here, "cat-file", "-t", blob).stdout.strip() == "blob"
    assert git(here, "show", "HEAD:ledger.jsonl").stdout.encode() == (here / "ledger.jsonl").read_bytes()
    assert git(here, "fsck", "--full", "--strict").returncode == 0
    assert not list((here / ".git" / "objects").rglob("tmp_obj_*"))  # each temporary name removed (read-only)


def test_a_file_that_does_not_start_with_the_last_version_is_left_to_git(tmp_path: Path) -> None:
    here = repo(tmp_path)
    first = grow_and_add(here, LINE)
    git(here, "commit", "-q", "-m", "first")
    previous = staged(here)
    assert first == previous[0]
    data = (here / "ledger.jsonl").read_bytes()
    (here / "ledger.jsonl").write_bytes(data.replace(b"keep", b"KEEP", 1) + LINE)  # a changed line, then more
    assert grownblob.prepare_add(here, "ledger.jsonl", previous) is None
    wanted = git(here, "hash-object", "ledger.jsonl").stdout.strip()
    assert git(here, "cat-file", "-e", wanted, check=False).returncode != 0  # nothing written under its name
    git(here, "add", "ledger.jsonl")
    assert git(here, "fsck", "--full", "--strict").returncode == 0


def test_dated_back_so_git_never_hashes_it_again_yet_sees_a_later_change(tmp_path: Path) -> None:
    here = repo(tmp_path)
    grow_and_add(here, LINE)
    assert os.stat(here / "ledger.jsonl").st_mtime_ns < time.time_ns() - grownblob.SECOND
    index = (here / ".git" / "index").stat().st_mtime_ns
    assert os.stat(here / "ledger.jsonl").st_mtime_ns // grownblob.SECOND < index // grownblob.SECOND  # not racy
    data = bytearray((here / "ledger.jsonl").read_bytes())
    data[5:9] = b"XXXX"  # the same size, at once
    (here / "ledger.jsonl").write_bytes(bytes(data))
    assert git(here, "diff-files", "--quiet", check=False).returncode == 1
