"""The copy of the ComfyUI ground truth in tests/data agrees with the team's ../shared/comfyui."""
from __future__ import annotations

import pytest

from tests.comfyui_server.server import _TEAM_COPY, VENDORED


def test_the_vendored_copy_matches_the_shared_one() -> None:
    if not _TEAM_COPY.is_dir():
        pytest.skip("no ../shared/comfyui beside the repository: the tests use tests/data/comfyui")
    shared = {p.relative_to(_TEAM_COPY): p.read_bytes() for p in _TEAM_COPY.rglob("*") if p.is_file()}
    vendored = {p.relative_to(VENDORED): p.read_bytes() for p in VENDORED.rglob("*")
                if p.is_file() and p.name != "README.md"}
    assert sorted(map(str, shared)) == sorted(map(str, vendored)), "files differ: copy ../shared/comfyui again"
    changed = [str(rel) for rel, data in shared.items() if vendored[rel] != data]
    assert not changed, f"these differ from ../shared/comfyui: {changed}"
