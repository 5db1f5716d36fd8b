"""The one git helper, and a flat set of small functions, one git call each.

Every git command renderloop runs goes through :func:`run_bytes` (and
:func:`run` on top of it): no shell, stdin closed, the environment from
:func:`environment`, its own process group, and a deadline that kills the
command with every process it started. A failure raises :class:`GitError`
carrying the command, its exit code and stderr. No ``Repo`` object is ever
kept: a long-lived one leaks processes.

Git is started directly (not through GitPython, whose Windows path changes
``os.environ`` around every process start: not thread-safe, and the worker
runs git from four threads). Nothing here changes ``os.environ``.
"""
from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Mapping, Optional


from studio import processes
from studio.errors import FatalError

# The variables that tie git to one repository (`git rev-parse --local-env-vars`,
# without the GIT_CONFIG_* ones a person may set). Git exports them to hooks: a
# git command run from a hook must not inherit them or it acts on the wrong
# repository or index.
REPOSITORY_VARS = frozenset(
    {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CONFIG",
        "GIT_OBJECT_DIRECTORY",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_GRAFT_FILE",
        "GIT_INDEX_FILE",
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_REPLACE_REF_BASE",
        "GIT_PREFIX",
        "GIT_INTERNAL_SUPER_PREFIX",
        "GIT_SHALLOW_FILE",
        "GIT_COMMON_DIR",
    }
)
NETWORK_VERBS = frozenset({"fetch", "push", "ls-remote", "pull", "clone"})
TIMEOUT_ENV = "RENDERLOOP_NETWORK_TIMEOUT"
NETWORK_TIMEOUT = 60.0  # seconds a network command may take, unless TIMEOUT_ENV says otherwise
SSH_OPTIONS = "-o BatchMode=yes -o ConnectTimeout=20 -o ServerAliveInterval=15 -o ServerAliveCountMax=2"
_SLICE = 0.5  # wait for a command in slices, so Ctrl+C is seen (Windows waits are not interruptible)


@dataclass(frozen=True)
class Setup:
    """What this process asks of every git command; set once at start.

    ``no_hooks``: an empty folder given as ``core.hooksPath`` (with
    ``core.fsmonitor=false``), so no code from the repository runs (the
    worker); with it, no line-ending conversion nor global attributes file. ``index_file``: the index a pre-commit hook must stage into.
    """

    no_hooks: Optional[Path] = None
    index_file: Optional[Path] = None
    identity: tuple[tuple[str, str], ...] = ()  # user.name / user.email to commit as, where none is configured


_setup = Setup()


def said(stderr: str) -> str:
    """What git's output says went wrong, in one line: its last line, unless that closes git's advice
    after a remote failed ("... and the repository exists."): then its first, ssh's or git's own reason."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[0] if lines[-1] == "and the repository exists." else lines[-1]


class GitError(FatalError):
    """A git command failed: carries the command, exit code and stderr."""

    def __init__(self, cmd: list[str], returncode: int, stderr: str, stdout: str = "") -> None:
        self.cmd = cmd
        self.returncode = returncode
        self.stderr = stderr.strip()
        self.stdout = stdout.strip()
        detail = said(self.stderr) or "no output"
        super().__init__(f"`{' '.join(cmd)}` failed with exit code {returncode}: {detail}")


class GitTimeout(GitError):
    """A git command did not finish within its deadline; it was killed with all it started."""

    def __init__(self, cmd: list[str], timeout: float, stderr: str) -> None:
        self.timeout = timeout
        super().__init__(cmd, -1, stderr)
        FatalError.__init__(self, f"`{' '.join(cmd)}` got no answer within {timeout:g} s and was stopped")


class UnsafeRepository(FatalError):
    """Git refuses a repository owned by another user ("dubious ownership")."""

    def __init__(self, path: str) -> None:
        self.path = path
        quoted = f'"{path}"' if any(c in path for c in " '\"") else path
        super().__init__(
            f"git refuses to work in {path}: it belongs to another user (\"dubious ownership\"); "
            f"if you trust it, run as the user renderloop runs as: "
            f"git config --global --add safe.directory {quoted}"
        )


def run_no_repository_code(state: Path) -> None:
    """Make every git command of this process ignore hooks and fsmonitor programs.

    A clone's config can point them into the repository (``core.hooksPath=hooks``
    once someone ran ``renderloop init`` there), and ``git commit --no-verify``
    still runs post-commit, ``git push`` pre-push, ``git rebase`` post-rewrite...
    The worker runs no code from the repository (SPEC section 8): settings given
    in the environment (``GIT_CONFIG_COUNT``) override every config file.
    """
    global _setup
    no_hooks = state / "no-hooks"  # an empty folder: no hook is found there
    no_hooks.mkdir(exist_ok=True)
    _setup = replace(_setup, no_hooks=no_hooks.absolute())


# Where git finds who commits, besides user.name and user.email (git-commit-tree(1))
IDENTITY_ENV = {"user.name": ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"),
                "user.email": ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL", "EMAIL")}


def identity_unset(repo: Path, env: Optional[Mapping[str, str]] = None) -> list[str]:
    """Which of ``user.name`` and ``user.email`` neither git's config nor the environment gives."""
    source = os.environ if env is None else env
    return [key for key, names in IDENTITY_ENV.items()
            if not any(source.get(name) for name in names) and not config_get(repo, key)]


def commit_as(name: Optional[str], email: Optional[str]) -> None:
    """Make every commit of this process use ``name`` and ``email`` (None: the configured one)."""
    global _setup
    identity = tuple((key, value) for key, value in (("user.name", name), ("user.email", email)) if value)
    _setup = replace(_setup, identity=identity)


def use_index(index_file: Optional[str]) -> None:
    """Stage into ``index_file`` (a pre-commit hook's GIT_INDEX_FILE: ``git commit -a`` builds in ``index.lock``)."""
    global _setup
    _setup = replace(_setup, index_file=Path(index_file).absolute() if index_file else None)


def reset() -> None:
    """Forget what :func:`run_no_repository_code`, :func:`commit_as` and :func:`use_index` set (for tests)."""
    global _setup
    _setup = Setup()


def network_timeout() -> float:
    """The deadline of a network command: ``RENDERLOOP_NETWORK_TIMEOUT`` seconds, else 60."""
    value = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(value)
    except ValueError:
        return NETWORK_TIMEOUT
    return seconds if seconds > 0 else NETWORK_TIMEOUT


def environment(
    extra: Optional[Mapping[str, str]] = None, *, base: Optional[Mapping[str, str]] = None,
    setup: Optional[Setup] = None, ssh_command: Optional[str] = None,
) -> dict[str, str]:
    """The whole environment for one git command (``os.environ`` itself is never changed).

    From ``base`` (``os.environ``): without the variables that tie git to one
    repository; this installation's ``renderloop`` first on PATH (for the hooks
    git fires); never a prompt (no terminal, no credential manager window, a
    failing askpass, ssh in batch mode); :class:`Setup`'s settings; then ``extra``.
    ``ssh_command`` is the configured ``core.sshCommand`` of a network command.
    """
    setup = setup or _setup
    source = os.environ if base is None else base
    env = {name: value for name, value in source.items() if name not in REPOSITORY_VARS}
    if setup.index_file is not None:
        env["GIT_INDEX_FILE"] = str(setup.index_file)
    env["PATH"] = os.pathsep.join(dict.fromkeys(p for p in [*_own_folders(), *env.get("PATH", "").split(os.pathsep)] if p))
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GCM_INTERACTIVE"] = "never"  # Git Credential Manager: fail rather than open a window
    env["GIT_ASKPASS"] = env["SSH_ASKPASS"] = _NO_ASKPASS
    env["SSH_ASKPASS_REQUIRE"] = "never"
    ssh = _batch_ssh(env.get("GIT_SSH_COMMAND") or ("" if env.get("GIT_SSH") else ssh_command or "ssh"))
    if ssh:
        env["GIT_SSH_COMMAND"] = ssh
    # core.longpaths: Git for Windows reads and writes paths past 260 characters (other gits ignore it)
    settings = [("credential.interactive", "never"), ("core.longpaths", "true")]
    if setup.no_hooks is not None:
        settings += [("core.hooksPath", str(setup.no_hooks)), ("core.fsmonitor", "false")]
        # The bytes committed are the bytes written, whatever this machine's config says
        # (a repository's .gitattributes is checked by studio.attributes).
        settings += [("core.autocrlf", "false"), ("core.safecrlf", "false"),
                     ("core.attributesFile", str(setup.no_hooks / "no-attributes"))]
    settings += list(setup.identity)
    count = int(env.get("GIT_CONFIG_COUNT") or 0)
    for offset, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{count + offset}"] = key
        env[f"GIT_CONFIG_VALUE_{count + offset}"] = value
    env["GIT_CONFIG_COUNT"] = str(count + len(settings))
    env.update(extra or {})
    return env


@functools.lru_cache(maxsize=None)
def _own_folders() -> tuple[str, ...]:
    """Where this installation's ``renderloop`` is: the hook shims call it."""
    return (sysconfig.get_path("scripts"), str(Path(sys.executable).parent))


# Git asks GIT_ASKPASS (and ssh SSH_ASKPASS) for a password by running it with the
# prompt as its one argument: Python, given a script named like the prompt, exits
# non-zero, on every platform.
_NO_ASKPASS = sys.executable or "renderloop-never-asks"


def _batch_ssh(command: str) -> str:
    """``command`` with ssh's non-interactive options, when it is ssh (plink and the like are left alone)."""
    if not command:
        return ""
    try:
        program = shlex.split(command)[0]
    except (ValueError, IndexError):
        return command
    name = program.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return f"{command} {SSH_OPTIONS}" if name in ("ssh", "ssh.exe") else command


def _verb(args: tuple[str, ...]) -> str:
    """The git subcommand in ``args`` (after options such as ``-c key=value``)."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in ("-c", "-C", "--git-dir", "--work-tree", "--namespace"):
            index += 2
        elif arg.startswith("-"):
            index += 1
        else:
            return arg
    return ""


def run_bytes(
    cwd: Path,
    *args: str,
    check: bool = True,
    env: Optional[Mapping[str, str]] = None,
    timeout: Optional[float] = None,
) -> tuple[int, bytes, str]:
    """Run ``git ARGS`` in ``cwd``; return (exit code, stdout as bytes, stderr).

    ``env`` adds to :func:`environment`. A network command (fetch, push,
    ls-remote, pull, clone) has a deadline (``timeout``, else
    :func:`network_timeout`); at it the command and all it started are killed
    and :class:`GitTimeout` is raised, whatever ``check`` says. So is
    :class:`UnsafeRepository` when git refuses a repository owned by another user.
    """
    cwd = Path(cwd)
    if not cwd.is_dir():
        raise FatalError(f"{cwd}: no such folder")
    cmd = ["git", *args]
    ssh_command = None
    if _verb(args) in NETWORK_VERBS:
        timeout = timeout if timeout is not None else network_timeout()
        ssh_command = config_get(cwd, "core.sshCommand")
    try:
        proc = processes.start([_git_program(), *args], cwd, environment(env, ssh_command=ssh_command))
    except FileNotFoundError as exc:
        raise FatalError("git was not found on PATH: install git and try again") from exc
    stdout, stderr_bytes, timed_out = _wait(proc, timeout)
    stderr = stderr_bytes.decode("utf-8", errors="replace")
    if timed_out:
        assert timeout is not None
        raise GitTimeout(cmd, timeout, stderr)
    status = proc.returncode
    if status != 0 and "detected dubious ownership" in stderr:
        raise UnsafeRepository(_unsafe_path(stderr) or str(cwd))
    if check and status != 0:
        raise GitError(cmd, status, stderr, stdout.decode("utf-8", errors="replace"))
    return status, stdout, stderr


def run(
    cwd: Path,
    *args: str,
    check: bool = True,
    env: Optional[Mapping[str, str]] = None,
    timeout: Optional[float] = None,
) -> tuple[int, str, str]:
    """Run ``git ARGS`` in ``cwd``; return (exit code, stdout, stderr). See :func:`run_bytes`.

    With ``check`` (the default) a non-zero exit raises :class:`GitError`.
    """
    status, stdout, stderr = run_bytes(cwd, *args, check=check, env=env, timeout=timeout)
    return status, stdout.decode("utf-8", errors="surrogateescape"), stderr


def _wait(proc: "subprocess.Popen[bytes]", timeout: Optional[float]) -> tuple[bytes, bytes, bool]:
    """(stdout, stderr, timed out) of ``proc``, killed with its children at ``timeout`` or on any exception."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            wait = _SLICE if deadline is None else min(_SLICE, max(0.0, deadline - time.monotonic()))
            try:
                out, err = proc.communicate(timeout=wait)
                return out or b"", err or b"", False
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    break
        processes.kill_tree(proc)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild that escaped still holds the pipes
            out, err = b"", b""
        return out or b"", err or b"", True
    except BaseException:
        if proc.poll() is None:
            processes.kill_tree(proc)
            proc.wait()
        raise
    finally:
        processes.forget(proc)


_DUBIOUS_PATH = re.compile(r"safe\.directory\s+'?([^'\n]+?)'?\s*$", re.MULTILINE)


def _unsafe_path(stderr: str) -> Optional[str]:
    """The path git's "dubious ownership" advice names (the one to mark safe)."""
    match = _DUBIOUS_PATH.search(stderr)
    if match:
        return match.group(1).strip()
    match = re.search(r"dubious ownership in repository at '([^']+)'", stderr)
    return match.group(1) if match else None


_program: tuple[str, str] = ("", "")  # (PATH, git found on it)
_program_lock = threading.Lock()


def _git_program() -> str:
    """``git``; on Windows its full path, found on PATH only (never in the current folder)."""
    global _program
    if sys.platform != "win32":
        return "git"
    path = os.environ.get("PATH", "")
    with _program_lock:
        if _program[0] != path or not _program[1]:
            found = next(
                (str(Path(d) / "git.exe") for d in path.split(os.pathsep)
                 if d and Path(d).is_absolute() and (Path(d) / "git.exe").is_file()),
                "",
            )
            if not found:
                raise FileNotFoundError("git.exe")
            _program = (path, found)
        return _program[1]


def running_in(repo: Path) -> list[int]:
    """The pids of git processes (other than this one's) working in ``repo``, by their current folder."""
    import psutil  # here, not at the top: every git hook would import it (20 ms) for this rare look

    top = Path(repo).resolve()
    found = []
    for process in psutil.process_iter(["name", "cwd", "cmdline"]):
        info = process.info
        name = (info.get("name") or "").lower()
        if not name.startswith("git") or process.pid == os.getpid() or not info.get("cwd"):
            continue  # no cwd: another user's process (access denied), or gone
        if "fsmonitor--daemon" in " ".join(info.get("cmdline") or []):
            continue  # lives as long as the clone; holds no lock
        cwd = Path(info["cwd"]).resolve()
        if cwd == top or top in cwd.parents:
            found.append(process.pid)
    return found


def remote_problem(exc: GitError) -> Optional[str]:
    """Why a remote could not be used, in words, when git's output says (else None)."""
    if isinstance(exc, GitTimeout):
        return f"did not answer within {exc.timeout:g} s"
    text = exc.stderr
    if re.search(r"could not read (Username|Password)|Authentication failed|terminal prompts disabled|"
                 r"user interactivity has been disabled|HTTP Basic: Access denied", text, re.IGNORECASE):
        return ("asked for credentials, which the worker never types: store them in a credential helper "
                "(run one `git fetch` by hand as this user), or use an SSH key that needs no passphrase")
    if "Host key verification failed" in text:
        return "ssh does not know its host key: connect once by hand with `ssh HOST` as this user to accept it"
    if re.search(r"Permission denied \(|passphrase", text):
        return "refused the SSH key (or the key needs a passphrase, which the worker never types)"
    return None


def reason(exc: GitError) -> str:
    """Why a git command failed, in one line: what a remote's failure means (:func:`remote_problem`),
    else git's own line (:func:`said`)."""
    return remote_problem(exc) or said(exc.stderr) or str(exc)


MIN_VERSION = (2, 31)  # GIT_CONFIG_COUNT, which keeps repository code from running (run_no_repository_code)


def version(cwd: Path) -> tuple[str, tuple[int, ...]]:
    """Git's version: as it says it (``2.39.2``) and as numbers."""
    text = out(cwd, "--version").strip()
    said = text.split()[2] if len(text.split()) > 2 else text
    numbers = tuple(int(part) for part in re.findall(r"\d+", said)[:3])
    return said, numbers


def out(cwd: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float | None = None) -> str:
    """stdout of ``git ARGS`` with the trailing newline removed."""
    return run(cwd, *args, env=env, timeout=timeout)[1].rstrip("\n")


def ok(cwd: Path, *args: str) -> bool:
    """True when ``git ARGS`` exits 0."""
    return run(cwd, *args, check=False)[0] == 0


def toplevel(path: Path) -> Path:
    return Path(out(path, "rev-parse", "--show-toplevel"))


_git_dirs: dict[str, Path] = {}  # folder -> its git dir: a hook asks several times, each a git process


def git_dir(repo: Path) -> Path:
    key = os.path.abspath(repo)
    known = _git_dirs.get(key)
    if known is not None and (known / "HEAD").is_file():
        return known
    found = _git_dirs[key] = Path(out(repo, "rev-parse", "--absolute-git-dir"))
    return found


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


def without_password(url: str) -> str:
    """``url`` without the password a person may have written into it."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url)


def remote_url(repo: Path, remote: str = "origin") -> str | None:
    return config_get(repo, f"remote.{remote}.url")


def upstream(repo: Path) -> str | None:
    """The upstream ref of the current branch (``origin/main``), if any."""
    code, stdout, _ = run(repo, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}", check=False)
    return stdout.strip() if code == 0 else None


class TooLarge(FatalError):
    """A blob is larger than its reader's limit; nothing of it was read."""

    def __init__(self, rev_path: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{rev_path} is {size} bytes; the limit is {limit}")


def show(repo: Path, rev_path: str, limit: Optional[int] = None) -> bytes | None:
    """The bytes of ``REV:PATH`` (``:PATH`` for the index), None when it does not exist.

    With ``limit``, the blob's size is asked first (``git cat-file -s``) and a
    larger one raises :class:`TooLarge` before a byte of it is read.
    """
    if limit is not None:
        status, stdout, _ = run_bytes(repo, "cat-file", "-s", rev_path, check=False)
        if status != 0:
            return None
        size = int(stdout.strip() or 0)
        if size > limit:
            raise TooLarge(rev_path, size, limit)
    status, stdout, _ = run_bytes(repo, "cat-file", "blob", rev_path, check=False)
    return stdout if status == 0 else None


def ls_files(repo: Path, *paths: str) -> list[str]:
    text = out(repo, "ls-files", "-z", "--", *paths)
    return [p for p in text.split("\0") if p]


def staged_files(repo: Path) -> list[str]:
    """Paths added, copied, modified, renamed or changed in kind (a file made a link) in the index."""
    text = out(repo, "diff", "--cached", "--name-only", "--diff-filter=ACMRT", "-z", "--no-renames")
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
    """Objects read through long-lived ``git cat-file --batch`` processes.

    For walking history without one process per commit: :meth:`blob_header`
    of ``REV:PATH``, :meth:`blob` of an id. Use it as a context manager;
    leaving it ends the processes.
    """

    def __init__(self, repo: Path) -> None:
        self.repo = Path(repo)
        self._procs: dict[str, "subprocess.Popen[bytes]"] = {}

    def _ask(self, mode: str, request: str) -> tuple[list[str], IO[bytes]]:
        """Send one request to ``git cat-file --MODE``; return its header's fields and the output."""
        proc = self._procs.get(mode)
        if proc is None:
            proc = processes.start(
                [_git_program(), "cat-file", f"--{mode}"], self.repo, environment(),
                stdin=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
            self._procs[mode] = proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(request.encode("utf-8") + b"\n")
        proc.stdin.flush()
        header = proc.stdout.readline()
        if not header:
            raise GitError(["git", "cat-file", f"--{mode}"], proc.poll() or -1, "ended unexpectedly")
        return header.decode("utf-8", errors="surrogateescape").split(), proc.stdout

    def blob_header(self, rev_path: str) -> tuple[str, int] | None:
        """The id and size of the blob at ``REV:PATH``, None when there is none."""
        fields, _ = self._ask("batch-check", rev_path)
        if len(fields) != 3 or fields[-1] == "missing":  # "<rev_path> missing", "<rev_path> ambiguous"
            return None
        sha, kind, size = fields
        return (sha, int(size)) if kind == "blob" else None

    def blob(self, sha: str) -> bytes:
        fields, stream = self._ask("batch", sha)
        if len(fields) != 3 or not fields[2].isdigit():
            raise ValueError(f"{sha}: {' '.join(fields)}")
        data = stream.read(int(fields[2]))
        stream.read(1)  # the newline after the object
        return data

    def close(self) -> None:
        for proc in self._procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                processes.kill_tree(proc)
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            processes.forget(proc)
        self._procs.clear()

    def __enter__(self) -> "ObjectReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
