"""``renderloop wake``: send a Wake-on-LAN packet to the worker (flags, else this Mac's machine.yaml) and wait for its hub."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from renderloop.options import above_zero, add_command, add_repo

if TYPE_CHECKING:
    from renderloop.options import Subcommands

WAIT_TIMEOUT = 120.0


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "wake", "send a Wake-on-LAN packet to the worker named in this Mac's settings", run)
    add_repo(p)
    p.add_argument("--wait", action="store_true",
                   help="then wait until the studio's origin (the hub on the worker) answers: "
                        "`renderloop wake --wait && git push`")
    target = p.add_argument_group("the worker to wake (default: mac.wake in this Mac's machine.yaml)")
    target.add_argument("--mac", default=None, metavar="ADDRESS", help="the worker's network card, AA:BB:CC:DD:EE:FF")
    target.add_argument("--broadcast", default=None, metavar="ADDRESS",
                        help="the LAN's broadcast address (default 255.255.255.255)")
    target.add_argument("--port", type=int, default=None, help="the UDP port (default 9)")
    p.add_argument("--wait-timeout", type=float, default=WAIT_TIMEOUT, metavar="SECONDS",
                   help=f"give up waiting after this long (default {WAIT_TIMEOUT:g})")


def run(args: argparse.Namespace) -> int:
    above_zero("--wait-timeout", args.wait_timeout)
    flags = {"mac.wake.mac": args.mac, "mac.wake.broadcast": args.broadcast, "mac.wake.port": args.port}
    return wake(args.repo, wait=args.wait_timeout if args.wait else None, flags=flags)


def wake(repo: Path, wait: Optional[float] = None, flags: Optional[dict[str, object]] = None) -> int:
    from mac_side.wake import wait_for_hub, wake as send

    settings, sent = send(flags)
    print(f"sent a Wake-on-LAN packet ({sent} bytes) for {settings.mac} to {settings.broadcast}:{settings.port}",
          flush=True)
    if wait is None:
        return 0
    tty = sys.stdout.isatty()
    print(f"waiting up to {wait:g} s for origin to answer", end="" if tty else "\n", flush=True)

    def tick(waited: float, problem: str) -> None:
        if tty:
            print(".", end="", flush=True)
        else:
            print(f"  {waited:.0f} s: not yet ({problem})", flush=True)

    outcome = wait_for_hub(repo, wait, tick)
    if tty:
        print()
    if not outcome.answered:
        print(f"renderloop: error: {outcome.remote} did not answer within {wait:g} s ({outcome.problem}); "
              "is the worker awake and its SSH server running?", file=sys.stderr)
        return 1
    print(f"{outcome.remote} answers (after {outcome.seconds:.0f} s)")
    return 0
