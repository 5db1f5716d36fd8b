"""Pushing in the background: coalesced, retried, never forced.

Commits land locally one per image; the pusher sends whatever is waiting
whenever it is woken, so a burst of commits goes out in one push.  A
rejected push (the person pushed meanwhile, or a lost race that shows as
``cannot lock ref ... expected``) is fetched, rebased and tried again.  An
unreachable remote is retried on a capped schedule; commits wait locally.

A remote that is not on this disk (a hosted one) limits how often it may be
pushed to: pushes are then spaced ``interval`` seconds apart (the worker's
default is 10 s, at most 6 a minute), and the commits made meanwhile go out
together in the next push. A commit waits at most ``interval`` for its push.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from studio.errors import FatalError
from win_side.repo import PushRejected, RemoteUnreachable, WorkerRepo
from win_side.threads import keep_running
from win_side.throttle import WORKER_DELAYS, Throttle, try_again

log = logging.getLogger("renderloop.worker")

MAX_REBASES = 20


class Pusher:
    def __init__(
        self, repo: WorkerRepo, on_integrated: Optional[Callable[[], None]] = None, interval: float = 0.0
    ) -> None:
        self.repo = repo
        self.on_integrated = on_integrated  # the remote brought new commits: re-plan
        self.interval = interval  # seconds between two pushes at least
        self.pushes = 0
        self._last_push = float("-inf")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.throttle = Throttle(WORKER_DELAYS)
        self._thread = threading.Thread(target=self._run, name="pusher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self) -> None:
        """A commit is waiting: push soon."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        keep_running("pusher", self._turn, self._stop)

    def _turn(self) -> bool:
        """One turn of the thread's loop; False when stopping."""
        if self.throttle.waiting:
            self.throttle.wait(self._stop)
            return True
        self._wake.wait(timeout=5.0)
        if self._stop.is_set():
            return False
        spacing = self.spacing()
        if spacing > 0:  # too soon after the last push: commits gather meanwhile
            self._stop.wait(spacing)
            return True
        self._wake.clear()
        self.push_pending()
        return True

    def spacing(self) -> float:
        """Seconds to wait before the next push may go (0: now)."""
        return max(0.0, self._last_push + self.interval - time.monotonic())

    def push_pending(self) -> bool:
        """Push everything that waits; True when the remote has it all."""
        try:
            ok = self._push_with_rebase()
        except (RemoteUnreachable, FatalError) as exc:
            self._schedule_retry(str(exc))
            return False
        if not ok:
            self._schedule_retry(f"the remote moved on {MAX_REBASES} times in a row")
            return False
        self.throttle = Throttle(WORKER_DELAYS)
        return True

    def _push_with_rebase(self) -> bool:
        stuck = 0  # rejections with nothing new to rebase onto
        for _ in range(MAX_REBASES):
            if self.repo.unpushed() == 0:
                return True
            try:
                sha = self.repo.push_once()
            except PushRejected as exc:
                log.info("push rejected (%s): fetching and rebasing, then pushing again", exc)
                self.repo.fetch()
                if self.repo.integrate():
                    stuck = 0
                    if self.on_integrated:
                        self.on_integrated()
                    continue
                stuck += 1
                if stuck >= 2:  # not a lost race: a stale lock on the server, a hook refusing...
                    raise RemoteUnreachable(f"the remote refuses the push: {exc}") from None
                continue
            self._last_push = time.monotonic()
            self.pushes += 1
            log.debug("pushed %s", sha[:10])
            return True  # commits made during the push go in the next one, spaced like this one
        return self.repo.unpushed() == 0

    def _schedule_retry(self, reason: str) -> None:
        delay = self.throttle.fail()
        self._wake.set()  # try again once the delay is over
        waiting = self.repo.unpushed()
        log.warning(
            "cannot push (%s); %d commit%s locally, %s",
            reason, waiting, " waits" if waiting == 1 else "s wait", try_again(delay),
        )

    def flush(self, timeout: float) -> bool:
        """Push now (or once the spacing allows) and keep trying until everything is pushed or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if self.repo.unpushed() and self.spacing() > 0:
                if self.spacing() > remaining:
                    return False
                time.sleep(self.spacing())
            if self.push_pending() and self.repo.unpushed() == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.throttle.remaining > remaining:
                return False
            if self.throttle.waiting:
                self.throttle.wait(threading.Event())  # stop() came first: only the timeout ends the flush
