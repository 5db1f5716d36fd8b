"""The studio's git hook templates (``hooks/``) and ``.gitattributes``.

A hook only calls ``renderloop hook NAME``: the logic lives in the installed
package, never in the repository.  The tracked ``hooks/NAME`` is a template:
git never runs it.  ``renderloop init`` installs this renderloop's own shim
inside ``.git/hooks`` with ``PYTHON=`` set to the very interpreter renderloop
is installed in, so a commit from a GUI client or an unactivated shell still
finds it; a pushed change to ``hooks/`` runs nowhere, ever: a template that
is not renderloop's shim is refused.
"""
from __future__ import annotations

import re
import sys

# How renderloop is started in a folder it does not trust (a studio: what anyone who can push wrote).
# `python -m renderloop` would put that folder first on Python's path, so a pushed renderloop/ or studio/
# package would run instead of the installed one; `-c` puts '' there, which this line takes out first.
# (`-P` does the same, from Python 3.11 only.) PYTHONPATH and the installation's own path still count.
BOOT = "import sys; sys.path[:1] = [p for p in sys.path[:1] if p]; from renderloop.main import entry; entry()"


def renderloop_argv(python: str = sys.executable) -> list[str]:
    """The command line that runs the installed renderloop with ``python``, whatever folder it starts in."""
    return [python, "-c", BOOT]


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
        f'exec "$PYTHON" -c \'{BOOT}\' hook {name} "$@"\n'
    )


# What older renderloops wrote as the last line of hooks/NAME: still renderloop's own hook (rewritten on init).
_EARLIER_LAST_LINES = ('exec "$PYTHON" -m renderloop hook {name} "$@"\n',)


def is_shim(name: str, text: str) -> bool:
    """``text`` is renderloop's hook ``name`` (this version's or an earlier one's), whatever its PYTHON= line.

    Anything else in ``hooks/`` is repository content that would run on this machine: never installed.
    """
    text = PYTHON_LINE.sub("PYTHON=python3", text, count=1)
    current = shim(name)
    if text == current:
        return True
    head = current[: current.rindex("exec ")]
    return any(text == head + line.format(name=name) for line in _EARLIER_LAST_LINES)


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
