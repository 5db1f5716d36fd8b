"""Make a studio, or enable the hooks in a clone of one (``renderloop init``)."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from studio import git
from studio.config import DEFAULT_CONFIG_YAML
from studio.errors import FatalError
from studio.fsutil import read_or_none, write_text_atomic
from studio.layout import BATCHES, CONFIG_NAME, HOOKS, LEDGER_NAME, RENDERS, Studio
from studio.shims import GITATTRIBUTES, GITIGNORE, HOOK_NAMES, shim


def studio_files() -> dict[str, str]:
    """Every file a new studio starts with, by path."""
    files = {
        CONFIG_NAME: DEFAULT_CONFIG_YAML,
        ".gitattributes": GITATTRIBUTES,
        ".gitignore": GITIGNORE,
        f"{BATCHES}/.gitkeep": "",
        f"{RENDERS}/.gitkeep": "",
        LEDGER_NAME: "",
    }
    files.update({f"{HOOKS}/{name}": shim(name) for name in HOOK_NAMES})
    return files


@dataclass
class Initialized:
    """What :func:`init` did."""

    root: Path
    new_repository: Optional[Path] = None  # the folder where a git repository was initialized
    created: bool = False  # a new studio was written and committed
    changes: list[str] = field(default_factory=list)  # what was enabled in an existing studio


def init(path: Path) -> Initialized:
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise FatalError(f"{root}: not a folder")
    root.mkdir(parents=True, exist_ok=True)
    new_repository = None
    if not git.is_repo(root):
        git.run(root, "init", "--quiet")
        new_repository = root.resolve()
    top = git.toplevel(root)
    if top.resolve() != root.resolve():
        raise FatalError(f"{root} is inside the git repository {top}: run `renderloop init {top}` instead")
    studio = Studio.at(root)
    if studio.is_studio():
        return Initialized(studio.root, new_repository, changes=_enable_existing(studio))
    written = _write_missing(studio)
    _make_shims_executable(studio)
    git.add(studio.root, *written)
    git.run(studio.root, "update-index", "--chmod=+x", "--", *(f"{HOOKS}/{n}" for n in HOOK_NAMES))
    git.commit(studio.root, "renderloop: new studio", *written)
    git.config_set(studio.root, "core.hooksPath", HOOKS)
    _set_pull_settings(studio)
    return Initialized(studio.root, new_repository, created=True)


def _shim_current(studio: Studio, name: str) -> bool:
    """True when ``hooks/NAME`` is the shim this renderloop writes (a link or a large file is not)."""
    wanted = shim(name).encode("utf-8")
    try:
        return read_or_none(studio.hooks_dir / name, len(wanted) + 1, studio.root) == wanted
    except FatalError:
        return False


def _enable_existing(studio: Studio) -> list[str]:
    changes = []
    if git.config_get(studio.root, "core.hooksPath") != HOOKS:
        git.config_set(studio.root, "core.hooksPath", HOOKS)
        changes.append("enabled the hooks (core.hooksPath=hooks)")
    changed = _set_pull_settings(studio)
    if changed:
        changes.append("set " + ", ".join(changed) + " in this clone (so a plain `git pull` works)")
    missing = [name for name in HOOK_NAMES if not _shim_current(studio, name)]
    if missing:
        for name in missing:
            write_text_atomic(studio.hooks_dir / name, shim(name))
        changes.append(f"wrote the missing or outdated hook shims {', '.join(missing)} (commit them)")
    if _make_shims_executable(studio):
        changes.append("made the hook shims executable")
    return changes


def hooks_problems(studio: Studio) -> list[str]:
    """Why this clone's hooks do not run as ``renderloop init`` leaves them (empty: enabled and current).

    The one answer to "are the hooks enabled?": core.hooksPath names the
    shims, and each shim is there, as this renderloop writes it, executable.
    """
    problems = []
    configured = git.config_get(studio.root, "core.hooksPath")
    if configured != HOOKS:
        problems.append("not enabled (core.hooksPath is " + (f"{configured!r}" if configured else "unset") + ")")
    missing = [name for name in HOOK_NAMES if not (studio.hooks_dir / name).is_file()]
    if missing:
        problems.append(f"shims missing: {', '.join(missing)}")
    stale = [name for name in HOOK_NAMES if name not in missing
             and (studio.hooks_dir / name).read_text(encoding="utf-8", errors="replace") != shim(name)]
    if stale:
        problems.append(f"shims not as this renderloop writes them: {', '.join(stale)}")
    if os.name != "nt":
        idle = [name for name in HOOK_NAMES if name not in missing
                and not os.access(studio.hooks_dir / name, os.X_OK)]
        if idle:
            problems.append(f"shims not executable: {', '.join(idle)}")
    return problems


# Set in the clone (local config wins over the person's global one), so that the
# plain `git pull` the README prints works whatever that global config says:
# - pull.rebase=true: a pull over local commits (a batch committed while the
#   worker pushed) replays them on the worker's commits; no "divergent
#   branches" question, no merge commit, no editor. The hooks follow rebases
#   (post-rewrite, post-checkout) as well as merges.
# - pull.ff=true: a global `pull.ff=only` would refuse exactly that pull.
# - rebase.autoStash, merge.autoStash: the hooks stage the review they write,
#   and a pull that must rebase or merge would refuse to start over it.
PULL_SETTINGS = {"pull.rebase": "true", "pull.ff": "true", "rebase.autoStash": "true", "merge.autoStash": "true"}


def _set_pull_settings(studio: Studio) -> list[str]:
    """Set each of :data:`PULL_SETTINGS` git does not already read as wanted; the ones set."""
    changed = []
    for key, value in PULL_SETTINGS.items():
        if (git.config_get(studio.root, key) or "").lower() != value:
            git.config_set(studio.root, key, value)
            changed.append(f"{key}={value}")
    return changed


def _write_missing(studio: Studio) -> list[str]:
    written = []
    for rel, text in studio_files().items():
        target = studio.root / rel
        if target.exists():
            continue
        write_text_atomic(target, text)
        written.append(rel)
    return written


def _make_shims_executable(studio: Studio) -> bool:
    changed = False
    if os.name == "nt":  # git for Windows runs hooks through sh whatever the mode
        return changed
    for name in HOOK_NAMES:
        shim_path = studio.hooks_dir / name
        if shim_path.is_file():
            mode = shim_path.stat().st_mode
            wanted = mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
            if mode != wanted:
                shim_path.chmod(wanted)
                changed = True
    return changed
