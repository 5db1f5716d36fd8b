"""The one rule for paths the Windows worker can check out."""
from __future__ import annotations

import pytest

from studio.winpath import PATH_BUDGET, windows_path_problem


@pytest.mark.parametrize("rel", [
    "batches/hero.yaml", "renders/hero/harbor-at-dawn.png", "notes/con-artist.md", "a/.hidden", "ledger.jsonl",
    "renders/x/aux-light.png", "comX.txt", "lpt0.txt", "x" * PATH_BUDGET,
])
def test_paths_windows_can_hold(rel: str) -> None:
    assert windows_path_problem(rel) is None


@pytest.mark.parametrize("rel, reason", [
    ("batches/a:b.yaml", "contains ':'"),
    ("batches/what?.yaml", "contains '?'"),
    ("batches/star*.yaml", "contains '*'"),
    ('batches/"q".yaml', "contains '\"'"),
    ("batches/a<b.yaml", "contains '<'"),
    ("batches/a>b.yaml", "contains '>'"),
    ("batches/a|b.yaml", "contains '|'"),
    ("batches/a\\b.yaml", "contains '\\\\'"),
    ("batches/tab\there.yaml", "contains '\\t'"),
    ("notes/trailing.", "ends with a dot"),
    ("notes/trailing /x.md", "ends with a space"),
    ("aux.txt", "reserved device name"),
    ("batches/CON.yaml", "reserved device name"),
    ("renders/nul/x.png", "reserved device name"),
    ("Com1.tar.gz", "reserved device name"),
    ("lpt9", "reserved device name"),
    ("prn .txt", "reserved device name"),
    ("x" * (PATH_BUDGET + 1), f"room for {PATH_BUDGET}"),
])
def test_paths_windows_cannot_hold(rel: str, reason: str) -> None:
    problem = windows_path_problem(rel)
    assert problem is not None and reason in problem, problem
