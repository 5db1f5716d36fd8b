"""``renderloop worker``: render every batch in a clone, commit and push (the GPU side)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from renderloop.options import above_zero, add_command, add_repo, at_least_zero
from studio.errors import NotConfigured
from win_side.backends import BACKENDS
from win_side.notify import FORMATS

if TYPE_CHECKING:
    from renderloop.options import Subcommands
    from win_side.worker import WorkerOptions


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "worker", "render every batch in a clone, commit and push (the GPU side)", run)
    add_repo(p, "the worker's clone of the studio (default: this folder)")
    p.add_argument("--backend", choices=tuple(BACKENDS), default=None,
                   help="where images are rendered (default: worker.backend in this machine's settings, else comfyui)")
    p.add_argument("--once", action="store_true", help="reconcile once and exit")
    p.add_argument("--poll", type=float, default=None, metavar="SECONDS",
                   help="seconds between checks of a remote over the network (default: worker.poll in this "
                        "machine's settings, else 12)")
    p.add_argument("--window", type=int, default=None, metavar="N",
                   help="images queued ahead on each server (default: worker.window, else 2)")
    p.add_argument("--comfyui", action="append", default=[], metavar="URL",
                   help="a ComfyUI server (repeat for several; default: worker.comfyui, else http://127.0.0.1:8188)")
    p.add_argument("--fal-url", default=None, metavar="URL", help="fal queue base URL (default: fal's queue host)")
    p.add_argument("--placeholder-seconds", type=float, default=0.0, metavar="SECONDS",
                   help="delay per image for the placeholder backend")
    p.add_argument("--name", default=None, help="this worker's name in records and commits (default: host name)")
    p.add_argument("--no-push", action="store_true", help="commit but do not push")
    p.add_argument("--retry-failed", action="store_true", help="render failed images again")
    p.add_argument("--comfyui-start", default=None, metavar="COMMAND",
                   help="start ComfyUI with COMMAND when it does not answer, restart it after a crash, stop it "
                        "with the worker (a .bat/.cmd runs through cmd /c)")
    p.add_argument("--models-dir", type=Path, default=None, metavar="PATH",
                   help="ComfyUI's models folder: when it is missing (a drive not mounted) nothing is rendered")
    p.add_argument("--notify", default=None, metavar="URL",
                   help="POST to this webhook when a batch is done or failed (ntfy, Discord, Slack: docs/setup.md)")
    p.add_argument("--notify-format", choices=FORMATS, default=None,
                   help="the body of that POST (default json: carries Slack's text and Discord's content too)")
    p.add_argument("--log-file", type=Path, default=None, metavar="PATH",
                   help="also write the log to PATH (rotated at 5 MB, 3 kept): for Task Scheduler")
    p.add_argument("--backend-wait", type=float, default=None, metavar="SECONDS",
                   help="with --once: how long to wait for a backend that does not answer before giving up (exit 1)")
    p.add_argument("--push-interval", type=float, default=None, metavar="SECONDS",
                   help="seconds between two pushes at least (default: 0 to a remote on this disk, 10 to others)")
    service = p.add_argument_group("start at logon, restart on failure")
    service.add_argument("--install", action="store_true",
                         help="register the worker with these flags: a Task Scheduler task (Windows), a systemd "
                              "user unit (Linux), a launchd agent (macOS)")
    service.add_argument("--uninstall", action="store_true", help="remove what --install registered")
    service.add_argument("--print", action="store_true", dest="print_only",
                         help="with --install: show the definition, register nothing")
    p.set_defaults(worker_parser=p)


SERVICE_FLAGS = ("install", "uninstall", "print_only", "debug", "once")


def run(args: argparse.Namespace) -> int:
    from win_side.worker import WorkerOptions

    if args.install or args.uninstall:
        return service(args)
    if args.print_only:
        raise NotConfigured("--print goes with --install: it shows the definition --install would register")
    above_zero("--poll", args.poll)
    above_zero("--window", args.window, "give 1 or more")
    at_least_zero("--placeholder-seconds", args.placeholder_seconds)
    at_least_zero("--backend-wait", args.backend_wait)
    at_least_zero("--push-interval", args.push_interval)

    return worker(
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
            notify=args.notify,
            notify_format=args.notify_format,
            comfyui_start=args.comfyui_start,
            models_dir=str(Path(args.models_dir).absolute()) if args.models_dir else None,
            backend_wait=args.backend_wait,
            push_interval=args.push_interval,
            log_file=str(Path(args.log_file).absolute()) if args.log_file else None,
        ),
    )


def worker(options: WorkerOptions) -> int:
    from renderloop.console import log_to_file, quick_edit_off
    from renderloop.progress import StopOnSignals, make_progress
    from win_side.worker import StopSwitch, machine_settings, run_worker

    machine = machine_settings(options)  # flags over the environment over machine.yaml; a bad one: a clear exit
    quick_edit_off()  # a click in the console would freeze the worker
    switch = StopSwitch()
    progress = make_progress()
    log_file = machine.worker.log_file
    logged = log_to_file(Path(log_file).expanduser()) if log_file else None
    try:
        with StopOnSignals(switch):
            result = run_worker(options, progress, switch, machine)
    finally:
        progress.close()
        if logged is not None:
            logged.close()
            logging.getLogger("renderloop").removeHandler(logged)
    if result.summary.pending:
        print(f"renderloop: error: {result.summary.pending} finished render(s) could not be written into the "
              f"studio (see above); they are kept in {result.state / 'pending'} and committed by the next run",
              file=sys.stderr)
    summary = result.summary
    if result.no_remote:
        made = summary.rendered + summary.failed
        print(f"renderloop: no remote {result.no_remote!r} in {result.root}: nothing was pushed ({made} new commits "
              f"stay here); add one with `git remote add {result.no_remote} URL`", file=sys.stderr)
        if made and options.once:
            return 1
    if result.summary.refused and options.once:
        print(f"renderloop: error: {result.summary.refused} batch(es) not rendered: their renders folder is a "
              "link or a file, not a real folder (see above)", file=sys.stderr)
        return 1
    if result.waiting and not result.summary.pushed:
        print(f"renderloop: error: {result.waiting} commits could not be pushed; they wait in {result.root}",
              file=sys.stderr)
        return 1
    return 1 if result.summary.pending else 0


def service_flags(args: argparse.Namespace) -> list[str]:
    """The worker flags given, as a service runs them: paths absolute, the --install family left out."""
    parser: argparse.ArgumentParser = args.worker_parser
    flags: list[str] = []
    for action in parser._actions:
        dest = action.dest
        if dest in SERVICE_FLAGS or dest in ("help", "worker_parser") or not action.option_strings:
            continue
        value = getattr(args, dest, None)
        option = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if dest == "repo":
            flags += [option, str(Path(value or ".").resolve())]
        elif value == action.default or value is None or value == []:
            continue
        elif isinstance(action, argparse._StoreTrueAction):
            flags.append(option)
        else:
            for item in value if isinstance(value, list) else [value]:
                item = Path(item).absolute() if isinstance(item, Path) else item
                flags += [option, item if isinstance(item, str) else f"{item:g}" if isinstance(item, float) else str(item)]
    return flags


def service(args: argparse.Namespace) -> int:
    from studio.machine import load_machine
    from win_side.service import definition, install, this_platform, uninstall

    if args.install and args.uninstall:
        raise NotConfigured("--install and --uninstall: choose one")
    if args.once:
        raise NotConfigured("--install registers a worker that keeps running: leave out --once")
    repo = Path(args.repo).resolve()
    logs_to_file = load_machine().worker.log_file is not None  # machine.yaml or the environment names one
    defn = definition(this_platform(), service_flags(args), repo, logs_to_file=logs_to_file)
    if args.uninstall:
        removed = uninstall(defn)
        print(f"removed {defn.path}" if removed else f"nothing to remove: {defn.path} does not exist")
        return 0
    if not repo.is_dir():  # --print too: it shows what --install would register
        raise NotConfigured(f"{repo}: no such folder: give the worker's clone with --repo")
    if not (repo / "renderloop.yaml").is_file():
        raise NotConfigured(f"{repo}: no renderloop.yaml here: give the worker's clone with --repo")
    if args.print_only:
        print(f"# {defn.path}")
        print(defn.text.replace("\r\n", "\n"), end="")
        print("# registered with: " + "; ".join(" ".join(c) for c in defn.register))
        return 0
    install(defn)
    print(f"wrote {defn.path}")
    for command in defn.register:
        print(f"ran: {' '.join(command)}")
    print("The worker starts at logon and is restarted after a failure; `renderloop worker --uninstall` removes it.")
    return 0
