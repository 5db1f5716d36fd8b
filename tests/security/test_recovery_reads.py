"""Issue 9, item 4 (what was left): the worker's crash recovery and the pre-commit hook read bounded.

A killed run's uncommitted files are read like any studio file (never through
a link, never past the limit); the hook sees a file turned into a link as a
change, and asks git the size of both ledgers before reading either.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

import mac_side.hooks
from mac_side.hooks import pre_commit
from studio import git as studio_git
from studio.layout import Studio
from studio.limits import MAX_RECORD_BYTES
from tests.helpers import Sandbox, git
from tests.security.helpers import GOOD, posix_only
from win_side.repo import WorkerRepo

pytestmark = posix_only


def png_bytes() -> bytes:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (8, 8), "white").save(out, format="PNG")
    return out.getvalue()


def record_for(png: bytes, slug: str = "a") -> str:
    """A valid record of a finished render whose image has these bytes."""
    from studio.record import RenderRecord
    from studio.spec import Spec

    spec = Spec(model="z-image-turbo", prompt="a", seed=1, width=64, height=64)
    return RenderRecord(batch="z", slug=slug, spec=spec, spec_hash=spec.hash, status="done", backend="placeholder",
                        worker="w", png_sha256=hashlib.sha256(png).hexdigest()).model_dump_json()


def recover(sandbox: Sandbox) -> tuple[list, float]:
    repo = WorkerRepo(Studio.at(sandbox.worker))
    started = time.monotonic()
    found = repo.recover()
    return found, time.monotonic() - started


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_a_record_left_as_a_link_to_a_device_is_not_read(sandbox: Sandbox, target: str) -> None:
    folder = sandbox.worker / "renders" / "z"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png_bytes())
    os.symlink(target, folder / "a.json")
    found, took = recover(sandbox)
    assert found == [] and took < 10  # not read whole (it has no end), not committed
    assert not (folder / "a.json").is_symlink() and not (folder / "a.png").exists()  # both removed: no pair


def test_a_png_left_as_a_link_out_of_the_studio_is_not_committed(sandbox: Sandbox, tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes())
    before = outside.read_bytes()
    folder = sandbox.worker / "renders" / "z"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(record_for(before), encoding="utf-8")  # the sha matches the target
    os.symlink(outside, folder / "a.png")
    found, _ = recover(sandbox)
    assert found == []
    assert not (folder / "a.png").exists() and not (folder / "a.png").is_symlink()
    assert outside.read_bytes() == before  # untouched
    assert git(sandbox.worker, "status", "--porcelain").stdout == ""


def test_a_record_over_its_limit_is_not_read(sandbox: Sandbox) -> None:
    png = png_bytes()
    folder = sandbox.worker / "renders" / "z"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png)
    (folder / "a.json").write_text(record_for(png) + " " * MAX_RECORD_BYTES, encoding="utf-8")
    found, _ = recover(sandbox)
    assert found == []
    assert not (folder / "a.json").exists()


def test_a_complete_pair_is_still_recovered(sandbox: Sandbox) -> None:
    """The control: a real pair a killed run left is found, as before (and with the PNG a link, it is not)."""
    png = png_bytes()
    folder = sandbox.worker / "renders" / "z"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png)
    (folder / "a.json").write_text(record_for(png), encoding="utf-8")
    found, _ = recover(sandbox)
    assert [(r.slug, paths) for r, paths in found] == [("a", ["renders/z/a.png", "renders/z/a.json"])]


# -- the index ---------------------------------------------------------------------------------


def stage_batch_turned_into_link(sandbox: Sandbox, target: str) -> None:
    """Commit batches/hero.yaml, then stage it replaced by a link to ``target`` (a type change)."""
    sandbox.write("batches/hero.yaml", GOOD)
    git(sandbox.mac, "add", "batches/hero.yaml")
    git(sandbox.mac, "commit", "-q", "-m", "hero")
    (sandbox.mac / "batches/hero.yaml").unlink()
    os.symlink(target, sandbox.mac / "batches/hero.yaml")
    git(sandbox.mac, "add", "batches/hero.yaml")


def test_a_file_turned_into_a_link_is_a_staged_change(sandbox: Sandbox) -> None:
    stage_batch_turned_into_link(sandbox, "/dev/zero")
    assert studio_git.staged_files(sandbox.mac) == ["batches/hero.yaml"]


def test_the_hook_refuses_a_batch_turned_into_a_link(sandbox: Sandbox) -> None:
    stage_batch_turned_into_link(sandbox, "/etc/passwd")
    said = pre_commit(Studio.at(sandbox.mac))
    assert [str(p) for p in said.problems] == [
        "batches/hero.yaml:1: the file is a symbolic link (to '/etc/passwd'); renderloop reads only regular "
        "files, never through a link"
    ]
    committed = git(sandbox.mac, "commit", "-q", "-m", "link", check=False)  # through the real hook
    assert committed.returncode != 0 and "batches/hero.yaml:1: the file is a symbolic link" in committed.stderr


def test_a_blob_over_the_limit_is_sized_not_read(sandbox: Sandbox) -> None:
    (sandbox.mac / "big.txt").write_bytes(b"x" * 5000)
    git(sandbox.mac, "add", "big.txt")
    with pytest.raises(studio_git.TooLarge) as caught:
        studio_git.show(sandbox.mac, ":big.txt", limit=4999)
    assert str(caught.value) == ":big.txt is 5000 bytes; the limit is 4999"
    assert studio_git.show(sandbox.mac, ":big.txt", limit=5000) == b"x" * 5000
    assert studio_git.show(sandbox.mac, ":absent.txt", limit=10) is None


@pytest.mark.parametrize("where", ["index", "HEAD"])
def test_the_hook_refuses_a_ledger_over_its_limit_without_reading_it(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, where: str,
) -> None:
    monkeypatch.setattr(mac_side.hooks, "MAX_LEDGER_BYTES", 1000)
    (sandbox.mac / "ledger.jsonl").write_bytes(b"{}\n" * 400)  # 1200 bytes
    git(sandbox.mac, "add", "ledger.jsonl")
    if where == "HEAD":
        git(sandbox.mac, "commit", "-q", "--no-verify", "-m", "a big ledger")
        sandbox.write("notes.txt", "n\n")
        git(sandbox.mac, "add", "notes.txt")
    said = pre_commit(Studio.at(sandbox.mac))
    assert [str(p) for p in said.problems] == ["ledger.jsonl:1: file is 0.0 MB; the limit is 0.0 MB"]
