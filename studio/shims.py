"""The studio's git hook shims (``hooks/``) and ``.gitattributes``.

A shim only finds ``renderloop`` and calls ``renderloop hook NAME``: the logic
lives in the installed package, never in the repository.
"""
from __future__ import annotations

HOOK_NAMES = ("pre-commit", "post-merge", "post-rewrite", "post-checkout")

# pre-commit guards the ledger: without renderloop it must stop the commit.
_MISSING = {
    "pre-commit": 'echo "renderloop: not found on PATH; activate the environment it is installed in (the commit was stopped)" >&2; exit 1',
}
_MISSING_DEFAULT = 'echo "renderloop: not found on PATH; no review written" >&2; exit 0'


def shim(name: str) -> str:
    missing = _MISSING.get(name, _MISSING_DEFAULT)
    return (
        "#!/bin/sh\n"
        f"# renderloop {name} hook, written by `renderloop init`: the logic is in `renderloop hook`.\n"
        f"command -v renderloop >/dev/null 2>&1 || {{ {missing}; }}\n"
        f'exec renderloop hook {name} "$@"\n'
    )


GITATTRIBUTES = """\
# renderloop: the ledger merges by union (appends from two machines both land)
ledger.jsonl merge=union text eol=lf
*.png binary -delta
*.jsonl text eol=lf
*.json text eol=lf
*.yaml text eol=lf
*.yml text eol=lf
*.md text eol=lf
hooks/* text eol=lf
"""

GITIGNORE = """\
# renderloop: temporary files of interrupted writes
.*.tmp
# contact sheets (`renderloop review --html`): rebuilt from the reviews at will
renders/*/review.html
"""
