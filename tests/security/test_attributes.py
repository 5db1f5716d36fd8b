"""The worker commits exactly the bytes it rendered (issue 9, item 3).

Whatever .gitattributes or this machine's git config say, the blob committed
for a PNG has the sha the record names; attributes that would transform it
are refused naming their line, by the worker (nothing committed, nothing
pushed) and by the pre-commit hook.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from studio.layout import Studio
from tests.helpers import BATCH_YAML, Sandbox, cli, git
from win_side.commits import Transformed, _check_staged
from win_side.repo import WorkerRepo


def run_worker(sandbox: Sandbox) -> subprocess.CompletedProcess[str]:
    return cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once")


def push(sandbox: Sandbox, files: dict[str, str]) -> None:
    """Commit ``files`` from a clone without hooks (someone with push access) and push."""
    clone = sandbox.root / "pusher"
    if not clone.exists():
        git(sandbox.root, "clone", "-q", str(sandbox.remote), str(clone))
    git(clone, "pull", "-q")
    for rel, text in files.items():
        path = clone / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "--no-verify", "-m", "attributes")
    git(clone, "push", "-q")


def renders_on_remote(sandbox: Sandbox) -> list[str]:
    return git(sandbox.remote, "log", "--format=%s", "--grep=^render(", "main").stdout.splitlines()


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line == needle)


@pytest.mark.parametrize("line, attribute", [
    ("*.png text eol=lf", "text"),
    ("*.png eol=crlf", "eol=crlf"),
    ("*.png -text filter=evil", "filter=evil"),
    ("renders/**/*.png working-tree-encoding=UTF-16", "working-tree-encoding=UTF-16"),
    ("*.json ident", "ident"),
])
def test_a_pushed_transforming_attribute_stops_the_worker_before_rendering(
    sandbox: Sandbox, line: str, attribute: str
) -> None:
    attributes = (sandbox.mac / ".gitattributes").read_text(encoding="utf-8") + line + "\n"
    push(sandbox, {".gitattributes": attributes, "batches/hero.yaml": BATCH_YAML})
    before = git(sandbox.remote, "rev-parse", "main").stdout

    result = run_worker(sandbox)

    number = line_of(attributes, line)
    assert result.returncode == 1
    assert f"renderloop: error: .gitattributes:{number}: {line!r} sets {attribute}, which would change renders/hero/" \
        in result.stderr
    assert "the worker commits nothing until it is gone" in result.stderr
    assert renders_on_remote(sandbox) == [] and git(sandbox.remote, "rev-parse", "main").stdout == before
    assert render_files(sandbox.worker) == []


def remote_files(sandbox: Sandbox) -> list[str]:
    return git(sandbox.remote, "ls-tree", "-r", "--name-only", "main").stdout.split()


def render_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "renders").rglob("*") if p.is_file() and p.name != ".gitkeep")


def test_a_nested_attributes_file_is_named_too(sandbox: Sandbox) -> None:
    push(sandbox, {"renders/hero/.gitattributes": "*.json filter=lfs\n", "batches/hero.yaml": BATCH_YAML})
    result = run_worker(sandbox)
    assert result.returncode == 1
    assert ("renderloop: error: renders/hero/.gitattributes:1: '*.json filter=lfs' sets filter=lfs, "
            "which would change renders/hero/") in result.stderr
    assert renders_on_remote(sandbox) == []


def test_harmless_attributes_render_as_usual(sandbox: Sandbox) -> None:
    """The studio's own .gitattributes, text=auto and -text change no byte: the worker renders."""
    attributes = (sandbox.mac / ".gitattributes").read_text(encoding="utf-8") + "* text=auto\n*.png -text\n"
    push(sandbox, {".gitattributes": attributes, "batches/hero.yaml": BATCH_YAML})
    result = run_worker(sandbox)
    assert result.returncode == 0, result.stderr
    assert len(renders_on_remote(sandbox)) == 3


def test_the_committed_blob_is_the_rendered_bytes_whatever_this_machine_says(sandbox: Sandbox) -> None:
    """core.autocrlf=true, core.eol=crlf and a global attributes file saying `*.png text`: ignored by the worker."""
    git(sandbox.worker, "config", "core.autocrlf", "true")
    git(sandbox.worker, "config", "core.eol", "crlf")
    global_attributes = sandbox.root / "global-attributes"
    global_attributes.write_text("*.png text eol=crlf\n*.json text eol=crlf\n", encoding="utf-8")
    git(sandbox.worker, "config", "--global", "core.attributesFile", str(global_attributes))
    push(sandbox, {"batches/hero.yaml": BATCH_YAML})
    result = run_worker(sandbox)
    assert result.returncode == 0, result.stderr
    git(sandbox.mac, "pull", "-q")
    for slug in ("harbor-at-dawn", "feedback-ledger-taxonomy", "night-train"):
        record = json.loads(git(sandbox.remote, "show", f"main:renders/hero/{slug}.json").stdout)
        blob = subprocess.run(["git", "cat-file", "blob", f"main:renders/hero/{slug}.png"], cwd=sandbox.remote,
                              capture_output=True, check=True).stdout
        assert blob.startswith(b"\x89PNG\r\n\x1a\n")  # the CR LF of the signature survives
        assert hashlib.sha256(blob).hexdigest() == record["png_sha256"]


def test_a_staged_blob_that_differs_from_the_file_is_never_committed(sandbox: Sandbox) -> None:
    repo = WorkerRepo(Studio.at(sandbox.worker))
    path = sandbox.worker / "renders" / "x" / "a.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\nreal bytes")
    other = git(sandbox.worker, "hash-object", "-w", "--stdin", check=True).stdout  # an empty blob
    git(sandbox.worker, "update-index", "--add", "--cacheinfo", f"100644,{other.strip()},renders/x/a.png")
    with pytest.raises(Transformed, match=r"^renders/x/a.png: git staged other bytes than the worker wrote"):
        _check_staged(repo, ["renders/x/a.png"])
    assert git(sandbox.worker, "ls-files", "-s", "renders/x/a.png").stdout == ""  # unstaged again


def test_the_pre_commit_hook_refuses_such_an_attributes_line(sandbox: Sandbox) -> None:
    path = sandbox.mac / ".gitattributes"
    text = path.read_text(encoding="utf-8") + "*.png text\n"
    path.write_text(text, encoding="utf-8")
    git(sandbox.mac, "add", ".gitattributes")
    result = git(sandbox.mac, "commit", "-m", "line endings", check=False)
    assert result.returncode == 1
    number = line_of(text, "*.png text")
    assert result.stderr.splitlines()[0] == (
        f".gitattributes:{number}: '*.png text' sets text, which would change renders/any-batch/any-image.png "
        "when it is committed (the blob would no longer be the bytes written); remove it")
    assert git(sandbox.mac, "log", "-1", "--format=%s").stdout.strip() != "line endings"


def test_the_pre_commit_hook_refuses_a_nested_one_and_accepts_a_harmless_one(sandbox: Sandbox) -> None:
    sandbox.write("renders/.gitattributes", "**/*.json working-tree-encoding=UTF-16\n")
    git(sandbox.mac, "add", "renders/.gitattributes")
    result = git(sandbox.mac, "commit", "-m", "encoding", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("renders/.gitattributes:1: '**/*.json working-tree-encoding=UTF-16' sets "
                                    "working-tree-encoding=UTF-16, which would change renders/any-batch/any-image.json")
    sandbox.write("renders/.gitattributes", "*.txt text eol=crlf\n*.png -text\n")
    git(sandbox.mac, "add", "renders/.gitattributes")
    assert git(sandbox.mac, "commit", "-q", "-m", "harmless", check=False).returncode == 0


def test_a_refused_error_record_leaves_the_clone_clean_and_the_fix_is_rendered(sandbox: Sandbox) -> None:
    """A `*.json filter=` line refuses the worker's error records: it stops, but leaves nothing half done
    in its clone, so once the line is removed it pulls, clears and renders as usual (it was stuck for good)."""
    attributes = (sandbox.mac / ".gitattributes").read_text(encoding="utf-8")
    push(sandbox, {"batches/broken.yaml": "version: 1\nmodel: nope\n"})
    assert run_worker(sandbox).returncode == 0  # renders/broken/batch-error.json committed
    push(sandbox, {".gitattributes": attributes + "*.json filter=evil\n",  # one record to clear, one to write
                   "batches/broken.yaml": BATCH_YAML, "batches/other.yaml": "version: 1\nmodel: nope\n"})

    refused = run_worker(sandbox)

    assert refused.returncode == 1 and "'*.json filter=evil' sets filter=evil" in refused.stderr
    assert git(sandbox.worker, "status", "--porcelain").stdout == ""  # nothing written, deleted or staged
    push(sandbox, {".gitattributes": attributes, "batches/other.yaml": BATCH_YAML})
    fixed = run_worker(sandbox)
    assert fixed.returncode == 0, fixed.stderr
    assert "cannot rebase" not in fixed.stderr
    assert git(sandbox.worker, "status", "--porcelain").stdout == ""
    on_remote = remote_files(sandbox)
    assert "renders/broken/batch-error.json" not in on_remote
    assert "renders/broken/harbor-at-dawn.png" in on_remote
    assert "renders/other/harbor-at-dawn.png" in remote_files(sandbox)
