"""The worker as a service of this user: started at logon, restarted after a failure (``worker --install``).

One definition per platform, each running the exact interpreter renderloop
runs under (``sys.executable``; on Windows its ``pythonw.exe``, which opens no
console window) with the worker's flags:

* Windows: a Task Scheduler task (XML registered with ``schtasks /Create
  /XML``): a logon trigger, restart on failure every minute, hidden, no time limit.
* Linux: a systemd user unit (``Restart=on-failure``), in
  ``$XDG_CONFIG_HOME/systemd/user``, enabled with ``systemctl --user enable --now``.
* macOS: a launchd agent (``RunAtLoad``, ``KeepAlive`` unless it exits cleanly)
  in ``~/Library/LaunchAgents``, loaded with ``launchctl bootstrap gui/$UID``.

Nothing here reads the repository: the flags are the ones the person typed.
"""
from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence
from xml.sax.saxutils import escape

from studio.errors import FatalError
from studio.shims import renderloop_argv

NAME = "renderloop-worker"  # systemd unit and Task Scheduler task
LABEL = "dev.renderloop.worker"  # launchd
TASK_NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"
PLATFORMS = ("windows", "linux", "macos")


def this_platform(platform: str = sys.platform) -> str:
    if platform == "win32":
        return "windows"
    if platform == "darwin":
        return "macos"
    return "linux"


@dataclass(frozen=True)
class Definition:
    platform: str  # windows | linux | macos
    path: Path  # where the definition is written
    content: bytes  # what is written there
    register: list[list[str]] = field(default_factory=list)  # run after writing
    unregister: list[list[str]] = field(default_factory=list)  # run before removing

    @property
    def text(self) -> str:
        return self.content.decode("utf-16" if self.platform == "windows" else "utf-8")


def interpreter(platform: str, executable: str = sys.executable) -> str:
    """The program that runs the worker: on Windows the console-less ``pythonw.exe`` beside python.exe."""
    if platform == "windows":
        from pathlib import PureWindowsPath

        exe = PureWindowsPath(executable)
        windowless = exe.with_name("pythonw.exe")
        if exe.name.lower() == "python.exe" and (sys.platform != "win32" or Path(windowless).exists()):
            return str(windowless)
    return executable


def worker_argv(flags: Sequence[str], platform: str, executable: str = sys.executable) -> list[str]:
    """The worker's command line; it starts in the worker's clone, which is never on Python's path."""
    return [*renderloop_argv(interpreter(platform, executable)), "worker", *flags]


# ---------------------------------------------------------------- Linux


def _systemd_quote(arg: str) -> str:
    """One ExecStart word: double-quoted, with \\ and " escaped; % and $ doubled (specifiers, variables)."""
    text = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{text}"'


def systemd_unit(argv: Sequence[str], workdir: Path) -> str:
    if any(c in arg for arg in argv for c in "\n\r\0"):
        raise FatalError("a worker flag holds a line break: it cannot go into a service definition")
    return (
        "[Unit]\n"
        "Description=renderloop worker (renders the studio's batches)\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"WorkingDirectory={str(workdir).replace('%', '%%')}\n"  # a path, taken whole: never quoted
        f"ExecStart={' '.join(_systemd_quote(a) for a in argv)}\n"
        "Environment=PYTHONUNBUFFERED=1\n"
        "Restart=on-failure\n"
        "RestartSec=10\n"
        "KillSignal=SIGTERM\n"
        "TimeoutStopSec=60\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def systemd_dir(env: Optional[dict[str, str]] = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "systemd" / "user"


# ---------------------------------------------------------------- macOS


def launchd_plist(argv: Sequence[str], workdir: Path, log: Path) -> bytes:
    return plistlib.dumps({
        "Label": LABEL,
        "ProgramArguments": list(argv),
        "WorkingDirectory": str(workdir),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restarted after a failure, not after a clean stop
        "ThrottleInterval": 10,
        "ProcessType": "Interactive",
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
    })


# ---------------------------------------------------------------- Windows


def task_xml(argv: Sequence[str], workdir: Path, user: Optional[str] = None) -> str:
    """A Task Scheduler task: at this user's logon, restart on failure, hidden, no time limit."""
    from subprocess import list2cmdline

    user = user or _windows_user()
    command, arguments = argv[0], list2cmdline(list(argv[1:]))
    e = escape
    return (
        '<?xml version="1.0" encoding="UTF-16"?>\n'
        f'<Task version="1.2" xmlns="{TASK_NAMESPACE}">\n'
        "  <RegistrationInfo>\n"
        "    <Description>renderloop worker: renders the studio's batches (renderloop worker --install)</Description>\n"
        f"    <URI>\\{NAME}</URI>\n"
        "  </RegistrationInfo>\n"
        "  <Triggers>\n"
        "    <LogonTrigger>\n"
        "      <Enabled>true</Enabled>\n"
        f"      <UserId>{e(user)}</UserId>\n"
        "      <Delay>PT30S</Delay>\n"
        "    </LogonTrigger>\n"
        "  </Triggers>\n"
        "  <Principals>\n"
        '    <Principal id="Author">\n'
        f"      <UserId>{e(user)}</UserId>\n"
        "      <LogonType>InteractiveToken</LogonType>\n"
        "      <RunLevel>LeastPrivilege</RunLevel>\n"
        "    </Principal>\n"
        "  </Principals>\n"
        "  <Settings>\n"
        "    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>\n"
        "    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>\n"
        "    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>\n"
        "    <AllowHardTerminate>true</AllowHardTerminate>\n"
        "    <StartWhenAvailable>true</StartWhenAvailable>\n"
        "    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>\n"
        "    <IdleSettings>\n"
        "      <StopOnIdleEnd>false</StopOnIdleEnd>\n"
        "      <RestartOnIdle>false</RestartOnIdle>\n"
        "    </IdleSettings>\n"
        "    <AllowStartOnDemand>true</AllowStartOnDemand>\n"
        "    <Enabled>true</Enabled>\n"
        "    <Hidden>true</Hidden>\n"
        "    <RunOnlyIfIdle>false</RunOnlyIfIdle>\n"
        "    <WakeToRun>false</WakeToRun>\n"
        "    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>\n"
        "    <Priority>7</Priority>\n"
        "    <RestartOnFailure>\n"
        "      <Interval>PT1M</Interval>\n"
        "      <Count>999</Count>\n"
        "    </RestartOnFailure>\n"
        "  </Settings>\n"
        '  <Actions Context="Author">\n'
        "    <Exec>\n"
        f"      <Command>{e(command)}</Command>\n"
        f"      <Arguments>{e(arguments)}</Arguments>\n"
        f"      <WorkingDirectory>{e(str(workdir))}</WorkingDirectory>\n"
        "    </Exec>\n"
        "  </Actions>\n"
        "</Task>\n"
    )


def _windows_user() -> str:
    import getpass

    domain = os.environ.get("USERDOMAIN")
    user = os.environ.get("USERNAME") or getpass.getuser()
    return f"{domain}\\{user}" if domain else user


# ---------------------------------------------------------------- all three


def definition(platform: str, flags: Sequence[str], workdir: Path, *, executable: str = sys.executable,
               env: Optional[dict[str, str]] = None, home: Optional[Path] = None,
               user: Optional[str] = None, logs_to_file: bool = False) -> Definition:
    """The service definition of the worker with ``flags`` on ``platform``, and how to (un)register it.

    ``logs_to_file``: this machine's settings name a log file (``worker.log_file``), so no default is added.
    """
    argv = worker_argv(flags, platform, executable)
    if platform == "linux":
        path = systemd_dir(env) / f"{NAME}.service"
        return Definition("linux", path, systemd_unit(argv, workdir).encode("utf-8"),
                          register=[["systemctl", "--user", "daemon-reload"],
                                    ["systemctl", "--user", "enable", "--now", f"{NAME}.service"]],
                          unregister=[["systemctl", "--user", "disable", "--now", f"{NAME}.service"]])
    home = home or Path((env or os.environ).get("HOME") or Path.home())
    if platform == "macos":
        path = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        log = home / "Library" / "Logs" / "renderloop" / "worker.log"
        domain = f"gui/{os.getuid() if hasattr(os, 'getuid') else 501}"
        return Definition("macos", path, launchd_plist(argv, workdir, log),
                          register=[["launchctl", "bootstrap", domain, str(path)]],
                          unregister=[["launchctl", "bootout", f"{domain}/{LABEL}"]])
    if platform == "windows":
        local = Path((env or os.environ).get("LOCALAPPDATA") or home / "AppData" / "Local")
        path = local / "renderloop" / f"{NAME}.xml"
        if "--log-file" not in flags and not logs_to_file:  # pythonw.exe has no console: the log goes to a file
            argv += ["--log-file", str(local / "renderloop" / "worker.log")]
        xml = task_xml(argv, workdir, user)
        return Definition("windows", path, xml.replace("\n", "\r\n").encode("utf-16"),
                          register=[["schtasks", "/Create", "/TN", NAME, "/XML", str(path), "/F"],
                                    ["schtasks", "/Run", "/TN", NAME]],
                          unregister=[["schtasks", "/End", "/TN", NAME], ["schtasks", "/Delete", "/TN", NAME, "/F"]])
    raise ValueError(f"no service definition for {platform!r}: choose from {', '.join(PLATFORMS)}")


Runner = Callable[[list[str]], "subprocess.CompletedProcess[bytes]"]


def _run(argv: list[str]) -> "subprocess.CompletedProcess[bytes]":
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)


def install(defn: Definition, run: Runner = _run) -> None:
    """Write the definition and register it; a refusal raises with the command and its words."""
    defn.path.parent.mkdir(parents=True, exist_ok=True)
    if defn.platform == "macos" and defn.path.exists():
        run(defn.unregister[0])  # an older one loaded: bootstrap refuses to load it twice
    defn.path.write_bytes(defn.content)
    if defn.platform == "macos":
        (defn.path.parent.parent / "Logs" / "renderloop").mkdir(parents=True, exist_ok=True)
    for argv in defn.register:
        _check(argv, run)


def uninstall(defn: Definition, run: Runner = _run) -> bool:
    """Unregister and remove the definition; False when none was installed."""
    existed = defn.path.exists()
    for argv in defn.unregister:
        run(argv)  # "not running" / "not loaded" is fine
    if existed:
        defn.path.unlink()
    if defn.platform == "linux":
        run(["systemctl", "--user", "daemon-reload"])
    return existed


def _check(argv: list[str], run: Runner) -> None:
    try:
        done = run(argv)
    except OSError as exc:
        raise FatalError(f"`{' '.join(argv)}` could not start: {exc.strerror or exc}") from None
    if done.returncode != 0:
        words = (done.stderr or done.stdout or b"").decode("utf-8", "replace").strip().splitlines()
        raise FatalError(f"`{' '.join(argv)}` failed (exit {done.returncode})"
                         + (f": {words[-1]}" if words else ""))
