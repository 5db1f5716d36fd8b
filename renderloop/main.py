"""The ``renderloop`` command: parses arguments and routes to the two sides.

Each command is one function in one module that returns an exit code.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from renderloop.error_handler import Exit, error_handler
from studio import __version__

HOOKS = ("pre-commit", "post-merge", "post-rewrite", "post-checkout")
BACKENDS = ("comfyui", "fal", "mflux", "placeholder")


def _repo(parser: argparse.ArgumentParser, help_text: str = "the studio checkout (default: this folder)") -> None:
    parser.add_argument("--repo", "-C", type=Path, default=Path("."), metavar="PATH", help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="renderloop",
        description="Batch image rendering on your own GPUs, driven entirely by git.",
    )
    parser.add_argument("--version", action="version", version=f"renderloop {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_command(name: str, help: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help)
        # --debug is also accepted after the command (`renderloop worker --debug`)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return command

    p = add_command("init", help="create a studio (or enable the hooks in a clone of one)")
    p.add_argument("path", nargs="?", type=Path, default=Path("."), help="where (default: this folder)")

    p = add_command("new", help="scaffold batches/BATCH.yaml (--rerolls: every slug to reroll)")
    p.add_argument("batch", help="the batch name, e.g. hero-q4")
    p.add_argument("--rerolls", action="store_true", help="gather every slug whose latest verdict is reroll")
    p.add_argument("--model", help="the batch's model (default: the first in renderloop.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing batch file")
    _repo(p)

    p = add_command("status", help="each batch with pending, rendered, failed and reviewed counts")
    _repo(p)

    p = add_command("review", help="write or update renders/<batch>/review.md (--html: contact sheet)")
    p.add_argument("batches", nargs="*", metavar="BATCH", help="batches to review (default: all with renders)")
    p.add_argument("--html", action="store_true", help="also write renders/<batch>/review.html, a contact sheet")
    _repo(p)

    p = add_command("ledger", help="the verdict ledger: `renderloop ledger verify`")
    ledger_sub = p.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    v = ledger_sub.add_parser("verify", help="prove from git history that no ledger line was changed or removed")
    _repo(v)

    p = add_command("stats", help="keep rate by model and archetype, render time and cost by backend")
    _repo(p)

    p = add_command("export", help="copy the latest kept image of each slug to DIR/<slug>.png")
    p.add_argument("dest", type=Path, metavar="DIR")
    _repo(p)

    p = add_command("follow", help="watch the worker's commits arrive, pull them, write the review")
    p.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help="how often to ask the remote")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="give up after this long")
    _repo(p)

    p = add_command("worker", help="render every batch in a clone, commit and push (the GPU side)")
    _repo(p, "the worker's clone of the studio (default: this folder)")
    p.add_argument("--backend", choices=BACKENDS, default="comfyui", help="where images are rendered")
    p.add_argument("--once", action="store_true", help="reconcile once and exit")
    p.add_argument("--poll", type=float, default=None, metavar="SECONDS",
                   help="seconds between remote checks (default: renderloop.yaml, else 2)")
    p.add_argument("--window", type=int, default=None, metavar="N",
                   help="images queued ahead on each server (default: renderloop.yaml, else 2)")
    p.add_argument("--comfyui", action="append", default=[], metavar="URL",
                   help="a ComfyUI server (repeat for several; default: renderloop.yaml)")
    p.add_argument("--fal-url", default=None, metavar="URL", help="fal queue base URL (default: fal's queue host)")
    p.add_argument("--placeholder-seconds", type=float, default=0.0, metavar="SECONDS",
                   help="delay per image for the placeholder backend")
    p.add_argument("--name", default=None, help="this worker's name in records and commits (default: host name)")
    p.add_argument("--no-push", action="store_true", help="commit but do not push")
    p.add_argument("--retry-failed", action="store_true", help="render failed images again")

    p = add_command("local", help="render a batch on this Mac with mflux, commit and push")
    p.add_argument("batch", help="the batch to render")
    p.add_argument("--cooldown", type=float, default=None, metavar="SECONDS", help="pause between runs")
    p.add_argument("--min-available-gb", type=float, default=None, metavar="GB", help="memory gate")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="limit per image")
    _repo(p)

    p = add_command("wake", help="send a Wake-on-LAN packet to the configured worker")
    _repo(p)

    p = add_command("demo", help="the whole loop in a temporary sandbox, in seconds")
    p.add_argument("--keep", type=Path, default=None, metavar="DIR", help="build the sandbox in DIR and keep it")
    p.add_argument("--images", type=int, default=4, metavar="N", help="prompts in the demo batch (2-6)")

    p = add_command("hook", help="run a git hook (called by the shims in hooks/)")
    p.add_argument("name", choices=HOOKS)
    p.add_argument("args", nargs="*")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with error_handler(args.debug):
            return route(args)
    except Exit as exc:
        return exc.code


def route(args: argparse.Namespace) -> int:  # noqa: C901 - one branch per command
    command = args.command
    if command == "init":
        from mac_side.init import init

        return init(args.path)
    if command == "new":
        from mac_side.new import new_batch

        return new_batch(args.repo, args.batch, rerolls=args.rerolls, model=args.model, force=args.force)
    if command == "status":
        from mac_side.status import status

        return status(args.repo)
    if command == "review":
        from mac_side.review_cmd import review

        return review(args.repo, args.batches, html=args.html)
    if command == "ledger":
        from mac_side.ledger_verify import verify

        return verify(args.repo)
    if command == "stats":
        from mac_side.stats import stats

        return stats(args.repo)
    if command == "export":
        from mac_side.export import export

        return export(args.repo, args.dest)
    if command == "follow":
        from mac_side.follow import follow

        return follow(args.repo, poll=args.poll, timeout=args.timeout)
    if command == "worker":
        from win_side.worker import WorkerOptions, run_worker

        return run_worker(
            WorkerOptions(
                repo=args.repo,
                backend=args.backend,
                once=args.once,
                poll=args.poll,
                window=args.window,
                comfyui=args.comfyui,
                fal_url=args.fal_url,
                placeholder_seconds=args.placeholder_seconds,
                name=args.name,
                push=not args.no_push,
                retry_failed=args.retry_failed,
            )
        )
    if command == "local":
        from win_side.local import run_local

        return run_local(
            args.repo, args.batch, cooldown=args.cooldown, min_available_gb=args.min_available_gb, timeout=args.timeout
        )
    if command == "wake":
        from mac_side.wake import wake

        return wake(args.repo)
    if command == "demo":
        from renderloop.demo import demo

        return demo(keep=args.keep, images=args.images)
    if command == "hook":
        from mac_side.hooks import run_hook

        return run_hook(args.name, args.args)
    raise AssertionError(command)


def entry() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    entry()
