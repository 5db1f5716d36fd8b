"""JSON nested deeper than Python's recursion limit is a bad line or a bad answer, never a crash.

``json.loads`` raises RecursionError, not ValueError, for ``[[[[...]]]]``
nested 100,000 deep (200 KB): a pushed ledger line like that ended the
person's post-merge hook, ``status``, ``stats``, ``review`` and ``ledger
verify`` with "unexpected error: RecursionError"; a backend answering it
took the request past every ``except ValueError``.
"""
from __future__ import annotations

import pytest

from tests.helpers import Sandbox, cli, git
from tests.security.helpers import GOOD, attacker, push, run_worker
from win_side.backends.http import Answer

DEEP = "[" * 100_000 + "]" * 100_000


def test_a_pushed_ledger_line_nested_too_deep_is_a_bad_line_everywhere(sandbox: Sandbox) -> None:
    push(sandbox, files={"batches/good.yaml": GOOD})
    assert run_worker(sandbox).returncode == 0
    ledger = (attacker(sandbox) / "ledger.jsonl").read_text(encoding="utf-8")
    push(sandbox, files={"ledger.jsonl": ledger + DEEP + "\n"})
    pulled = git(sandbox.mac, "pull", "--no-rebase")
    said = pulled.stdout + pulled.stderr
    assert "RecursionError" not in said and "unexpected error" not in said, said
    assert (sandbox.mac / "renders/good/review.md").is_file()
    for command in (["status"], ["stats"], ["review", "good"], ["ledger", "verify"]):
        result = cli(*command, "--repo", str(sandbox.mac), timeout=60)
        output = result.stdout + result.stderr
        assert "RecursionError" not in output and "unexpected error" not in output, (command, output)
    verify = cli("ledger", "verify", "--repo", str(sandbox.mac), timeout=60)
    assert "ledger.jsonl:1:" in verify.stdout + verify.stderr


def test_an_answer_nested_too_deep_is_not_json() -> None:
    with pytest.raises(ValueError, match="nested too deep"):
        Answer(200, "OK", content=DEEP.encode()).json()
