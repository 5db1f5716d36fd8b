"""Send a Wake-on-LAN magic packet to the configured worker (``renderloop wake``).

The packet is 6 bytes of 0xFF followed by the worker's MAC address 16 times
(102 bytes), sent over UDP to ``mac.wake`` in this Mac's machine.yaml (never
the repository's renderloop.yaml): the LAN's broadcast address and port
(default 9).  The worker must have
Wake-on-LAN enabled in its firmware and network driver.

:func:`wait_for_hub` then asks the studio's ``origin`` (the hub on the worker)
with ``git ls-remote`` until it answers or the time is up, so that
``renderloop wake --wait && git push`` pushes once the box is up.
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from studio import git
from studio.errors import FatalError
from studio.layout import open_studio
from studio.machine import WakeTarget, load_machine

NO_SETTINGS = (
    "no Wake-on-LAN settings: pass --mac AA:BB:CC:DD:EE:FF, or add them under `mac:` in {path}, e.g.\n"
    "mac:\n"
    "  wake: {{mac: \"AA:BB:CC:DD:EE:FF\", broadcast: 192.168.1.255, port: 9}}"
)


def magic_packet(mac: bytes) -> bytes:
    """6 x 0xFF, then the 6-byte MAC address 16 times."""
    if len(mac) != 6:
        raise ValueError(f"a MAC address has 6 bytes, not {len(mac)}")
    return b"\xff" * 6 + mac * 16


def send_magic_packet(settings: WakeTarget) -> int:
    """Send the packet; returns the number of bytes sent."""
    packet = magic_packet(settings.mac_bytes)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            return sock.sendto(packet, (settings.broadcast, settings.port))
    except OSError as exc:
        raise FatalError(
            f"could not send the Wake-on-LAN packet to {settings.broadcast}:{settings.port}: "
            f"{exc.strerror or exc}"
        ) from None


def wake(flags: Optional[Mapping[str, object]] = None) -> tuple[WakeTarget, int]:
    """Send the packet to the worker this Mac's settings name: its settings and the bytes sent.

    ``flags`` (``{"mac.wake.mac": "AA:BB:..."}``) win over the environment
    (``RENDERLOOP_MAC_WAKE_MAC``...) and ``mac.wake`` in machine.yaml.
    """
    machine = load_machine(flags)
    settings = machine.mac.wake
    if settings is None:
        raise FatalError(NO_SETTINGS.format(path=machine.path))
    return settings, send_magic_packet(settings)


ATTEMPT_TIMEOUT = 10.0  # the longest one ``git ls-remote`` may take (a booting host drops packets)
EVERY = 2.0  # seconds between two asks


@dataclass(frozen=True)
class HubWait:
    """How waiting for the hub ended."""

    answered: bool
    seconds: float  # waited
    remote: str  # origin's URL
    problem: str  # the last reason it did not answer ("" when it did)


def wait_for_hub(
    repo: Path, timeout: float, tick: Callable[[float, str], None] = lambda waited, problem: None, *,
    every: float = EVERY, stop: Optional[threading.Event] = None,
) -> HubWait:
    """Ask the studio's ``origin`` until it answers (True) or ``timeout`` seconds pass.

    ``tick(waited, problem)`` is called after each failed ask: the command
    shows progress with it.  Every ask is prompt-free and deadline-bound
    (``studio.git``), so the wait never exceeds ``timeout`` by more than a moment.
    """
    studio = open_studio(repo)
    url = git.remote_url(studio.root, "origin")
    if url is None:
        raise FatalError(f"{studio.root}: no remote named origin to wait for (the hub on the worker)")
    stop = stop or threading.Event()
    started = time.monotonic()
    deadline = started + timeout
    problem = ""
    while True:
        remaining = deadline - time.monotonic()
        try:
            git.run(studio.root, "ls-remote", "--heads", "origin", timeout=max(0.5, min(ATTEMPT_TIMEOUT, remaining)))
            return HubWait(True, time.monotonic() - started, url, "")
        except git.GitError as exc:
            problem = git.reason(exc)
        waited = time.monotonic() - started
        if time.monotonic() + 0.05 >= deadline:
            return HubWait(False, waited, url, problem)
        tick(waited, problem)
        if stop.wait(max(0.0, min(every, deadline - time.monotonic()))):
            return HubWait(False, time.monotonic() - started, url, "stopped")
