"""Send a Wake-on-LAN magic packet to the configured worker (``renderloop wake``).

The packet is 6 bytes of 0xFF followed by the worker's MAC address 16 times
(102 bytes), sent over UDP to ``worker.wake`` in ``renderloop.yaml``: the
LAN's broadcast address and port (default 9).  The worker must have
Wake-on-LAN enabled in its firmware and network driver.
"""
from __future__ import annotations

import socket
from pathlib import Path

from studio.config import WakeSettings, load_config
from studio.errors import FatalError
from studio.layout import open_studio

NO_SETTINGS = (
    "no Wake-on-LAN settings: add them under `worker:` in renderloop.yaml, e.g.\n"
    "  wake: {mac: \"AA:BB:CC:DD:EE:FF\", broadcast: 192.168.1.255, port: 9}"
)


def magic_packet(mac: bytes) -> bytes:
    """6 x 0xFF, then the 6-byte MAC address 16 times."""
    if len(mac) != 6:
        raise ValueError(f"a MAC address has 6 bytes, not {len(mac)}")
    return b"\xff" * 6 + mac * 16


def send_magic_packet(settings: WakeSettings) -> int:
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


def wake(repo: Path) -> tuple[WakeSettings, int]:
    """Send the packet to the worker of ``renderloop.yaml``: its settings and the bytes sent."""
    studio = open_studio(repo)
    settings = load_config(studio).worker.wake
    if settings is None:
        raise FatalError(NO_SETTINGS)
    return settings, send_magic_packet(settings)
