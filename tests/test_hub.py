"""The hub (``renderloop hub init``): a bare repository the Mac pushes to over SSH, the worker watching it.

Pushed to over real ssh to 127.0.0.1 when an sshd can be started here (a
throwaway sshd on a free port, its own host key and authorized key), else
over a local path; either way the worker's watcher notices the push within a
second, and the hub refuses a force-push and a deleted branch.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from mac_side.init import init
from studio.layout import Studio
from tests.helpers import cli, git
from win_side.hub import HUB_SETTINGS, ssh_url
from win_side.repo import WorkerRepo
from win_side.watch import Watcher


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_sshd(tmp: Path) -> tuple[Optional[str], Optional[subprocess.Popen[bytes]], str]:
    """(GIT_SSH_COMMAND, the sshd, why not) for an sshd on 127.0.0.1 that lets this user in with a fresh key."""
    sshd, keygen = shutil.which("sshd") or "/usr/sbin/sshd", shutil.which("ssh-keygen")
    if not Path(sshd).is_file() or keygen is None or shutil.which("ssh") is None:
        return None, None, "no sshd/ssh/ssh-keygen on this machine (openssh-server not installed)"
    if os.name != "posix" or os.geteuid() != 0:
        return None, None, "sshd needs root here to switch to the logged-in user"
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation folder sshd insists on
    tmp.mkdir()
    for name in ("host", "client"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True)
    (tmp / "authorized_keys").write_text((tmp / "client.pub").read_text())
    port = _free_port()
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host'}\nAuthorizedKeysFile {tmp / 'authorized_keys'}\n"
        f"PidFile {tmp / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "PermitRootLogin prohibit-password\nKbdInteractiveAuthentication no\n"
        f"SetEnv PATH={os.environ['PATH']}\nPermitUserEnvironment no\n"
    )
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stderr=open(tmp / "sshd.log", "wb"))
    ssh = (f"ssh -p {port} -i {tmp / 'client'} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
           f"-o UserKnownHostsFile={tmp / 'known_hosts'} -o BatchMode=yes")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = subprocess.run([*ssh.split(), "127.0.0.1", "true"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ssh + f" -o Port={port}", proc, ""
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    return None, None, f"the test sshd did not let us in: {(tmp / 'sshd.log').read_text()[-300:]}"


@pytest.fixture(params=["ssh", "path"])
def transport(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """"ssh" (GIT_SSH_COMMAND set for a throwaway sshd) or "path"."""
    if request.param == "path":
        yield "path"
        return
    ssh, proc, why = _start_sshd(tmp_path / "sshd")
    if ssh is None:
        pytest.skip(f"pushing over ssh not tested: {why}")
    monkeypatch.setenv("GIT_SSH_COMMAND", ssh)
    try:
        yield "ssh"
    finally:
        assert proc is not None
        proc.terminate()
        proc.wait(timeout=10)


def test_a_hub_made_by_the_command_takes_pushes_over_ssh_watched_by_the_worker(
    tmp_path: Path, transport: str
) -> None:
    hub = tmp_path / "hub" / "studio.git"
    made = cli("hub", "init", str(hub), "--user", "ana", "--host", "studio-pc")
    assert made.returncode == 0, made.stderr
    for key, value in HUB_SETTINGS:
        assert git(hub, "config", key).stdout.strip() == value
    assert git(hub, "rev-parse", "--is-bare-repository").stdout.strip() == "true"
    assert f"git remote add origin ssh://ana@studio-pc{hub.as_posix()}" in made.stdout
    assert f"git clone {hub} " in made.stdout

    # The Mac: a studio pushed to the hub by the URL the command printed, with this machine's user and port.
    mac = tmp_path / "mac"
    init(mac)
    git(mac, "add", "-A")
    git(mac, "commit", "-q", "--no-verify", "--allow-empty", "-m", "a studio")
    if transport == "ssh":
        import getpass

        url = ssh_url(hub, user=getpass.getuser(), host="127.0.0.1")
        assert url == f"ssh://{getpass.getuser()}@127.0.0.1{hub.as_posix()}"
    else:
        url = str(hub)
    git(mac, "remote", "add", "origin", url)
    pushed = git(mac, "push", "-u", "origin", "main", check=False)
    assert pushed.returncode == 0, pushed.stderr

    # The worker's clone, on the hub's disk, watches it.
    worker = tmp_path / "worker"
    git(tmp_path, "clone", "-q", str(hub), str(worker))
    poked = threading.Event()
    watcher = Watcher(WorkerRepo(Studio.at(worker)), poked.set, poll=30, backstop=60)
    watcher.start()
    try:
        assert watcher.mode == "watch"
        time.sleep(0.3)  # the observer is up
        (mac / "notes.txt").write_text("a change\n")
        git(mac, "add", "notes.txt")
        git(mac, "commit", "-q", "--no-verify", "-m", "a change")
        assert git(mac, "push", "-q", "origin", "main", check=False).returncode == 0
        pushed_at = time.monotonic()
        assert poked.wait(1.0), "the worker did not notice the push within a second"
        assert time.monotonic() - pushed_at < 1.0
    finally:
        watcher.stop()

    # A force-push that drops a commit is refused; so is deleting the branch.
    head = git(hub, "rev-parse", "main").stdout.strip()
    git(mac, "reset", "-q", "--hard", "HEAD~1")
    (mac / "other.txt").write_text("rewritten history\n")
    git(mac, "add", "other.txt")
    git(mac, "commit", "-q", "--no-verify", "-m", "rewritten")
    forced = git(mac, "push", "--force", "origin", "main", check=False)
    assert forced.returncode != 0
    assert "non-fast-forward" in forced.stderr or "denying non-fast-forward" in forced.stderr
    deleted = git(mac, "push", "origin", ":main", check=False)
    assert deleted.returncode != 0 and "deletion prohibited" in deleted.stderr
    assert git(hub, "rev-parse", "main").stdout.strip() == head


def test_hub_init_refuses_a_working_tree_and_reconfigures_an_existing_hub(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "init", "-q", str(clone))
    (clone / "x").write_text("x")
    refused = cli("hub", "init", str(clone))
    assert refused.returncode == 1
    assert "not a bare one" in refused.stderr and str(clone) in refused.stderr
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "photo.png").write_bytes(b"x")
    assert "not empty and not a bare repository" in cli("hub", "init", str(stray)).stderr
    hub = tmp_path / "studio.git"
    git(tmp_path, "init", "-q", "--bare", str(hub))
    again = cli("hub", "init", str(hub))
    assert again.returncode == 0 and again.stdout.startswith("Re-configured the hub")
    assert git(hub, "config", "receive.denyDeletes").stdout.strip() == "true"


def test_the_remote_url_of_a_windows_path() -> None:
    from pathlib import PureWindowsPath

    assert ssh_url(PureWindowsPath(r"C:\studio.git"), "ana", "studio-pc") == "ssh://ana@studio-pc/C:/studio.git"  # type: ignore[arg-type]
