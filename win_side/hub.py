"""The hub: the bare repository on the GPU box the Mac pushes to over SSH (``renderloop hub init``).

It refuses what would rewrite the studio's history (a non-fast-forward push,
a deleted branch or tag) and checks every object it receives.  The worker
clones it on the same disk and watches its refs (``win_side.watch``), so a
push starts rendering at once.
"""
from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from studio import git
from studio.errors import FatalError

# What the hub refuses, and what it checks: git config of the bare repository.
HUB_SETTINGS = (
    ("receive.denyNonFastForwards", "true"),  # no force-push: verdicts and renders are never dropped
    ("receive.denyDeletes", "true"),  # no deleted branch or tag
    ("receive.fsckObjects", "true"),  # a corrupt or malformed object is refused at the door
    ("core.logAllRefUpdates", "true"),  # a reflog of every push, for the record
    # `renderloop clone` makes partial clones: without these git ignores its filter and sends every image
    ("uploadpack.allowFilter", "true"),
    ("uploadpack.allowAnySHA1InWant", "true"),  # a thin clone fetches a left-out image by its blob id
)


@dataclass(frozen=True)
class Hub:
    path: Path  # the bare repository, absolute
    created: bool  # False: it existed and was only (re)configured
    remote_url: str  # what the Mac adds as its remote (ssh://user@host/path)

    def remote_add(self, name: str = "origin") -> str:
        return f"git remote add {name} {self.remote_url}"

    def clone_line(self, into: Optional[Path] = None) -> str:
        target = into if into is not None else self.path.with_name(self.path.name.removesuffix(".git") + "-worker")
        return f"git clone {_quoted(str(self.path))} {_quoted(str(target))}"


def ssh_url(path: Path, user: Optional[str] = None, host: Optional[str] = None) -> str:
    """``ssh://user@host/path`` for ``path`` on this machine (a Windows drive path as ``/C:/...``)."""
    user = user or getpass.getuser()
    host = host or socket.gethostname()
    posix = path.as_posix()
    if not posix.startswith("/"):
        posix = "/" + posix  # C:/studio.git -> /C:/studio.git
    return f"ssh://{user}@{host}{posix}"


def init_hub(path: Path, branch: str = "main", user: Optional[str] = None, host: Optional[str] = None) -> Hub:
    """Make (or re-configure) the bare repository at ``path``; the hub and the Mac's remote URL."""
    path = path.expanduser().absolute()
    created = True
    if path.exists():
        if not path.is_dir():
            raise FatalError(f"{path}: exists and is not a folder")
        if (path / ".git").exists():
            raise FatalError(f"{path}: a repository with a working tree, not a bare one; choose another path")
        if any(path.iterdir()):
            if not ((path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()):
                raise FatalError(f"{path}: a folder that is not empty and not a bare repository; choose another path")
            if git.out(path, "rev-parse", "--is-bare-repository") != "true":
                raise FatalError(f"{path}: a repository with a working tree, not a bare one; choose another path")
            created = False
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
        git.run(path.parent, "init", "--bare", "--quiet", f"--initial-branch={branch}", str(path))
    for key, value in HUB_SETTINGS:
        git.config_set(path, key, value)
    return Hub(path, created, ssh_url(path, user, host))


def _quoted(text: str) -> str:
    return f'"{text}"' if any(c.isspace() for c in text) else text
