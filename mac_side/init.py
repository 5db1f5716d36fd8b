"""Make a studio, or enable the hooks in a clone of one (``renderloop init``)."""
from __future__ import annotations

import difflib
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from studio import git
from studio.config import DEFAULT_CONFIG_YAML
from studio.errors import FatalError
from studio.fsutil import write_text_atomic
from studio.layout import BATCHES, CONFIG_NAME, HOOKS, LEDGER_NAME, RENDERS, Studio
from studio.shims import GITATTRIBUTES, GITIGNORE, HOOK_NAMES, PYTHON_LINE, installed, is_shim, shim


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
    hooks: Optional["HookInstall"] = None  # the hooks installed inside .git


@dataclass
class HookInstall:
    """What :func:`install_hooks` did."""

    folder: Path  # where git looks for this clone's hooks (.git/hooks)
    python: str  # the interpreter the installed hooks run
    diffs: list[str] = field(default_factory=list)  # installed vs new, unified, for each hook that changed
    changes: list[str] = field(default_factory=list)  # one line each


def init(path: Path) -> Initialized:
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise FatalError(f"{root}: not a folder")
    root.mkdir(parents=True, exist_ok=True)
    new_repository = None
    if not git.is_repo(root):
        # main, as `renderloop hub init` and the docs say, unless this person chose another default
        chosen = git.config_get(root, "init.defaultBranch")
        git.run(root, "init", "--quiet", f"--initial-branch={chosen or 'main'}")
        new_repository = root.resolve()
    top = git.toplevel(root)
    if top.resolve() != root.resolve():
        raise FatalError(f"{root} is inside the git repository {top}: run `renderloop init {top}` instead")
    studio = Studio.at(root)
    if studio.is_studio():
        hooks = install_hooks(studio)
        return Initialized(studio.root, new_repository, changes=_enable_existing(studio, hooks), hooks=hooks)
    written = _write_missing(studio)
    _make_shims_executable(studio)
    git.add(studio.root, *written)
    git.run(studio.root, "update-index", "--chmod=+x", "--", *(f"{HOOKS}/{n}" for n in HOOK_NAMES))
    git.commit(studio.root, "renderloop: new studio", *written)
    hooks = install_hooks(studio)
    _set_pull_settings(studio)
    return Initialized(studio.root, new_repository, created=True, hooks=hooks)


def _template_missing(studio: Studio, name: str) -> bool:
    """True when there is no ``hooks/NAME`` template at all (a link or a folder is refused, not replaced)."""
    path = studio.hooks_dir / name
    return not path.is_symlink() and not path.exists()


def _earlier_template(studio: Studio, name: str) -> bool:
    """True when ``hooks/NAME`` is an earlier renderloop's shim (a plain file, renderloop's, not this one's)."""
    path = studio.hooks_dir / name
    if path.is_symlink() or not path.is_file() or path.stat().st_size > 64 * 1024:
        return False
    text = path.read_text(encoding="utf-8", errors="replace")
    return text != shim(name) and is_shim(name, text)


def _enable_existing(studio: Studio, hooks: "HookInstall") -> list[str]:
    changes = list(hooks.changes)
    changed = _set_pull_settings(studio)
    if changed:
        changes.append("set " + ", ".join(changed) + " in this clone (so a plain `git pull` works)")
    missing = [name for name in HOOK_NAMES if _template_missing(studio, name)]
    if missing:
        for name in missing:
            write_text_atomic(studio.hooks_dir / name, shim(name))
        changes.append(f"wrote the missing hook templates {', '.join(missing)} (commit them)")
    earlier = [name for name in HOOK_NAMES if name not in missing and _earlier_template(studio, name)]
    if earlier:
        for name in earlier:
            write_text_atomic(studio.hooks_dir / name, shim(name))
        changes.append(f"updated the hook templates {', '.join(earlier)} to this renderloop's (commit them)")
    if _make_shims_executable(studio):
        changes.append("made the hook shims executable")
    return changes


def hooks_problems(studio: Studio, python: str = sys.executable) -> list[str]:
    """Why this clone's hooks do not run as ``renderloop init`` installs them (empty: installed and current).

    The one answer to "are the hooks enabled?": each hook is in ``.git/hooks``
    as this renderloop would install it from the ``hooks/`` template (for
    this Python), executable, and no ``core.hooksPath`` sends git elsewhere.
    """
    problems = []
    configured = git.config_get(studio.root, "core.hooksPath")
    if configured is not None:
        where = "the tracked hooks/" if _is_tracked_hooks(studio, configured) else repr(configured)
        problems.append(f"core.hooksPath sends git to {where} instead of the installed hooks")
    folder = hooks_folder(studio)
    missing = [name for name in HOOK_NAMES if not (folder / name).is_file()]
    if missing:
        problems.append(f"not installed in {folder}: {', '.join(missing)}")
    python = Path(python).as_posix()
    stale = []
    refused = []
    for name in HOOK_NAMES:
        template = _template(studio, name)
        if isinstance(template, Refused):
            refused.append(f"hooks/{name} {template.why}")
            continue
        if name in missing:
            continue
        if (folder / name).read_text(encoding="utf-8", errors="replace") != installed(template, python):
            stale.append(name)
    if refused:  # a pulled change, never installed: renderloop's own hook goes on running
        problems.append("; ".join(refused) + ": delete it and `renderloop init .` writes renderloop's own")
    if stale:
        problems.append(f"not as `renderloop init .` would install them now (hooks/ changed, or another Python): "
                        f"{', '.join(stale)}")
    if os.name != "nt":
        idle = [name for name in HOOK_NAMES if name not in missing and not os.access(folder / name, os.X_OK)]
        if idle:
            problems.append(f"not executable: {', '.join(idle)}")
    return problems


def hooks_folder(studio: Studio) -> Path:
    """Where git looks for this clone's own hooks (``.git/hooks``; worktrees and GIT_DIR respected)."""
    path = Path(git.out(studio.root, "rev-parse", "--git-path", "hooks").strip())
    return path if path.is_absolute() else studio.root / path


def install_hooks(studio: Studio, python: str = sys.executable) -> HookInstall:
    """Install the hooks inside ``.git/hooks`` from the ``hooks/`` templates.

    Each installed hook runs ``python`` (the interpreter renderloop is
    installed in) and nothing else from the tree: what is installed is this
    renderloop's own shim, and a template that is anything else (a pushed
    change) is refused, never installed. A change to what is installed is
    returned as a difference for the command to show.  An older studio's
    ``core.hooksPath=hooks`` (which made git run the tracked files) is removed.
    """
    changes = []
    hooks_path = git.config_get(studio.root, "core.hooksPath")
    if hooks_path is not None and _is_tracked_hooks(studio, hooks_path):
        git.run(studio.root, "config", "--local", "--unset-all", "core.hooksPath")
        changes.append("git no longer runs the tracked hooks/ (removed core.hooksPath=hooks)")
    elif hooks_path is not None:
        changes.append(f"warning: core.hooksPath={hooks_path} is set, so git runs hooks from there, not these")
    folder = hooks_folder(studio)
    folder.mkdir(parents=True, exist_ok=True)
    python = Path(python).as_posix()  # git for Windows runs hooks with sh: forward slashes
    diffs = []
    done: dict[str, list[str]] = {"installed": [], "updated": []}
    for name in HOOK_NAMES:
        template = _template(studio, name)
        if isinstance(template, Refused):
            changes.append(f"hooks/{name}: {template.why}; not installed")
            continue
        target = folder / name
        new = installed(template, python)
        old = target.read_text(encoding="utf-8", errors="replace") if target.is_file() else None
        if old == new:
            continue
        if old is not None:
            diff = difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True),
                fromfile=f"{studio.rel(target) if _inside(studio, target) else target} (installed)",
                tofile=f"hooks/{name} (installing)",
            )
            diffs.append("".join(diff))
        write_text_atomic(target, new)
        if os.name != "nt":
            target.chmod(0o755)
        done["updated" if old is not None else "installed"].append(name)
    for verb, names in done.items():
        if names:
            changes.append(f"{verb} the hooks {', '.join(names)} in {folder} (running {python})")
    return HookInstall(folder, python, diffs, changes)


class Refused:
    def __init__(self, why: str) -> None:
        self.why = why


def _template(studio: Studio, name: str) -> "str | Refused":
    """The template ``hooks/NAME`` (the built-in one when the studio has none)."""
    path = studio.hooks_dir / name
    if path.is_symlink() or (path.exists() and not path.is_file()):
        return Refused("is not a plain file")
    if not path.exists():
        return shim(name)
    if path.stat().st_size > 64 * 1024:
        return Refused("is larger than 64 KB")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not PYTHON_LINE.search(text):
        return Refused("has no PYTHON= line for the interpreter")
    if not is_shim(name, text):  # a pushed change would run on this machine: what is installed is renderloop's
        return Refused("is not renderloop's hook (it would run other commands on this machine)")
    return shim(name)  # this renderloop's, also over an earlier renderloop's template


def _is_tracked_hooks(studio: Studio, value: str) -> bool:
    target = Path(value) if Path(value).is_absolute() else studio.root / value
    return target.resolve() == studio.hooks_dir.resolve()


def _inside(studio: Studio, path: Path) -> bool:
    try:
        path.resolve().relative_to(studio.root)
    except ValueError:
        return False
    return True


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
        if shim_path.is_file() and not shim_path.is_symlink():  # never chmod a link's target
            mode = shim_path.stat().st_mode
            wanted = mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
            if mode != wanted:
                shim_path.chmod(wanted)
                changed = True
    return changed
