"""The one git helper, and a flat set of small functions, one git call each.

Every git command renderloop runs goes through :func:`run`, which uses
GitPython's command wrapper (no shell, no console windows on Windows) and
raises :class:`GitError` carrying the command, its exit code and stderr.
No ``Repo`` object is ever kept: a long-lived one leaks processes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import cast

from git.cmd import Git
from git.exc import GitCommandError, GitCommandNotFound

from studio.errors import FatalError

# Variables git exports to hooks; a git command run from a hook must not
# inherit them or it may act on the wrong repository or index.
_KEEP_GIT_VARS = frozenset(
    {
        "GIT_EXEC_PATH",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_SSL_CAINFO",
        "GIT_SSL_NO_VERIFY",
        "GIT_ASKPASS",
        "GIT_TERMINAL_PROMPT",
        "GIT_ALLOW_PROTOCOL",
        "GIT_HTTP_PROXY_AUTHMETHOD",
    }
)


class GitError(FatalError):
    """A git command failed: carries the command, exit code and stderr."""

    def __init__(self, cmd: list[str], returncode: int, stderr: str, stdout: str = "") -> None:
        self.cmd = cmd
        self.returncode = returncode
        self.stderr = stderr.strip()
        self.stdout = stdout.strip()
        detail = self.stderr.splitlines()[-1] if self.stderr else "no output"
        super().__init__(f"`{' '.join(cmd)}` failed with exit code {returncode}: {detail}")


def clean_environ(keep_index: bool = False) -> None:
    """Drop the GIT_* variables git sets for hooks from this process's environment.

    ``keep_index`` keeps GIT_INDEX_FILE (made absolute): a pre-commit hook must
    stage into the index the commit is being built from (``git commit -a``
    builds it in ``index.lock``), not the main one.
    """
    for name in list(os.environ):
        if not name.startswith("GIT_") or name in _KEEP_GIT_VARS:
            continue
        if name.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_")) or name == "GIT_CONFIG_COUNT":
            continue
        if keep_index and name == "GIT_INDEX_FILE":
            os.environ[name] = str(Path(os.environ[name]).absolute())
            continue
        del os.environ[name]


def run(
    cwd: Path,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> tuple[int, str, str]:
    """Run ``git ARGS`` in ``cwd``; return (exit code, stdout, stderr).

    With ``check`` (the default) a non-zero exit raises :class:`GitError`.
    """
    cwd = Path(cwd)
    if not cwd.is_dir():
        # GitPython silently falls back to the current folder for a missing cwd.
        raise FatalError(f"{cwd}: no such folder")
    cmd = ["git", *args]
    # GitPython kills after a timeout with POSIX calls only.
    kill_after = timeout if sys.platform != "win32" else None
    try:
        status, out, err = Git(str(cwd)).execute(
            cmd,
            with_extended_output=True,
            with_exceptions=False,
            env=env,
            strip_newline_in_stdout=False,
            kill_after_timeout=kill_after,
        )
    except GitCommandNotFound as exc:
        raise FatalError("git was not found on PATH: install git and try again") from exc
    except GitCommandError as exc:  # raised for timeouts
        raise GitError(cmd, exc.status if isinstance(exc.status, int) else -1, str(exc.stderr)) from exc
    if check and status != 0:
        raise GitError(cmd, status, err, out)
    return status, out, err


def out(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float | None = None) -> str:
    """stdout of ``git ARGS`` with the trailing newline removed."""
    return run(cwd, *args, env=env, timeout=timeout)[1].rstrip("\n")


def ok(cwd: Path, *args: str) -> bool:
    """True when ``git ARGS`` exits 0."""
    return run(cwd, *args, check=False)[0] == 0


def toplevel(path: Path) -> Path:
    return Path(out(path, "rev-parse", "--show-toplevel"))


def git_dir(repo: Path) -> Path:
    return Path(out(repo, "rev-parse", "--absolute-git-dir"))


def is_repo(path: Path) -> bool:
    return path.is_dir() and ok(path, "rev-parse", "--git-dir")


def head(repo: Path) -> str | None:
    """The commit HEAD names, or None in a repository with no commits."""
    code, stdout, _ = run(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
    return stdout.strip() if code == 0 else None


def rev_parse(repo: Path, rev: str) -> str | None:
    code, stdout, _ = run(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    return stdout.strip() if code == 0 else None


def current_branch(repo: Path) -> str | None:
    code, stdout, _ = run(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return stdout.strip() if code == 0 else None


def config_get(repo: Path, key: str) -> str | None:
    code, stdout, _ = run(repo, "config", "--get", key, check=False)
    return stdout.strip() if code == 0 else None


def config_set(repo: Path, key: str, value: str) -> None:
    run(repo, "config", key, value)


def remote_url(repo: Path, remote: str = "origin") -> str | None:
    return config_get(repo, f"remote.{remote}.url")


def upstream(repo: Path) -> str | None:
    """The upstream ref of the current branch (``origin/main``), if any."""
    code, stdout, _ = run(repo, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}", check=False)
    return stdout.strip() if code == 0 else None


def show(repo: Path, rev_path: str) -> bytes | None:
    """The bytes of ``REV:PATH`` (``:PATH`` for the index), None when it does not exist."""
    cmd = ["git", "cat-file", "blob", rev_path]
    status, stdout, _ = Git(str(repo)).execute(
        cmd, with_extended_output=True, with_exceptions=False, stdout_as_string=False,
        strip_newline_in_stdout=False,
    )
    return stdout if status == 0 else None


def ls_files(repo: Path, *paths: str) -> list[str]:
    text = out(repo, "ls-files", "-z", "--", *paths)
    return [p for p in text.split("\0") if p]


def staged_files(repo: Path) -> list[str]:
    """Paths added, copied, modified or renamed in the index, relative to the top."""
    text = out(repo, "diff", "--cached", "--name-only", "--diff-filter=ACMR", "-z", "--no-renames")
    return [p for p in text.split("\0") if p]


def changed_files(repo: Path, old: str, new: str, *paths: str) -> list[str]:
    text = out(repo, "diff", "--name-only", "-z", "--no-renames", old, new, "--", *paths)
    return [p for p in text.split("\0") if p]


def is_ancestor(repo: Path, old: str, new: str) -> bool:
    return ok(repo, "merge-base", "--is-ancestor", old, new)


def add(repo: Path, *paths: str) -> None:
    run(repo, "add", "--", *paths)


def commit(repo: Path, message: str, *paths: str, no_verify: bool = True) -> str:
    """Commit exactly ``paths`` (already written) with ``message``; return the new commit.

    Paragraphs of the message are passed as separate ``-m`` arguments, so no
    temporary file and no stdin are needed.
    """
    args = ["commit", "--quiet"]
    if no_verify:
        args.append("--no-verify")
    for paragraph in message.strip().split("\n\n"):
        args += ["-m", paragraph]
    args += ["--", *paths]
    run(repo, *args)
    return out(repo, "rev-parse", "HEAD")


def ls_remote_head(repo: Path, remote: str, branch: str, timeout: float | None = None) -> str | None:
    """The commit ``branch`` points to on ``remote``, None if the branch is absent."""
    text = out(repo, "ls-remote", "--heads", remote, f"refs/heads/{branch}", timeout=timeout)
    for line in text.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    return None


def state_dir(repo: Path) -> Path:
    """``<git-dir>/renderloop``: this clone's private state, never tracked or pushed."""
    path = git_dir(repo) / "renderloop"
    path.mkdir(parents=True, exist_ok=True)
    return path


class ObjectReader:
    """Objects read through one long-lived ``git cat-file --batch`` process.

    For walking history without one process per commit: :meth:`blob_id` of
    ``REV:PATH``, :meth:`blob` of an id. Use it as a context manager; leaving
    it ends the process.
    """

    def __init__(self, repo: Path) -> None:
        self._git = Git(str(repo))

    def blob_header(self, rev_path: str) -> tuple[str, int] | None:
        """The id and size of the blob at ``REV:PATH``, None when there is none."""
        try:
            # GitPython annotates str, but the header fields are bytes.
            sha, kind, size = cast("tuple[bytes, bytes, int]", self._git.get_object_header(rev_path))
        except ValueError:  # "<rev_path> missing"
            return None
        return (sha.decode("ascii"), size) if kind == b"blob" else None

    def blob(self, sha: str) -> bytes:
        return self._git.get_object_data(sha)[3]

    def close(self) -> None:
        self._git.clear_cache()

    def __enter__(self) -> "ObjectReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
