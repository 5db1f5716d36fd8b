"""The studio's git hook templates (``hooks/``) and ``.gitattributes``.

A hook only calls ``renderloop hook NAME``: the logic lives in the installed
package, never in the repository.  The tracked ``hooks/NAME`` is a template:
git never runs it.  ``renderloop init`` installs a copy inside ``.git/hooks``
with ``PYTHON=`` set to the very interpreter renderloop is installed in, so
a commit from a GUI client or an unactivated shell still finds it, and a
pushed change to ``hooks/`` runs nowhere until a person installs it again
(seeing the difference first).
"""
from __future__ import annotations

import re

HOOK_NAMES = ("pre-commit", "post-merge", "post-rewrite", "post-checkout")
PYTHON_LINE = re.compile(r"^PYTHON=.*$", re.M)  # the line `renderloop init` fills in

# pre-commit guards the ledger: without renderloop it must stop the commit.
_MISSING = {
    "pre-commit": "the commit was stopped",
}
_MISSING_DEFAULT = "no review written"


def shim(name: str) -> str:
    """The template of hook ``name``, as tracked in ``hooks/``."""
    stops = name in _MISSING
    consequence = _MISSING.get(name, _MISSING_DEFAULT)
    return (
        "#!/bin/sh\n"
        f"# renderloop {name} hook. This tracked file is the template `renderloop init` installs into\n"
        "# .git/hooks with PYTHON set to the interpreter renderloop is installed in; git never runs it here.\n"
        "PYTHON=python3\n"
        '[ -x "$PYTHON" ] || { echo "renderloop: $PYTHON, the Python renderloop was installed with, is gone: '
        f'reinstall renderloop, then run renderloop init . ({consequence})" >&2; exit {1 if stops else 0}; }}\n'
        f'exec "$PYTHON" -m renderloop hook {name} "$@"\n'
    )


def installed(template: str, python: str) -> str:
    """The hook to install from ``template``: its ``PYTHON=`` line names ``python``, quoted for sh."""
    quoted = "'" + python.replace("'", "'\\''") + "'"
    return PYTHON_LINE.sub(lambda _: f"PYTHON={quoted}", template, count=1)


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
