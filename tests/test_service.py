"""``renderloop worker --install``: the three service definitions, checked for content everywhere and by
this platform's own checker where there is one (systemd-analyze, plistlib); registering runs against
stand-in programs only."""
from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import Sandbox, cli
from studio.shims import BOOT
from win_side.service import LABEL, NAME, TASK_NAMESPACE, definition

# Flags a person might give, with what breaks naive quoting: spaces, quotes, backslashes, % and $.
FLAGS = ["--repo", "/srv/My Studio", "--comfyui", "http://127.0.0.1:8188", "--name", "pc-1",
         "--log-file", '/var/log/a "quoted" 100%$HOME\\x.log']


def test_the_systemd_user_unit(tmp_path: Path) -> None:
    defn = definition("linux", FLAGS, Path("/srv/My Studio"), executable=sys.executable,
                      env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert defn.path == tmp_path / "xdg" / "systemd" / "user" / f"{NAME}.service"
    text = defn.text
    assert "Restart=on-failure\n" in text and "WantedBy=default.target\n" in text
    assert "WorkingDirectory=/srv/My Studio\n" in text
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))[len("ExecStart="):]
    # systemd's own unquoting of ExecStart, for this text: POSIX double quotes, then %% and $$ are single
    words = [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(exec_start)]
    assert words == [sys.executable, "-c", BOOT, "worker", *FLAGS]
    assert defn.register == [["systemctl", "--user", "daemon-reload"],
                             ["systemctl", "--user", "enable", "--now", f"{NAME}.service"]]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd-analyze checks Linux units")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (apt-get install systemd)")
    workdir = tmp_path / "My 100% Studio"
    workdir.mkdir()
    defn = definition("linux", ["--repo", str(workdir), "--name", "a$b"], workdir, executable=sys.executable)
    unit = tmp_path / f"{NAME}.service"
    unit.write_bytes(defn.content)
    checked = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "renderloop-worker.service" not in checked.stderr, checked.stderr  # no warning about our unit
    broken = tmp_path / "broken.service"  # the checker does catch a bad unit: this test can fail
    broken.write_text(defn.text.replace("WorkingDirectory=", "WorkingDirectory=relative/"))
    assert subprocess.run([analyze, "verify", str(broken)], capture_output=True).returncode != 0


def test_the_launchd_agent(tmp_path: Path) -> None:
    defn = definition("macos", FLAGS, Path("/Users/ana/My Studio"), executable="/opt/venv/bin/python3",
                      home=tmp_path)
    assert defn.path == tmp_path / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    plist = plistlib.loads(defn.content)  # the round trip launchd's own parser makes
    assert plist["Label"] == LABEL
    assert plist["ProgramArguments"] == ["/opt/venv/bin/python3", "-c", BOOT, "worker", *FLAGS]
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["WorkingDirectory"] == "/Users/ana/My Studio"
    assert plist["StandardErrorPath"] == str(tmp_path / "Library" / "Logs" / "renderloop" / "worker.log")
    assert defn.register[0][:2] == ["launchctl", "bootstrap"] and defn.register[0][2].startswith("gui/")
    assert defn.unregister[0] == ["launchctl", "bootout", f"{defn.register[0][2]}/{LABEL}"]
    if sys.platform == "darwin" and shutil.which("plutil"):
        path = tmp_path / "agent.plist"
        path.write_bytes(defn.content)
        assert subprocess.run(["plutil", "-lint", str(path)], capture_output=True).returncode == 0


def test_the_task_scheduler_task(tmp_path: Path) -> None:
    flags = ["--repo", r"C:\My Studio", "--comfyui", "http://127.0.0.1:8188", "--log-file", r'C:\logs\a "b" & <c>.log']
    defn = definition("windows", flags, Path(r"C:\My Studio"), executable=r"C:\Python311\python.exe",
                      env={"LOCALAPPDATA": str(tmp_path)}, home=tmp_path, user="STUDIO-PC\\ana")
    assert defn.path == tmp_path / "renderloop" / f"{NAME}.xml"
    assert defn.content.startswith(b"\xff\xfe")  # UTF-16 with its byte order mark, as schtasks reads it
    assert "\r\n" in defn.content.decode("utf-16") and "\n\n" not in defn.content.decode("utf-16")
    root = ET.fromstring(defn.content.decode("utf-16").split("?>", 1)[1])  # well-formed
    ns = {"t": TASK_NAMESPACE}
    assert root.tag == f"{{{TASK_NAMESPACE}}}Task" and root.get("version") == "1.2"
    assert [child.tag.split("}")[1] for child in root] == [
        "RegistrationInfo", "Triggers", "Principals", "Settings", "Actions"]
    logon = root.find("t:Triggers/t:LogonTrigger", ns)
    assert logon is not None and logon.findtext("t:UserId", namespaces=ns) == "STUDIO-PC\\ana"
    settings = root.find("t:Settings", ns)
    assert settings is not None
    assert settings.findtext("t:Hidden", namespaces=ns) == "true"
    assert settings.findtext("t:ExecutionTimeLimit", namespaces=ns) == "PT0S"  # runs for days
    assert settings.findtext("t:MultipleInstancesPolicy", namespaces=ns) == "IgnoreNew"
    assert settings.findtext("t:DisallowStartIfOnBatteries", namespaces=ns) == "false"
    assert settings.findtext("t:RestartOnFailure/t:Interval", namespaces=ns) == "PT1M"  # the schema's minimum
    assert settings.findtext("t:RestartOnFailure/t:Count", namespaces=ns) == "999"
    exec_ = root.find("t:Actions/t:Exec", ns)
    assert exec_ is not None
    assert exec_.findtext("t:Command", namespaces=ns) == r"C:\Python311\pythonw.exe"  # no console window
    assert exec_.findtext("t:Arguments", namespaces=ns) == subprocess.list2cmdline(
        ["-c", BOOT, "worker", *flags])
    assert r'"C:\My Studio"' in (exec_.findtext("t:Arguments", namespaces=ns) or "")
    assert exec_.findtext("t:WorkingDirectory", namespaces=ns) == r"C:\My Studio"
    assert defn.register[0] == ["schtasks", "/Create", "/TN", NAME, "/XML", str(defn.path), "/F"]


def test_install_print_carries_the_flags_given(sandbox: Sandbox, tmp_path: Path) -> None:
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "xdg"), HOME=str(tmp_path / "home"),
               LOCALAPPDATA=str(tmp_path / "local"))
    result = cli("worker", "--install", "--print", "--repo", "worker", "--comfyui", "http://127.0.0.1:8000",
                 "--comfyui", "http://gpu2:8188", "--poll", "5", "--no-push", "--log-file", "logs/w.log",
                 cwd=sandbox.root, env=env)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    flags = ["--repo", str(sandbox.worker), "--poll", "5", "--comfyui", "http://127.0.0.1:8000",
             "--comfyui", "http://gpu2:8188", "--no-push", "--log-file", str(sandbox.root / "logs/w.log")]
    if sys.platform.startswith("linux"):
        assert text.splitlines()[0] == f"# {tmp_path / 'xdg' / 'systemd' / 'user' / (NAME + '.service')}"
        exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
        assert shlex.split(exec_start[len("ExecStart="):]) == [sys.executable, "-c", BOOT, "worker", *flags]
        assert not (tmp_path / "xdg").exists()  # --print registers nothing
    assert "--install" not in text and "--print" not in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the systemd unit is Linux's")
def test_install_and_uninstall_with_a_stand_in_systemctl(sandbox: Sandbox, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    fake = bin_dir / "systemctl"
    fake.write_text(f"#!{sys.executable}\nimport sys\nopen({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n")
    fake.chmod(0o755)
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "xdg"), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    unit = tmp_path / "xdg" / "systemd" / "user" / f"{NAME}.service"
    result = cli("worker", "--install", "--repo", str(sandbox.worker), "--backend", "placeholder", env=env)
    assert result.returncode == 0, result.stderr
    assert unit.is_file() and f'"--backend" "placeholder"' in unit.read_text()
    assert calls.read_text().splitlines() == ["--user daemon-reload", f"--user enable --now {NAME}.service"]
    removed = cli("worker", "--uninstall", "--repo", str(sandbox.worker), env=env)
    assert removed.returncode == 0 and removed.stdout.strip() == f"removed {unit}"
    assert not unit.exists()
    assert calls.read_text().splitlines()[2:] == [f"--user disable --now {NAME}.service", "--user daemon-reload"]
    # a systemctl that refuses: the command and its words, exit 1
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write('Failed to connect to bus: No medium found\\n')\n"
                    "sys.exit(1)\n")
    refused = cli("worker", "--install", "--repo", str(sandbox.worker), env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("renderloop: error: `systemctl --user daemon-reload` failed (exit 1): "
                                      "Failed to connect to bus: No medium found")


def test_install_refuses_what_cannot_be_a_service(sandbox: Sandbox, tmp_path: Path) -> None:
    once = cli("worker", "--install", "--print", "--once", "--repo", str(sandbox.worker))
    assert once.returncode == 1 and "leave out --once" in once.stderr
    alone = cli("worker", "--print", "--repo", str(sandbox.worker))
    assert alone.returncode == 1 and "--print goes with --install" in alone.stderr
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    not_a_studio = cli("worker", "--install", "--repo", str(tmp_path), env=env)
    assert not_a_studio.returncode == 1 and "no renderloop.yaml here" in not_a_studio.stderr
    # --print shows what --install would register: a folder that cannot be the worker's clone is said first
    (tmp_path / "empty").mkdir()
    for folder, said in [(tmp_path / "empty", "no renderloop.yaml here"), (tmp_path / "gone", "no such folder")]:
        shown = cli("worker", "--install", "--print", "--repo", str(folder), env=env)
        assert shown.returncode == 1 and said in shown.stderr and shown.stdout == "", shown.stdout
    assert cli("worker", "--install", "--print", "--repo", str(sandbox.worker), env=env).returncode == 0


def test_the_task_always_logs_to_a_file(tmp_path: Path) -> None:
    defn = definition("windows", ["--repo", r"C:\studio"], Path(r"C:\studio"), executable=r"C:\Py\python.exe",
                      env={"LOCALAPPDATA": r"C:\Users\ana\AppData\Local"}, home=tmp_path, user="ana")
    assert "--log-file" in defn.text and "worker.log" in defn.text  # pythonw.exe shows nothing: a log file
    named = definition("windows", ["--repo", r"C:\studio"], Path(r"C:\studio"), executable=r"C:\Py\python.exe",
                       env={"LOCALAPPDATA": r"C:\Users\ana\AppData\Local"}, home=tmp_path, user="ana",
                       logs_to_file=True)
    assert "--log-file" not in named.text  # worker.log_file in machine.yaml says where, and stays changeable there


def test_the_worker_without_a_console(sandbox: Sandbox) -> None:
    """What pythonw.exe gives a task: no stdout, no stderr. The worker runs and logs to its file."""
    log = sandbox.root / "w.log"
    code = (f"import sys; sys.stdout = sys.stderr = None; from renderloop.main import main; "
            f"raise SystemExit(main(['worker', '--repo', {str(sandbox.worker)!r}, '--backend', 'placeholder', "
            f"'--once', '--log-file', {str(log)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "rendered" in log.read_text()
    configured = sandbox.root / "logs" / "from-machine-yaml.log"  # worker.log_file in machine.yaml: the same
    Path(os.environ["RENDERLOOP_MACHINE_CONFIG"]).write_text(f"worker:\n  log_file: '{configured}'\n")
    code = code.replace(f", '--log-file', {str(log)!r}", "")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "0 rendered, 0 failed" in configured.read_text()
