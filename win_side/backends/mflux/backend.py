"""The mflux backend: one mflux command per image on a Mac with Apple silicon.

Each image runs the model's mflux program named in ``renderloop.yaml`` (for
example ``mflux-generate --model schnell`` or ``mflux-generate-z-image-turbo``),
found in this Mac's ``mac.mflux_bin`` folder (machine.yaml) or on PATH, with
``--prompt --seed --width --height --steps --output`` and the optional
``--quantize``, ``--low-ram`` and ``--guidance``, under the safety wrapper of
:mod:`win_side.backends.mflux.guard` (one run at a time on the machine, a memory gate,
a cooldown, a timeout that kills the whole process group).

mflux never overwrites a file (it writes ``name_1.png`` instead) and can exit
0 without writing anything (a battery limit, an exception it prints), so
every run writes into a fresh folder and a missing image is a failure that
carries mflux's own output.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from studio.config import MfluxModel
from studio.errors import FatalError
from studio.models import BUILTIN_MODELS
from studio.png import NotPng, check_png
from studio.record import ErrorKind
from win_side.backends.base import (
    BackendOptions,
    BackendUnavailable,
    Cancelled,
    ReportProgress,
    RenderFailed,
    RenderRequest,
    RenderResult,
    not_configured,
)
from win_side.backends.mflux.guard import (
    GuardSettings,
    Interrupted,
    MfluxGuard,
    NotEnoughMemory,
    RunOutcome,
    TimedOut,
    iter_lines,
    read_output,
)

NOT_INSTALLED = (
    "mflux is not installed here ({command} is not {where}). mflux runs on Macs with Apple silicon "
    "only; on such a Mac install it in renderloop's environment with: pip install -e \".[mflux]\" "
    "(or: pip install mflux). Elsewhere, render with the worker (comfyui) or fal."
)
# Commands whose models have no negative branch (mflux warns and ignores the flag).
IGNORES_NEGATIVE = frozenset(m.mflux_program for m in BUILTIN_MODELS if m.mflux_program and not m.negative_prompt)
_OOM = re.compile(r"out of memory|insufficient memory|MemoryError|Cannot allocate memory|kIOGPU", re.I)
_STEP = re.compile(r"(\d+)/(\d+) \[")


def guard_settings(options: BackendOptions) -> GuardSettings:
    """The safeguards: command-line knobs first, then this Mac's ``mac`` settings."""
    mac = options.machine.mac
    return GuardSettings(
        cooldown=_pick(options.cooldown_seconds, mac.cooldown),
        min_available_gb=_pick(options.min_available_gb, mac.min_available_gb),
        memory_wait=mac.memory_wait,
        timeout=_pick(options.timeout_seconds, mac.timeout),
    )


def _pick(given: Optional[float], default: float) -> float:
    return default if given is None else given


def program_name(argv: Sequence[str]) -> str:
    name = Path(argv[0]).name
    for suffix in (".exe", ".cmd", ".bat"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def command_line(request: RenderRequest, mflux: MfluxModel, executable: str, output: Path) -> list[str]:
    """The mflux command that renders ``request`` into ``output``."""
    spec = request.spec
    fixed = mflux.argv
    argv = [executable, *fixed[1:]]
    # --name=value keeps a prompt that starts with '-' from reading as an option.
    argv += [f"--prompt={spec.prompt}", "--seed", str(spec.seed)]
    argv += ["--width", str(spec.width), "--height", str(spec.height)]
    if spec.steps is not None:
        argv += ["--steps", str(spec.steps)]
    if mflux.guidance is not None:
        argv += ["--guidance", f"{mflux.guidance:g}"]
    if mflux.quantize is not None:
        argv += ["--quantize", str(mflux.quantize)]
    if mflux.low_ram:
        argv.append("--low-ram")
    if spec.negative.strip() and program_name(fixed) not in IGNORES_NEGATIVE:
        argv.append(f"--negative-prompt={spec.negative}")
    argv += ["--output", str(output)]
    return argv


class MfluxLane:
    """The one place on this Mac where mflux renders: one image at a time."""

    def __init__(self, guard: MfluxGuard, work_dir: Path, mflux_bin: Optional[str] = None) -> None:
        self.name = "mflux"
        self.mflux_bin = mflux_bin  # this Mac's folder of mflux programs (None: PATH)
        self.window = 1
        self.guard = guard
        self.work_dir = work_dir
        # Called when the memory gate gives up; `renderloop local` stops there instead of waiting on.
        self.on_gave_up: Optional[Callable[[str], None]] = None

    def render(
        self, request: RenderRequest, cancel: threading.Event, progress: Optional[ReportProgress] = None
    ) -> RenderResult:
        mflux = _mflux_settings(request)
        executable = find_program(mflux.program, self.mflux_bin)
        if executable is None:
            raise RenderFailed("missing-model", not_installed(mflux.program, self.mflux_bin))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix=f"{request.slug}-") as tmp:
            folder = Path(tmp)
            output = folder / f"{request.slug}.png"
            log_path = folder / "mflux-output.txt"
            argv = command_line(request, mflux, executable, output)
            outcome = self._run(argv, folder, log_path, cancel, progress)
            png = _collect(output, outcome, program_name(mflux.argv))
        return RenderResult.ended_now(png, outcome.seconds, {"command": program_name(mflux.argv)})

    def _run(
        self, argv: list[str], folder: Path, log_path: Path, cancel: threading.Event, progress: Optional[ReportProgress]
    ) -> RunOutcome:
        tick = _progress_reader(log_path, progress)
        try:
            return self.guard.run(argv, cwd=folder, output_path=log_path, cancel=cancel, on_tick=tick)
        except TimedOut as exc:
            raise RenderFailed("timeout", str(exc), detail=_tail(exc.output)) from None
        except Interrupted as exc:
            raise Cancelled(str(exc)) from None
        except NotEnoughMemory as exc:
            if self.on_gave_up is not None:
                self.on_gave_up(str(exc))
            raise BackendUnavailable(str(exc), retry_after=60.0) from None
        except OSError as exc:  # the program vanished or cannot run
            raise RenderFailed("backend-error", f"could not start {argv[0]}: {exc}") from None


def _collect(output: Path, outcome: RunOutcome, program: str) -> bytes:
    """The PNG mflux wrote, or the failure its output explains."""
    last = _last_line(outcome.output)
    if outcome.returncode != 0:
        kind: ErrorKind = "out-of-memory" if _OOM.search(outcome.output) else "backend-error"
        message = f"{program} exited with code {outcome.returncode}: {last}"
        raise RenderFailed(kind, message, detail=_tail(outcome.output))
    if not output.is_file():
        others = sorted(p.name for p in output.parent.glob("*.png"))
        where = f" (found {', '.join(others)} instead)" if others else ""
        raise RenderFailed(
            "backend-error", f"{program} exited 0 but wrote no image{where}: {last}", detail=_tail(outcome.output)
        )
    png = output.read_bytes()
    try:
        check_png(png)
    except NotPng as exc:
        raise RenderFailed("backend-error", f"{program} wrote {output.name} but it is {exc}") from None
    return png


def _progress_reader(log_path: Path, progress: Optional[ReportProgress]) -> Optional[Callable[[], None]]:
    if progress is None:
        return None
    last_read = [0.0]

    def tick() -> None:
        now = time.monotonic()
        if now - last_read[0] < 1.0:
            return
        last_read[0] = now
        steps = _STEP.findall(read_output(log_path, 4000))
        if steps:
            done, total = (int(n) for n in steps[-1])
            if total > 0:
                progress(min(done / total, 1.0))

    return tick


def _last_line(output: str) -> str:
    lines = [line.strip() for line in iter_lines(output)]
    return lines[-1][:300] if lines else "(no output)"


def _tail(output: str, lines: int = 40) -> str:
    return "\n".join(list(iter_lines(output))[-lines:])[-4000:]


def _mflux_settings(request: RenderRequest) -> MfluxModel:
    if request.settings.mflux is None:
        raise not_configured(request.spec.model, "mflux", "program")
    return request.settings.mflux


def find_program(program: str, mflux_bin: Optional[str] = None) -> Optional[str]:
    """The program in this Mac's mflux folder (``mac.mflux_bin``), else on PATH; never a repository path.

    A match through a relative PATH entry ('', '.': the current folder, the studio when `renderloop local`
    runs there) is no program of this Mac's: None.
    """
    found = shutil.which(program, path=mflux_bin) if mflux_bin else shutil.which(program)
    return found if found is not None and os.path.isabs(found) else None


def not_installed(program: str, mflux_bin: Optional[str]) -> str:
    where = f"in {mflux_bin} (mac.mflux_bin)" if mflux_bin else "on PATH"
    return NOT_INSTALLED.format(command=program, where=where)


class MfluxBackend:
    name = "mflux"

    def __init__(self, options: BackendOptions) -> None:
        programs = sorted({m.mflux.program for m in options.config.models.values() if m.mflux is not None})
        if not programs:
            raise FatalError("no model in renderloop.yaml has an mflux program (models.<name>.mflux.program)")
        self.mflux_bin = options.machine.mac.mflux_bin
        if not any(find_program(p, self.mflux_bin) for p in programs):
            raise FatalError(not_installed(programs[0], self.mflux_bin))
        guard = MfluxGuard(guard_settings(options))
        self._lanes = [MfluxLane(guard, options.state_dir / "mflux", self.mflux_bin)]

    @property
    def lanes(self) -> Sequence[MfluxLane]:
        return self._lanes

    def preflight(self, requests: Sequence[RenderRequest]) -> dict[tuple[str, str], RenderFailed]:
        failures: dict[tuple[str, str], RenderFailed] = {}
        for request in requests:
            mflux = request.settings.mflux
            if mflux is None:
                failures[request.key] = not_configured(request.spec.model, "mflux", "program")
            elif find_program(mflux.program, self.mflux_bin) is None:
                failures[request.key] = RenderFailed("missing-model", not_installed(mflux.program, self.mflux_bin))
        return failures

    def close(self) -> None:
        pass
