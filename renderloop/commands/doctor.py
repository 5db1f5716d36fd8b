"""``renderloop doctor``: what this machine has for the loop, one line each (ok, warn, FAIL).

On either machine: Python, git, the git identity, the hooks, the remote, and
a force-push that took verdicts (until `ledger verify --full` accepts it).
With ``--worker`` (or ``--comfyui URL``), as the GPU box: each ComfyUI
server and what it lacks for each model.  Always: the fal key (its length,
never its value) and mflux.  Exit 1 when something blocks the loop.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from renderloop.options import add_command, add_repo
from studio.errors import FatalError

if TYPE_CHECKING:
    from renderloop.options import Subcommands
    from studio.config import StudioConfig
    from studio.layout import Studio

OK, WARN, FAIL = "ok", "warn", "FAIL"
MIN_PYTHON = (3, 10)


def add_parser(sub: Subcommands) -> None:
    from win_side.backends import BACKENDS

    p = add_command(sub, "doctor", "check this machine for the loop: git, hooks, remote, backends (one line each)", run)
    add_repo(p)
    p.add_argument("--worker", action="store_true",
                   help="check as the GPU box: its ComfyUI servers must answer, its own git identity is enough")
    p.add_argument("--backend", choices=tuple(BACKENDS), default="comfyui",
                   help="with --worker: the backend the worker renders with")
    p.add_argument("--comfyui", action="append", default=[], metavar="URL",
                   help="a ComfyUI server to check (repeat for several; default: worker.comfyui in this machine's settings)")


def run(args: argparse.Namespace) -> int:
    return doctor(args.repo, worker=args.worker or bool(args.comfyui), backend=args.backend, comfyui=args.comfyui)


class Report:
    def __init__(self) -> None:
        self.failed = 0

    def line(self, status: str, text: str) -> None:
        if status == FAIL:
            self.failed += 1
        print(f"{status:<4}  {text}", flush=True)


def doctor(repo: Path, worker: bool = False, backend: str = "comfyui", comfyui: Optional[list[str]] = None) -> int:
    report = Report()
    python = ".".join(str(part) for part in sys.version_info[:3])
    report.line(OK if sys.version_info >= MIN_PYTHON else FAIL, f"Python {python} ({sys.executable})")
    if not _git(report, repo):
        return 1
    studio = _studio(report, repo)
    if studio is not None:
        _identity(report, studio, worker)
        _hooks(report, studio, worker)
        _remote(report, studio)
        _rewrites(report, studio)
    config = _config(report, studio) if studio is not None else None
    if config is not None and studio is not None and worker:
        from studio.machine import load_machine

        servers = comfyui or list(load_machine({"worker.comfyui": comfyui}).worker.comfyui)
        _comfyui(report, config, studio, servers, blocking=backend == "comfyui")
    _fal(report, blocking=worker and backend == "fal")
    if config is not None:
        _mflux(report, config, blocking=worker and backend == "mflux")
    return 1 if report.failed else 0


def _git(report: Report, repo: Path) -> bool:
    from studio import git

    where = repo if repo.is_dir() else Path.cwd()
    try:
        said, numbers = git.version(where)
    except (OSError, FatalError) as exc:
        report.line(FAIL, f"git: cannot run it ({exc}); install git and put it on PATH")
        return False
    if numbers < git.MIN_VERSION:
        wanted = ".".join(str(n) for n in git.MIN_VERSION)
        report.line(FAIL, f"git {said}: renderloop needs git {wanted} or later")
        return True
    report.line(OK, f"git {said}")
    return True


def _studio(report: Report, repo: Path) -> Optional[Studio]:
    from studio.layout import open_studio

    try:
        studio = open_studio(repo, require_git=True)
    except FatalError as exc:
        report.line(FAIL, f"studio: {exc}")
        return None
    report.line(OK, f"studio at {studio.root}")
    return studio


def _identity(report: Report, studio: Studio, worker: bool) -> None:
    from studio import git

    unset = git.identity_unset(studio.root)
    if not unset:
        name, email = git.config_get(studio.root, "user.name"), git.config_get(studio.root, "user.email")
        who = f"{name} <{email}>" if name and email else "from the environment (GIT_AUTHOR_NAME, EMAIL...)"
        report.line(OK, f"git identity: {who}")
        return
    fix = 'git config --global user.name "Your Name" && git config --global user.email you@example.com'
    if worker:
        report.line(WARN, f"git identity: {' and '.join(unset)} not set; the worker commits as "
                          f"'renderloop worker NAME <name@renderloop.invalid>' (to choose: {fix})")
    else:
        report.line(FAIL, f"git identity: {' and '.join(unset)} not set, so commits here fail: {fix}")


def _hooks(report: Report, studio: Studio, worker: bool) -> None:
    from mac_side.init import hooks_problems

    problems = hooks_problems(studio)
    if not problems:
        report.line(OK, "hooks enabled and current")
    elif worker:
        report.line(OK, f"hooks: {'; '.join(problems)} (the worker runs no hooks; a person's clone needs them)")
    else:
        report.line(WARN, f"hooks: {'; '.join(problems)}: run `renderloop init .` (without them batches are not "
                          "checked at commit and pulls write no review)")


def _remote(report: Report, studio: Studio) -> None:
    from studio import git

    url = git.remote_url(studio.root, "origin")
    if url is None:
        report.line(FAIL, "remote: this clone has no remote 'origin': nothing can be pushed or pulled "
                          "(git remote add origin URL)")
        return
    shown = git.without_password(url)
    branch = git.current_branch(studio.root) or "main"
    try:
        sha = git.ls_remote_head(studio.root, "origin", branch)
    except git.GitError as exc:
        reason = git.reason(exc)
        report.line(FAIL, f"remote origin ({shown}): {reason}")
        return
    if sha is None:
        report.line(WARN, f"remote origin ({shown}) answers but has no branch {branch} yet (git push -u origin {branch})")
    else:
        report.line(OK, f"remote origin ({shown}) answers: {branch} at {sha[:10]}")


def _rewrites(report: Report, studio: Studio) -> None:
    from mac_side.status import rewrites

    for note in rewrites(studio):  # verdicts a force-push took, until `ledger verify --full` accepts
        report.line(WARN, note)


def _config(report: Report, studio: Studio) -> Optional[StudioConfig]:
    from studio.config import load_config

    try:
        return load_config(studio)
    except FatalError as exc:
        report.line(FAIL, f"renderloop.yaml: {' '.join(str(exc).split())}")
        return None


def _comfyui(report: Report, config: StudioConfig, studio: Studio, urls: list[str], blocking: bool) -> None:
    from win_side.doctor import check_comfyui

    if not urls:
        report.line(FAIL if blocking else WARN, "ComfyUI: no server (worker.comfyui in this machine's settings, or --comfyui URL)")
        return
    for check in check_comfyui(config, studio.root, urls):
        if check.problem is not None:
            report.line(FAIL if blocking else WARN, f"ComfyUI at {check.url} not answering: {check.problem}")
            continue
        ready = sorted(model for model, lacks in check.lacks.items() if not lacks)
        report.line(OK, f"ComfyUI at {check.url} answers; ready for {', '.join(ready) or 'no model'}")
        for model, lacks in sorted(check.lacks.items()):
            if lacks:
                report.line(WARN, f"ComfyUI at {check.url} lacks for {model}: {', '.join(lacks)} "
                                  f"(its images fail as missing-model)")
        for model, problem in sorted(check.unbuildable.items()):
            report.line(WARN, f"model {model}: {' '.join(problem.split())}")


def _fal(report: Report, blocking: bool) -> None:
    from win_side.doctor import fal_key_length

    length = fal_key_length()
    if length:
        report.line(OK, f"FAL_KEY set ({length} characters)")
    else:
        report.line(FAIL if blocking else WARN, "FAL_KEY not set (needed only to render with fal: "
                                                "export FAL_KEY=... in the worker's environment)")


def _mflux(report: Report, config: StudioConfig, blocking: bool) -> None:
    from studio.machine import load_machine
    from win_side.doctor import mflux_commands

    mflux_bin = load_machine().mac.mflux_bin
    found = mflux_commands(config, mflux_bin)
    if not found:
        report.line(WARN, "mflux: no model in renderloop.yaml has an mflux program")
        return
    missing = sorted(command for command, path in found.items() if path is None)
    if not missing:
        report.line(OK, f"mflux present ({', '.join(sorted(found))})")
        return
    where = f"in {mflux_bin} (mac.mflux_bin)" if mflux_bin else "on PATH"
    report.line(FAIL if blocking else WARN, f"mflux: {', '.join(missing)} not {where} (needed only for "
                                            "`renderloop local` and --backend mflux, on a Mac with Apple silicon: "
                                            "pip install -e \".[mflux]\")")
