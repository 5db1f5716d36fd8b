"""Issue 9, item 4: every read of repository content is bounded and link-safe.

Links, devices, FIFOs and oversized files are refused as that file's error
(a batch-error record for the worker, a message from the hook), never a
crash and never a hang; the other batches go on; ``renders/<batch>`` must be
a real folder, and nothing is ever written through a link.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from studio.config import load_config
from studio.errors import FatalError, InvalidFile
from studio.fsutil import RefusedFile, read_bounded
from studio.inventory import load_batches, records
from studio.layout import Studio
from studio.ledger import LedgerLine, append
from studio.limits import MAX_BATCH_BYTES
from tests.helpers import Sandbox, cli, git
from tests.security.helpers import (
    GOOD, attacker, batch_error, files_under, posix_only, push, remote_files, run_worker,
)

pytestmark = posix_only
LINK = "the file is a symbolic link (to {target!r}); renderloop reads only regular files, never through a link"


# -- the one reader --------------------------------------------------------------------------


def test_a_regular_file_within_its_limit_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100, tmp_path) == b"x" * 100  # exactly at the limit


@pytest.mark.parametrize("target", ["/dev/zero", "/etc/hostname", "inside.txt", "."])
def test_a_link_is_refused_whatever_it_points_to(tmp_path: Path, target: str) -> None:
    (tmp_path / "inside.txt").write_text("inside the studio\n")
    os.symlink(target, tmp_path / "a.yaml")
    with pytest.raises(RefusedFile) as caught:
        read_bounded(tmp_path / "a.yaml", 1000, tmp_path, "batches/a.yaml")
    assert str(caught.value) == "batches/a.yaml:1: " + LINK.format(target=target)


def test_a_device_is_refused_without_reading_it() -> None:
    with pytest.raises(RefusedFile) as caught:
        read_bounded(Path("/dev/zero"), 1000, None, "renders/z/a.json")
    assert str(caught.value) == (
        "renders/z/a.json:1: the file is a device, not a regular file; renderloop reads only regular files"
    )


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(RefusedFile) as caught:
        read_bounded(fifo, 1000, tmp_path, "batches/pipe.yaml")
    assert time.monotonic() - started < 1
    assert str(caught.value) == (
        "batches/pipe.yaml:1: the file is a named pipe (FIFO), not a regular file; renderloop reads only regular files"
    )


def test_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "review.md").mkdir()
    with pytest.raises(RefusedFile, match=r"^review.md:1: the file is a folder, not a regular file"):
        read_bounded(tmp_path / "review.md", 1000, tmp_path, "review.md")


def test_one_byte_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"x" * 3_000_001)
    with pytest.raises(RefusedFile) as caught:
        read_bounded(path, 3_000_000, tmp_path, "batches/big.yaml")
    assert str(caught.value) == "batches/big.yaml:1: file is 3.0 MB; the limit is 3.0 MB"


def test_a_link_on_the_way_below_the_studio_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.json").write_text("{}")
    (tmp_path / "renders").mkdir()
    os.symlink("../elsewhere", tmp_path / "renders" / "hero")
    with pytest.raises(RefusedFile) as caught:
        read_bounded(tmp_path / "renders" / "hero" / "a.json", 1000, tmp_path, "renders/hero/a.json")
    assert str(caught.value) == (
        "renders/hero/a.json:1: renders/hero is a symbolic link (to '../elsewhere'); "
        "renderloop never reads or writes through a link"
    )


def test_a_file_that_grows_after_the_check_is_cut_at_the_limit(tmp_path: Path) -> None:
    """Only limit + 1 bytes are ever read, whatever the file holds by then."""
    path = tmp_path / "growing.yaml"
    path.write_bytes(b"x" * 10)
    stop = threading.Event()

    def grow() -> None:
        with path.open("ab") as f:
            while not stop.is_set():
                f.write(b"y" * 65536)
                f.flush()

    writer = threading.Thread(target=grow)
    writer.start()
    try:
        time.sleep(0.05)
        with pytest.raises(RefusedFile, match=r"file is .* MB; the limit is 0.0 MB"):
            read_bounded(path, 1000, tmp_path, "growing.yaml")
    finally:
        stop.set()
        writer.join()


# -- the studio's readers use it ---------------------------------------------------------------


def studio_with(tmp_path: Path) -> Studio:
    from mac_side.init import init

    init(tmp_path / "s")
    return Studio.at(tmp_path / "s")


def test_renderloop_yaml_as_a_link_out_of_the_studio_is_its_error(tmp_path: Path) -> None:
    studio = studio_with(tmp_path)
    outside = tmp_path / "outside.yaml"
    outside.write_text(studio.config_path.read_text())
    studio.config_path.unlink()
    os.symlink(outside, studio.config_path)
    with pytest.raises(InvalidFile) as caught:
        load_config(studio)
    assert str(caught.value) == "renderloop.yaml:1: " + LINK.format(target=str(outside))


def test_a_workflow_that_is_a_link_is_the_config_s_error(tmp_path: Path) -> None:
    studio = studio_with(tmp_path)
    (studio.root / "workflows").mkdir()
    os.symlink("/dev/zero", studio.root / "workflows" / "zero.api.json")
    studio.config_path.write_text(
        "version: 1\nmodels:\n  mine:\n    comfyui:\n      workflow: workflows/zero.api.json\n", encoding="utf-8"
    )
    with pytest.raises(InvalidFile) as caught:
        load_config(studio)
    assert str(caught.value) == "workflows/zero.api.json:1: " + LINK.format(target="/dev/zero")


def test_a_batch_file_over_the_limit_is_that_batch_s_error(tmp_path: Path) -> None:
    studio = studio_with(tmp_path)
    (studio.batches_dir / "huge.yaml").write_bytes(b"#" * (MAX_BATCH_BYTES + 1))
    (studio.batches_dir / "good.yaml").write_text(GOOD)
    inventory = load_batches(studio, load_config(studio))
    assert list(inventory.batches) == ["good"]
    assert str(inventory.invalid["huge"]) == "batches/huge.yaml:1: file is 2.1 MB; the limit is 2.1 MB"


def test_a_batches_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    studio = studio_with(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.yaml").write_text(GOOD)
    shutil.rmtree(studio.batches_dir)
    os.symlink(elsewhere, studio.batches_dir)
    with pytest.raises(FatalError) as caught:
        load_batches(studio, load_config(studio))
    assert str(caught.value) == (
        f"batches is a symbolic link (to {str(elsewhere)!r}); renderloop never reads or writes through a link: "
        "batch files are read only from a real batches/ folder"
    )


def test_records_behind_a_linked_batch_folder_are_not_read(tmp_path: Path) -> None:
    studio = studio_with(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "fine.json").write_text("{}")
    studio.renders_dir.mkdir(exist_ok=True)
    os.symlink(tmp_path / "elsewhere", studio.renders_dir / "hero")
    assert records(studio, "hero") == {}
    with pytest.raises(FatalError, match=r"renders/hero is a symbolic link"):
        studio.batch_dir("hero")


def test_the_ledger_is_never_appended_through_a_link(tmp_path: Path) -> None:
    studio = studio_with(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("the person's file\n")
    studio.ledger_path.unlink()
    os.symlink(victim, studio.ledger_path)
    line = LedgerLine.model_validate({
        "id": "0" * 26, "batch": "hero", "slug": "fine", "verdict": "keep", "at": "2025-01-01T00:00:00Z",
    })
    with pytest.raises(FatalError, match=r"^ledger.jsonl: not a regular file"):
        append(studio.ledger_path, [line])
    assert victim.read_text() == "the person's file\n"


# -- the worker: each bad file is its batch's error, the others render --------------------------


@pytest.mark.parametrize("target", ["/dev/zero", "/etc/passwd", "../renderloop.yaml", "good.yaml"])
def test_a_batch_file_that_is_a_link_gets_an_error_record(sandbox: Sandbox, target: str) -> None:
    push(sandbox, files={"batches/good.yaml": GOOD}, links={"batches/evil.yaml": target})
    result = run_worker(sandbox)
    assert result.returncode == 0, result.stderr
    error = batch_error(sandbox, "evil")
    assert error["path"] == "batches/evil.yaml"
    assert error["problems"] == [{"line": 1, "message": LINK.format(target=target)}]
    assert "renders/good/fine.png" in remote_files(sandbox)
    assert "Traceback" not in result.stderr and "unexpected error" not in result.stderr
    head = git(sandbox.worker, "rev-parse", "HEAD").stdout
    assert run_worker(sandbox).returncode == 0  # the same error is not committed again
    assert git(sandbox.worker, "rev-parse", "HEAD").stdout == head


def test_a_fifo_batch_file_does_not_hang_the_worker(sandbox: Sandbox) -> None:
    push(sandbox, files={"batches/good.yaml": GOOD})
    git(sandbox.worker, "pull", "-q")
    os.mkfifo(sandbox.worker / "batches" / "pipe.yaml")
    result = run_worker(sandbox, timeout=60)
    assert result.returncode == 0, result.stderr
    assert batch_error(sandbox, "pipe")["problems"] == [{"line": 1, "message": (
        "the file is a named pipe (FIFO), not a regular file; renderloop reads only regular files")}]
    assert "renders/good/fine.png" in remote_files(sandbox)


def test_an_oversized_batch_file_gets_an_error_record(sandbox: Sandbox) -> None:
    push(sandbox, files={"batches/good.yaml": GOOD, "batches/huge.yaml": "#" * 3_000_000 + "\n"})
    result = run_worker(sandbox)
    assert result.returncode == 0, result.stderr
    assert batch_error(sandbox, "huge")["problems"] == [{"line": 1, "message": "file is 3.0 MB; the limit is 2.1 MB"}]
    assert "renders/good/fine.png" in remote_files(sandbox)


@pytest.mark.parametrize("target", ["../.git", "../hooks", "../batches"])
def test_a_renders_folder_linked_inside_the_studio_is_never_written_through(sandbox: Sandbox, target: str) -> None:
    push(sandbox, files={"batches/good.yaml": GOOD, "batches/evil.yaml": GOOD.replace("fine", "planted")},
         links={"renders/evil": target})
    git(sandbox.worker, "pull", "-q")
    pointed = (sandbox.worker / "renders" / target).resolve()
    before = files_under(pointed)
    result = run_worker(sandbox)
    assert result.returncode == 1
    assert (
        f"batch evil is not rendered: refusing to write outside the studio's own folders: renders/evil is a "
        f"symbolic link (to {target!r}); renderloop never reads or writes through a link; renders/evil must be a "
        "real folder"
    ) in result.stderr
    assert "1 batch(es) not rendered: their renders folder is a link or a file" in result.stderr
    after = files_under(pointed)
    assert not any("planted" in name or "batch-error" in name for name in after), "the worker wrote through the link"
    if target != "../.git":  # git itself writes in .git as it commits and pushes
        assert after == before
    assert "renders/good/fine.png" in remote_files(sandbox)
    assert not any("planted" in name for name in remote_files(sandbox))


def test_a_renders_entry_that_is_a_plain_file_is_refused_not_looped_on(sandbox: Sandbox) -> None:
    push(sandbox, files={"batches/good.yaml": GOOD, "batches/flat.yaml": GOOD, "renders/flat": "a file\n"})
    started = time.monotonic()
    result = run_worker(sandbox, timeout=60)
    assert time.monotonic() - started < 60
    assert result.returncode == 1
    assert ("batch flat is not rendered: refusing to write outside the studio's own folders: renders/flat is a "
            "regular file where a folder belongs; renders/flat must be a real folder") in result.stderr
    assert "renders/good/fine.png" in remote_files(sandbox)
    assert git(sandbox.remote, "show", "main:renders/flat").stdout == "a file\n"


def test_a_renders_entry_the_worker_cannot_use_is_told_to_the_person(sandbox: Sandbox) -> None:
    """Issue 9, item 7: not only in the worker's log. renders/<b> holds no error record: the studio's does."""
    push(sandbox, files={"batches/good.yaml": GOOD, "batches/flat.yaml": GOOD, "batches/evil.yaml": GOOD,
                         "renders/flat": "a file\n"}, links={"renders/evil": "../hooks"})
    assert run_worker(sandbox).returncode == 1
    record = json.loads(git(sandbox.remote, "show", "main:renders/studio-error.json").stdout)
    assert [(p["path"], p["line"]) for p in record["problems"]] == [("renders/evil", 1), ("renders/flat", 1)]
    assert record["problems"][0]["message"] == (
        "batch evil is not rendered: refusing to write outside the studio's own folders: renders/evil is a symbolic "
        "link (to '../hooks'); renderloop never reads or writes through a link; renders/evil must be a real folder")
    pulled = git(sandbox.mac, "pull")
    assert "the worker cannot render: renders/flat:1: batch flat is not rendered: refusing to write outside the " \
        "studio's own folders: renders/flat is a regular file where a folder belongs" in pulled.stderr + pulled.stdout
    clone = attacker(sandbox)  # the fix: both gone
    git(clone, "rm", "-q", "renders/evil", "renders/flat")
    git(clone, "commit", "-q", "--no-verify", "-m", "fixed")
    git(clone, "push", "-q")
    assert run_worker(sandbox).returncode == 0
    assert "renders/studio-error.json" not in remote_files(sandbox)
    assert "renders/flat/fine.png" in remote_files(sandbox) and "renders/evil/fine.png" in remote_files(sandbox)


def test_a_record_linked_to_dev_zero_is_rendered_over_not_read(sandbox: Sandbox) -> None:
    push(sandbox, files={"batches/good.yaml": GOOD}, links={"renders/good/fine.json": "/dev/zero"})
    result = run_worker(sandbox, timeout=60)
    assert result.returncode == 0, result.stderr
    mode = git(sandbox.remote, "ls-tree", "main", "renders/good/fine.json").stdout.split()[0]
    assert mode == "100644"  # the link was replaced by the worker's own record
    record = json.loads(git(sandbox.remote, "show", "main:renders/good/fine.json").stdout)
    assert record["status"] == "done" and record["slug"] == "fine"


@pytest.mark.parametrize("target", ["/dev/zero", "../outside.yaml"])
def test_renderloop_yaml_as_a_link_stops_the_worker_with_its_error(sandbox: Sandbox, target: str) -> None:
    (sandbox.root / "outside.yaml").write_text((sandbox.mac / "renderloop.yaml").read_text())
    push(sandbox, files={"batches/good.yaml": GOOD}, links={"renderloop.yaml": target})
    expected = "renderloop.yaml:1: " + LINK.format(target=target)
    # pulled while the worker runs: it says so and plans nothing
    result = run_worker(sandbox, timeout=60)
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and "unexpected error" not in result.stderr
    # found when it starts: a clear exit
    result = run_worker(sandbox, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(expected)
    assert "Traceback" not in result.stderr and "unexpected error" not in result.stderr
    assert "renders/good/fine.png" not in remote_files(sandbox)


# -- the person's hooks and commands ---------------------------------------------------------------


def rendered(sandbox: Sandbox) -> None:
    """A batch rendered by the worker and pulled by the person (the review is written)."""
    push(sandbox, files={"batches/good.yaml": GOOD})
    assert run_worker(sandbox).returncode == 0
    git(sandbox.mac, "pull", "-q")


def reviewed(sandbox: Sandbox) -> None:
    """A batch rendered, pulled, and its review committed and pushed by the person."""
    rendered(sandbox)
    git(sandbox.mac, "commit", "-q", "-am", "first review", "--no-verify")
    git(sandbox.mac, "push", "-q")


def new_render_and_links(sandbox: Sandbox, links: dict[str, str]) -> str:
    """After a review: links pushed with a new prompt, rendered, pulled by the person. Returns the pull's output."""
    reviewed(sandbox)
    push(sandbox, links=links, files={"batches/good.yaml": GOOD + "  - slug: second\n    prompt: another\n"})
    assert run_worker(sandbox).returncode == 0
    result = git(sandbox.mac, "pull", "--no-rebase")
    return result.stdout + result.stderr


def test_a_review_linked_to_dev_zero_is_left_alone_with_a_message(sandbox: Sandbox) -> None:
    output = new_render_and_links(sandbox, {"renders/good/review.md": "/dev/zero"})
    assert ("renderloop: good: renders/good/review.md:1: " + LINK.format(target="/dev/zero")
            + ": the review was left as it is") in output
    assert os.readlink(sandbox.mac / "renders/good/review.md") == "/dev/zero"


def test_a_ledger_linked_to_dev_zero_is_the_hook_s_message(sandbox: Sandbox) -> None:
    output = new_render_and_links(sandbox, {"ledger.jsonl": "/dev/zero"})
    assert "renderloop post-merge: ledger.jsonl:1: " + LINK.format(target="/dev/zero") in output
    assert "renderloop post-merge: no review written" in output
    status = cli("status", "--repo", str(sandbox.mac), timeout=30)
    assert status.returncode == 1
    assert "ledger.jsonl:1: " + LINK.format(target="/dev/zero") in status.stderr


def test_review_never_writes_through_a_linked_renders_folder(sandbox: Sandbox) -> None:
    reviewed(sandbox)
    clone = attacker(sandbox)
    git(clone, "rm", "-rq", "renders/good")
    push(sandbox, links={"renders/good": "../hooks"})
    git(sandbox.mac, "pull", "-q", "--no-rebase")
    assert (sandbox.mac / "renders/good").is_symlink()
    hooks_before = files_under(sandbox.mac / "hooks")
    result = cli("review", "good", "--repo", str(sandbox.mac), timeout=30)
    assert result.returncode == 1
    assert "good: refusing to write outside the studio's own folders: renders/good is a symbolic link" in result.stdout
    assert files_under(sandbox.mac / "hooks") == hooks_before


def test_export_never_copies_the_file_a_linked_png_points_to(sandbox: Sandbox) -> None:
    rendered(sandbox)
    secret = sandbox.root / "id_secret"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n a secret of this machine")
    review = sandbox.mac / "renders/good/review.md"
    review.write_text(review.read_text().replace("verdict:\n", "verdict: keep\n", 1))
    git(sandbox.mac, "commit", "-q", "-am", "keep it")
    git(sandbox.mac, "push", "-q")
    clone = attacker(sandbox)
    (clone / "renders/good/fine.png").unlink()
    push(sandbox, links={"renders/good/fine.png": str(secret)})
    git(sandbox.mac, "pull", "-q", "--no-rebase")
    out = sandbox.root / "export"
    result = cli("export", str(out), "--repo", str(sandbox.mac), timeout=30)
    assert result.returncode == 0, result.stderr
    exported = files_under(out)
    assert list(exported) == ["fine.png"]
    assert b"a secret" not in exported["fine.png"]
    # the image the person kept, from history, not the file the link points to
    assert exported["fine.png"] == git_bytes(sandbox.worker, "HEAD:renders/good/fine.png")


def git_bytes(repo: Path, rev: str) -> bytes:
    import subprocess

    return subprocess.run(["git", "show", rev], cwd=repo, capture_output=True, check=True).stdout


@pytest.mark.parametrize("rel, target", [
    ("batches/evil.yaml", "/etc/passwd"),
    ("renderloop.yaml", "/dev/zero"),
    ("renders/good/review.md", "/dev/zero"),
])
def test_the_pre_commit_hook_refuses_a_staged_link(sandbox: Sandbox, rel: str, target: str) -> None:
    if rel.startswith("renders/"):
        reviewed(sandbox)
    path = sandbox.mac / rel
    path.unlink(missing_ok=True)
    os.symlink(target, path)
    git(sandbox.mac, "add", rel)
    head = git(sandbox.mac, "rev-parse", "HEAD").stdout
    result = git(sandbox.mac, "commit", "-m", "a link", check=False)
    assert result.returncode == 1
    assert f"{rel}:1: " + LINK.format(target=target) in result.stderr.splitlines()
    assert git(sandbox.mac, "rev-parse", "HEAD").stdout == head
