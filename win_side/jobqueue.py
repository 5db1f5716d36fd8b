"""The render queue: lanes pull images from one shared queue, keeping each GPU busy.

Each lane (a ComfyUI server, fal, mflux, the placeholder) gets ``window``
threads; each thread takes the next image, renders it (the backend queues it
on the server, so with a window of 2 the next image is already waiting when
one finishes) and hands the outcome to the committer.  Which image a free
lane takes is model affinity (``win_side.affinity``): everything waiting for
the model its server has loaded first.  A lane that is unavailable backs off
on a capped schedule while the others go on.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Optional, Sequence, Union

from studio.clock import utcnow
from win_side import faults
from win_side.affinity import Affinity
from win_side.backends.base import (
    BackendUnavailable,
    Cancelled,
    Lane,
    RenderFailed,
    RenderRequest,
    RenderResult,
)
from win_side.throttle import WORKER_DELAYS, Throttle, try_again

log = logging.getLogger("renderloop.worker")


@dataclass
class Item:
    request: RenderRequest
    queued_at: Optional[datetime] = None
    lane: str = ""
    switched: bool = False  # taking it made the lane's server load another model


@dataclass
class RenderOutcome:
    item: Item
    result: Union[RenderResult, RenderFailed]


class JobQueue:
    """Waiting images in plan order (taken back at the front after a lane failed to start one);
    each lane takes the one model affinity picks for it."""

    def __init__(self) -> None:
        self._items: collections.deque[Item] = collections.deque()
        self._cond = threading.Condition()
        self.affinity = Affinity()

    def put(self, item: Item, front: bool = False) -> None:
        with self._cond:
            (self._items.appendleft if front else self._items.append)(item)
            self._cond.notify()

    def get(self, timeout: float, accept: Optional[Callable[[RenderRequest], bool]] = None, lane: str = "",
            holds: Optional[Callable[[RenderRequest], bool]] = None) -> Item | None:
        """The item ``lane`` should render next (one ``accept`` takes, if given), waiting up to ``timeout``."""
        with self._cond:
            item = self._take(lane, accept, holds)
            if item is None:
                self._cond.wait(timeout)
                item = self._take(lane, accept, holds)
            return item

    def _take(self, lane: str, accept: Optional[Callable[[RenderRequest], bool]],
              holds: Optional[Callable[[RenderRequest], bool]]) -> Item | None:
        index = self.affinity.choose(lane, [item.request for item in self._items], accept, holds)
        if index is None:
            return None
        item = self._items[index]
        del self._items[index]
        item.switched = self.affinity.took(lane, item.request)
        return item

    def measured(self, lane: str, seconds: float, switched: bool) -> None:
        with self._cond:
            self.affinity.measured(lane, seconds, switched)

    def release(self, lane: str) -> None:
        """``lane`` takes nothing for a while: the others may take its model's images."""
        with self._cond:
            self.affinity.release(lane)
            self._cond.notify_all()

    def remove(self, predicate: Callable[[Item], bool]) -> list[Item]:
        with self._cond:
            removed = [i for i in self._items if predicate(i)]
            for item in removed:
                self._items.remove(item)
            return removed

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class LaneRunner:
    """The threads of one lane, and its backoff state."""

    def __init__(self, lane: Lane, queue: JobQueue, deliver: Callable[[RenderOutcome], None],
                 cancel: threading.Event, stop: threading.Event) -> None:
        self.lane = lane
        self.queue = queue
        self.deliver = deliver
        self.cancel = cancel
        self.stop = stop
        self.throttle = Throttle(WORKER_DELAYS)
        self._state = threading.Lock()
        self.down_since: Optional[float] = None  # monotonic time of the first failure to start an image in a row
        self.last_problem = ""
        self.threads = [
            threading.Thread(target=self._run, name=f"lane-{lane.name}-{i}", daemon=True)
            for i in range(max(1, lane.window))
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            with self._state:
                waiting = self.throttle.waiting
            if waiting:
                self.throttle.wait(self.stop, limit=1.0)
                continue
            item = self.queue.get(timeout=0.5, accept=getattr(self.lane, "accepts", None), lane=self.lane.name,
                                  holds=getattr(self.lane, "holds", None))
            if item is None:
                continue
            if self.stop.is_set():
                self.queue.put(item, front=True)
                return
            self._render(item)

    def _render(self, item: Item) -> None:
        item.queued_at = utcnow()
        item.lane = self.lane.name
        faults.point("render")
        try:
            result: Union[RenderResult, RenderFailed] = self.lane.render(item.request, self.cancel)
        except RenderFailed as failure:
            result = failure
        except Cancelled:
            self.queue.put(item, front=True)
            return
        except BackendUnavailable as exc:
            self.queue.put(item, front=True)
            self.queue.release(self.lane.name)
            self._back_off(exc)
            return
        except Exception as exc:  # a backend bug must not kill the lane
            log.exception("%s: unexpected error rendering %s/%s", self.lane.name, *item.request.key)
            result = RenderFailed("backend-error", f"{type(exc).__name__}: {exc}")
        with self._state:
            self.throttle.succeed()
            self.down_since = None
        if isinstance(result, RenderResult) and not result.cached:
            self.queue.measured(self.lane.name, result.render_seconds, item.switched)
        self.deliver(RenderOutcome(item, result))

    def _back_off(self, exc: BackendUnavailable) -> None:
        with self._state:
            if self.down_since is None:
                self.down_since = time.monotonic()
            self.last_problem = str(exc)
            if self.throttle.waiting and exc.retry_after is None:
                return  # another thread of this lane failed in the same round and set the wait
            before = self.throttle.until
            delay = self.throttle.fail(at_least=exc.retry_after)
            if self.throttle.until > before:
                log.warning("%s is unavailable (%s); %s", self.lane.name, exc, try_again(delay))


class RenderQueue:
    """All lanes of a backend around one shared queue of images."""

    def __init__(self, lanes: Sequence[Lane], deliver: Callable[[RenderOutcome], None]) -> None:
        self.queue = JobQueue()
        self.cancel = threading.Event()  # set on stop: in-flight renders give up
        self.stop_event = threading.Event()
        self.runners = [LaneRunner(lane, self.queue, deliver, self.cancel, self.stop_event) for lane in lanes]

    def start(self) -> None:
        for runner in self.runners:
            runner.start()

    def put(self, request: RenderRequest) -> None:
        self.queue.put(Item(request))

    def down_for(self) -> Optional[float]:
        """Seconds every lane has failed to start an image, in a row; None while one works (or has not failed)."""
        since = [runner.down_since for runner in self.runners]
        if not since or any(s is None for s in since):
            return None
        return time.monotonic() - max(s for s in since if s is not None)

    def down_lanes(self) -> list[tuple[str, str]]:
        """Each lane not answering, with its last problem."""
        return [(getattr(runner.lane, "label", runner.lane.name), runner.last_problem)
                for runner in self.runners if runner.down_since is not None]

    def drop(self, predicate: Callable[[RenderRequest], bool]) -> list[RenderRequest]:
        return [item.request for item in self.queue.remove(lambda i: predicate(i.request))]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking images and cancel the ones in flight; wait for the threads."""
        self.stop_event.set()
        self.cancel.set()
        self.queue.wake_all()
        deadline = time.monotonic() + timeout
        for runner in self.runners:
            for thread in runner.threads:
                thread.join(max(0.0, deadline - time.monotonic()))
