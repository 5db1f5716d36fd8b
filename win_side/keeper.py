"""ComfyUI kept alive: started when it is not answering, restarted after a crash, stopped with the worker.

The start command is this machine's (``--comfyui-start``, later
``worker.comfyui_start`` in its settings), never the repository's.  It runs
without a shell: split like a POSIX shell would on macOS and Linux; on
Windows a ``.bat`` or ``.cmd`` (Pinokio's and the portable build's
launchers) runs through ``cmd /c``, the one way Windows runs a batch file,
and anything else is split with Windows' quoting.  It starts in its own
process group (``studio.processes``), so stopping it ends everything it
started.

A thread asks ``GET /system_stats`` every few seconds.  Not answering and
not ours running: start it, wait until it answers.  Ours exited: say so,
wait out the capped backoff (:class:`~win_side.throttle.Throttle`, the wait
stated in the log) and start it again.  A ComfyUI someone else started is
left alone.
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from studio import processes
from studio.errors import FatalError
from studio.machine import public_url
from win_side.throttle import Throttle, doubling, try_again

log = logging.getLogger("renderloop.worker")

DELAYS = doubling(5.0, 300.0)  # between starts after a crash
CHECK_EVERY = 5.0  # seconds between two asks while it runs
READY_TIMEOUT = 600.0  # a start that does not answer by then is stopped and tried again (models load slowly)


def start_argv(command: str, windows: bool = sys.platform == "win32") -> list[str]:
    """The program and arguments of ``command``, with no shell in between (a batch file: ``cmd /c``)."""
    try:
        words = shlex.split(command, posix=not windows)
    except ValueError as exc:
        raise FatalError(f"--comfyui-start {command!r}: {exc}") from None
    if windows:
        words = [w[1:-1] if len(w) >= 2 and w[0] == w[-1] == '"' else w for w in words]
    if not words:
        raise FatalError("--comfyui-start: give the command that starts ComfyUI")
    if windows and words[0].lower().endswith((".bat", ".cmd")):
        return ["cmd", "/c", *words]
    return words


def models_dir_problem(folder: Optional[str]) -> Optional[str]:
    """Why the configured models folder cannot be used (a drive not mounted), or None."""
    if not folder:
        return None
    path = Path(folder).expanduser()
    if not path.is_dir():
        return (f"the models folder {path} is missing (is its drive mounted or unlocked?): "
                "nothing is rendered until it is there")
    return None


def answering(url: str, timeout: float = 3.0) -> bool:
    """True when ComfyUI at ``url`` answers ``GET /system_stats``."""
    import requests

    try:
        response = requests.get(url.rstrip("/") + "/system_stats", timeout=timeout)
        return response.status_code == 200
    except requests.RequestException:
        return False


class ComfyKeeper:
    """Keeps one ComfyUI answering at ``url`` by running ``command`` when it is not."""

    def __init__(self, command: str, url: str, *, cwd: Optional[Path] = None, log_path: Optional[Path] = None,
                 delays: tuple[float, ...] = DELAYS, check_every: float = CHECK_EVERY,
                 ready_timeout: float = READY_TIMEOUT, probe: Callable[[str], bool] = answering) -> None:
        self.argv = start_argv(command)
        self.url = url
        program = Path(self.argv[2] if self.argv[:2] == ["cmd", "/c"] else self.argv[0])
        self.cwd = cwd or (program.parent if program.is_absolute() else Path.cwd())  # a launcher's own folder
        self.log_path = log_path
        self.throttle = Throttle(delays)
        self.check_every = check_every
        self.ready_timeout = ready_timeout
        self.probe = probe
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.starts = 0
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="comfyui-keeper", daemon=True)

    def start(self) -> "ComfyKeeper":
        self._thread.start()
        return self

    def wait_ready(self, timeout: float) -> bool:
        return self.ready.wait(timeout)

    def stop(self) -> None:
        """Stop watching; end the ComfyUI we started, with every process it started."""
        self._stop.set()
        self._thread.join(timeout=10)
        proc = self.proc
        if proc is not None and proc.poll() is None:
            log.info("stopping the ComfyUI this worker started (pid %d)", proc.pid)
            processes.kill_tree(proc)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            processes.forget(proc)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._turn()
            except Exception as exc:  # noqa: BLE001 - the keeper must keep keeping
                log.error("keeping ComfyUI: %s: %s", type(exc).__name__, exc)
                self._stop.wait(self.check_every)

    def _turn(self) -> None:
        if self.probe(self.url):
            self.ready.set()
            self.throttle.succeed()
            self._stop.wait(self.check_every)
            return
        self.ready.clear()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            return self._wait_until_ready(proc)  # ours is running but not answering: it gets its time
        if proc is not None:
            processes.forget(proc)
            delay = self.throttle.fail()
            log.warning("ComfyUI (pid %d) exited with code %s; %s", proc.pid, proc.returncode, try_again(delay))
            self.proc = None
            if self.throttle.wait(self._stop):
                return
        self._launch()

    def _launch(self) -> None:
        out = open(self.log_path, "ab") if self.log_path is not None else subprocess.DEVNULL
        try:
            log.info("ComfyUI does not answer at %s: starting it: %s", public_url(self.url), " ".join(self.argv))
            self.proc = processes.start(self.argv, self.cwd, dict(os.environ), stdout=out, stderr=out)
            self.starts += 1
        except OSError as exc:
            delay = self.throttle.fail()
            log.error("could not start ComfyUI (%s): %s; %s", " ".join(self.argv), exc.strerror or exc, try_again(delay))
            self.throttle.wait(self._stop)
            return
        finally:
            if not isinstance(out, int):
                out.close()
        self._wait_until_ready(self.proc)

    def _wait_until_ready(self, proc: "subprocess.Popen[bytes]") -> None:
        started = time.monotonic()
        while not self._stop.is_set() and proc.poll() is None:
            if self.probe(self.url):
                log.info("ComfyUI is ready at %s (%.1f s after starting)", public_url(self.url),
                         time.monotonic() - started)
                self.ready.set()
                return
            if time.monotonic() - started > self.ready_timeout:
                delay = self.throttle.fail()
                log.warning("ComfyUI (pid %d) did not answer within %g s: stopping it; %s",
                            proc.pid, self.ready_timeout, try_again(delay))
                processes.kill_tree(proc)
                return
            self._stop.wait(0.5)
