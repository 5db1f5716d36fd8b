"""`renderloop wake`: the magic packet to the worker of this Mac's machine.yaml, received for real on 127.0.0.1."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from mac_side.wake import magic_packet
from tests.helpers import cli


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def _machine_with(wake_line: str | None) -> Path:
    """This Mac's machine.yaml (the tests' RENDERLOOP_MACHINE_CONFIG) with ``wake_line`` under ``mac:``."""
    path = Path(os.environ["RENDERLOOP_MACHINE_CONFIG"])
    body = f"  {wake_line}\n" if wake_line is not None else "  cooldown: 15\n"
    path.write_text("# this Mac\nmac:\n" + body, encoding="utf-8")
    return path


def _studio_with(tmp_path: Path, wake_line: str) -> Path:
    """A studio to wait for the hub of, and this Mac's wake settings in its machine.yaml."""
    from mac_side.init import init

    _machine_with(wake_line)
    root = tmp_path / "studio"
    init(root)
    return root


def test_wake_sends_the_magic_packet(tmp_path: Path, receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    _machine_with(f'wake: {{mac: "aa-bb-cc-dd-ee-0f", broadcast: 127.0.0.1, port: {port}}}')

    result = cli("wake", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    packet, _ = receiver.recvfrom(1024)
    mac = bytes.fromhex("aabbccddee0f")
    assert len(packet) == 102
    assert packet[:6] == b"\xff" * 6
    assert packet[6:] == mac * 16
    assert "AA:BB:CC:DD:EE:0F" in result.stdout and f"127.0.0.1:{port}" in result.stdout


def test_wake_from_a_subfolder_of_a_clone_ignores_the_repository(sandbox, receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    _machine_with(f"wake: {{mac: '001122334455', broadcast: 127.0.0.1, port: {port}}}")
    result = cli("wake", cwd=sandbox.mac / "batches")
    assert result.returncode == 0, result.stderr
    packet, _ = receiver.recvfrom(1024)
    assert packet == b"\xff" * 6 + bytes.fromhex("001122334455") * 16


def test_the_environment_overrides_the_file(tmp_path: Path, receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    _machine_with('wake: {mac: "AA:BB:CC:DD:EE:FF", broadcast: 127.0.0.1, port: 1}')
    env = {**os.environ, "RENDERLOOP_MAC_WAKE_PORT": str(port)}
    result = cli("wake", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    packet, _ = receiver.recvfrom(1024)
    assert packet == b"\xff" * 6 + bytes.fromhex("AABBCCDDEEFF") * 16


def test_no_wake_settings_says_what_to_add_and_where(tmp_path: Path) -> None:
    path = _machine_with(None)
    result = cli("wake", cwd=tmp_path)
    assert result.returncode == 1
    assert f"no Wake-on-LAN settings: pass --mac AA:BB:CC:DD:EE:FF, or add them under `mac:` in {path}" in result.stderr
    assert "wake: {mac:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("mac", ["AA:BB:CC:DD:EE", "GG:BB:CC:DD:EE:FF", "AA:BB:CC:DD:EE:FF:00", ""])
def test_a_bad_mac_is_refused_with_its_line(tmp_path: Path, mac: str) -> None:
    path = _machine_with(f'wake: {{mac: "{mac}", broadcast: 127.0.0.1}}')
    result = cli("wake", cwd=tmp_path)
    assert result.returncode == 1
    assert f"{path}:3: mac.wake.mac: {mac!r} is not a MAC address" in result.stderr


# (11:22:33:44:55:56 unquoted was a YAML 1.1 sexagesimal number; YAML 1.2 reads it as the text it is.)
@pytest.mark.parametrize("mac", ["001122334455"])
def test_an_unquoted_mac_read_as_a_number_asks_for_quotes(tmp_path: Path, mac: str) -> None:
    _machine_with(f"wake: {{mac: {mac}, broadcast: 127.0.0.1}}")
    result = cli("wake", cwd=tmp_path)
    assert result.returncode == 1
    assert "put the MAC address in quotes" in result.stderr


def test_an_unreachable_address_is_one_clear_line(tmp_path: Path) -> None:
    _machine_with('wake: {mac: "AA:BB:CC:DD:EE:FF", broadcast: "no-such-host.invalid"}')
    result = cli("wake", cwd=tmp_path)
    assert result.returncode == 1
    assert "could not send the Wake-on-LAN packet to no-such-host.invalid:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_magic_packet_shape() -> None:
    mac = bytes(range(6))
    packet = magic_packet(mac)
    assert len(packet) == 102
    assert packet == b"\xff" * 6 + mac * 16
    with pytest.raises(ValueError):
        magic_packet(b"\x00" * 5)


def test_wake_wait_returns_once_the_hub_answers(tmp_path: Path, receiver: socket.socket) -> None:
    import threading

    from tests.helpers import git

    port = receiver.getsockname()[1]
    root = _studio_with(tmp_path, f'wake: {{mac: "aa-bb-cc-dd-ee-0f", broadcast: 127.0.0.1, port: {port}}}')
    hub = tmp_path / "hub.git"  # not there yet: the worker is still asleep
    git(root, "remote", "add", "origin", str(hub))
    timer = threading.Timer(2.5, lambda: git(tmp_path, "init", "-q", "--bare", str(hub)))
    timer.start()
    try:
        result = cli("wake", "--wait", "--wait-timeout", "30", "-C", str(root))
    finally:
        timer.cancel()
    assert result.returncode == 0, result.stderr
    assert receiver.recvfrom(1024)[0] == magic_packet(bytes.fromhex("aabbccddee0f"))
    lines = result.stdout.splitlines()
    assert lines[1] == "waiting up to 30 s for origin to answer"
    assert any("not yet" in line for line in lines[2:-1]), result.stdout  # progress while it slept
    assert lines[-1].startswith(f"{hub} answers (after ")
    waited = int(lines[-1].split("after ")[1].split(" s")[0])
    assert 2 <= waited <= 10


def test_wake_wait_gives_up_at_its_timeout(tmp_path: Path, receiver: socket.socket) -> None:
    import time

    from tests.helpers import git

    port = receiver.getsockname()[1]
    root = _studio_with(tmp_path, f'wake: {{mac: "aa-bb-cc-dd-ee-0f", broadcast: 127.0.0.1, port: {port}}}')
    git(root, "remote", "add", "origin", str(tmp_path / "never.git"))
    started = time.monotonic()
    result = cli("wake", "--wait", "--wait-timeout", "3", "-C", str(root))
    took = time.monotonic() - started
    assert result.returncode == 1
    assert receiver.recvfrom(1024)[0][:6] == b"\xff" * 6  # the packet went all the same
    assert result.stderr.startswith(f"renderloop: error: {tmp_path / 'never.git'} did not answer within 3 s (")
    assert "is the worker awake" in result.stderr
    # git's own reason, not the last line of its closing advice ("and the repository exists.")
    assert "does not appear to be a git repository" in result.stderr, result.stderr
    assert "and the repository exists" not in result.stdout + result.stderr
    assert took < 15
    assert cli("wake", "--wait", "--wait-timeout", "0", "-C", str(root)).stderr.strip() == (
        "renderloop: error: --wait-timeout 0: give more than zero")


def test_wake_wait_is_bounded_by_a_hub_that_accepts_and_never_speaks(tmp_path: Path, receiver: socket.socket) -> None:
    import time

    from tests.helpers import git

    port = receiver.getsockname()[1]
    root = _studio_with(tmp_path, f'wake: {{mac: "aa-bb-cc-dd-ee-0f", broadcast: 127.0.0.1, port: {port}}}')
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are accepted by the kernel; nothing ever answers ssh's greeting
    try:
        git(root, "remote", "add", "origin", f"ssh://ana@127.0.0.1:{silent.getsockname()[1]}/studio.git")
        started = time.monotonic()
        result = cli("wake", "--wait", "--wait-timeout", "3", "-C", str(root))
        took = time.monotonic() - started
    finally:
        silent.close()
    assert result.returncode == 1, result.stdout
    assert "did not answer within 3 s" in result.stderr
    assert took < 12


def test_flags_name_the_target_over_the_environment_and_the_file(tmp_path: Path, receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    _machine_with('wake: {mac: "AA:BB:CC:DD:EE:FF", broadcast: 10.255.255.255, port: 1}')
    env = {**os.environ, "RENDERLOOP_MAC_WAKE_MAC": "11:11:11:11:11:11"}
    result = cli("wake", "--mac", "02-00-5e-10-00-01", "--broadcast", "127.0.0.1", "--port", str(port),
                 cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    packet, _ = receiver.recvfrom(1024)
    assert packet == b"\xff" * 6 + bytes.fromhex("02005e100001") * 16
    bad = cli("wake", "--mac", "not-a-mac", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("renderloop: error: --mac: 'not-a-mac' is not a MAC address: "
                                  "write six pairs of hex digits, like AA:BB:CC:DD:EE:FF")
