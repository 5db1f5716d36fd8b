"""Thin clones: every commit, batch file, record, review and the ledger, but only some batches' images.

A thin clone is a partial clone (``--filter=blob:none``: a blob is fetched
when something needs it) with a sparse checkout that leaves out the PNGs of
the batches it names, one pattern each (``!/renders/<batch>/*.png``), after
``/*`` (everything else). Batches that arrive later have their images
checked out as usual. :func:`open_batches` brings the images of some batches
in: their patterns go, and one ``git`` call fetches and checks out what they
lacked. Everything renderloop decides from the checkout reads the index
(which lists every file, checked out or not), never the disk, so a thin
clone gives the same answers as a full one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from studio import git
from studio.errors import FatalError
from studio.layout import RENDERS, batch_id_problem, checked_batch_id

EVERYTHING = "/*"
CLONE_TIMEOUT = 4 * 3600.0  # --all over a slow line is gigabytes; a dead one is cut by git's own limits


def _pattern(batch: str) -> str:
    return f"!/{RENDERS}/{batch}/*.png"


@dataclass
class Cloned:
    path: Path
    batches: list[str] = field(default_factory=list)  # every batch with renders, newest first
    left_out: list[str] = field(default_factory=list)  # batches whose images are not checked out
    full: bool = False  # the remote does not serve partial clones: every image was fetched all the same


# What git says when the remote ignores --filter (uploadpack.allowFilter unset): the clone is then full.
FILTER_IGNORED = "filtering not recognized by server"


def clone(url: str, dest: Path, newest: Optional[int]) -> Cloned:
    """Clone ``url`` into ``dest`` with the images of the ``newest`` batches only (None: every image)."""
    if dest.exists() and any(dest.iterdir()):
        raise FatalError(f"{dest}: already exists and is not empty")
    if newest is not None and newest < 0:
        raise FatalError(f"--batches {newest}: give a number of batches, 0 or more")
    _, _, said = git.run(dest.parent if dest.parent.is_dir() else Path.cwd(), "clone", "--quiet",
                         "--filter=blob:none", "--no-checkout", url, str(dest), timeout=CLONE_TIMEOUT)
    result = Cloned(dest.resolve(), full=FILTER_IGNORED in said)
    branch = git.current_branch(dest)
    if branch is None or git.head(dest) is None:
        raise FatalError(f"{url}: the remote has no branch to check out")
    result.batches = by_age(dest, "HEAD")
    result.left_out = result.batches[newest:] if newest is not None else []
    if result.left_out:
        _set(dest, result.left_out)
    git.run(dest, "checkout", "--quiet", branch)  # fetches the blobs of the checkout, in one go
    return result


def by_age(repo: Path, rev: str) -> list[str]:
    """Batches with files under renders/ in ``rev``, the most recently committed first (trees only: no blobs)."""
    seen: dict[str, None] = {}
    text = git.out(repo, "log", "--format=", "--name-only", "--no-renames", rev, "--", f"{RENDERS}/")
    for rel in text.splitlines():
        parts = rel.split("/")
        if len(parts) == 3 and batch_id_problem(parts[1]) is None:
            seen.setdefault(parts[1], None)
    present = set(git.out(repo, "ls-tree", "--name-only", f"{rev}:{RENDERS}").splitlines()) if seen else set()
    return [batch for batch in seen if batch in present]


def is_sparse(repo: Path) -> bool:
    return (git.config_get(repo, "core.sparseCheckout") or "").lower() == "true"


def left_out(repo: Path) -> set[str]:
    """The batches whose images this clone leaves out (empty in a full clone)."""
    if not is_sparse(repo):
        return set()
    found = set()
    for line in _patterns_file(repo).read_text(encoding="utf-8").splitlines() if _patterns_file(repo).is_file() else []:
        parts = line.strip().split("/")
        if len(parts) == 4 and parts[0] == "!" and parts[1] == RENDERS and parts[3] == "*.png":
            found.add(parts[2])
    return found


def open_batches(repo: Path, batches: list[str]) -> list[str]:
    """Bring the images of ``batches`` into this clone; returns those that were left out."""
    for batch in batches:
        checked_batch_id(batch)
    excluded = left_out(repo)
    opened = [batch for batch in batches if batch in excluded]
    if opened:
        _set(repo, sorted(excluded - set(opened)))
    return opened


def _set(repo: Path, excluded: list[str]) -> None:
    patterns = [EVERYTHING, *(_pattern(batch) for batch in excluded)]
    git.run(repo, "sparse-checkout", "set", "--no-cone", *patterns)


def _patterns_file(repo: Path) -> Path:
    return git.git_dir(repo) / "info" / "sparse-checkout"


def add_options(repo: Path) -> list[str]:
    """``--sparse`` in a thin clone: ``git add`` then stages files its checkout leaves out (a re-render)."""
    return ["--sparse"] if is_sparse(repo) else []
