"""studio.checkout: what a checkout holds, by blob id, from one `git ls-files` (SHA-1 and SHA-256 alike)."""
from __future__ import annotations

from pathlib import Path

import pytest

from studio import checkout
from tests.helpers import git


@pytest.mark.parametrize("object_format", ["sha1", "sha256"])
def test_entries_are_the_index_with_the_working_tree_changes_read(tmp_path: Path, object_format: str) -> None:
    root = tmp_path / "repo"
    git(tmp_path, "init", "-q", f"--object-format={object_format}", str(root))
    files = {"batches/a.yaml": b"a\n", "renders/a/one.json": b"{}\n", "renders/a/one.png": b"\x89PNG 1",
             "renders/a/two.png": b"\x89PNG 2", "renders/a/tool.sh": b"#!/bin/sh\n"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "renders/a/tool.sh").chmod(0o755)
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "c")
    (root / "renders/a/one.json").write_bytes(b'{"changed": true}\n')  # modified, not staged
    (root / "renders/a/two.png").unlink()  # deleted
    (root / "renders/0-new.json").write_bytes(b"new\n")  # untracked, listed before every tracked file
    (root / "elsewhere.txt").write_bytes(b"not asked for\n")

    found = checkout.entries(root, "batches", "renders")

    def blob(rel: str) -> str:
        return git(root, "hash-object", rel).stdout.strip()

    assert sorted(found) == ["batches/a.yaml", "renders/0-new.json", "renders/a/one.json", "renders/a/one.png",
                             "renders/a/tool.sh"]
    assert {rel: entry.blob for rel, entry in found.items()} == {rel: blob(rel) for rel in found}
    assert len(found["batches/a.yaml"].blob) == (40 if object_format == "sha1" else 64)
    assert all(entry.here and entry.regular for entry in found.values())
