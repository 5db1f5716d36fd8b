"""Telling a person when a batch ends: a JSON POST to a webhook of this machine's choosing.

The target comes from this machine (``--notify URL``, later ``worker.notify``
in its settings), never from the repository.  Posting happens on a thread of
its own behind a bounded queue: a slow or dead webhook never holds up a
render.  A failed post is retried on the one capped backoff
(:class:`~win_side.throttle.Throttle`), then given up with a line in the log.

Shapes (``--notify-format``):

* ``json`` (default): ``{"event": "batch-done"|"batch-failed", "batch", "done",
  "failed", "total", "worker", "message", "text", "content"}``; ``text`` is what
  a Slack incoming webhook shows and ``content`` what a Discord webhook shows,
  so the one body suits both and any receiver of your own.
* ``ntfy``: the message as plain text with a ``Title`` header, as ntfy.sh
  topics show best.
* ``slack``: ``{"text": message}`` only; ``discord``: ``{"content": message}`` only.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
import typing
from typing import Any, Callable, Optional

from studio.machine import NotifyFormat as Format
from win_side.throttle import Throttle, doubling, try_again

log = logging.getLogger("renderloop.worker")

FORMATS: tuple[Format, ...] = typing.get_args(Format)
DELAYS = doubling(2.0, 300.0)  # between tries of one notification
ATTEMPTS = 8  # then it is given up (about 10 minutes of trying)
QUEUE = 100  # notifications waiting at most; the oldest is dropped beyond
TIMEOUT = 10.0  # one POST, all of it: connect, send, the whole answer
MAX_ANSWER = 64 * 1024  # a webhook's answer is read (and dropped) up to this much


@dataclass(frozen=True)
class BatchEnded:
    batch: str
    done: int
    failed: int
    total: int
    worker: str

    @property
    def event(self) -> str:
        return "batch-failed" if self.failed else "batch-done"

    @property
    def message(self) -> str:
        outcome = f"{self.failed} of {self.total} failed" if self.failed else f"all {self.total} rendered"
        return f"{self.batch}: {outcome} ({self.done} done) on {self.worker}"

    def body(self, fmt: Format) -> tuple[dict[str, str], bytes]:
        """(headers, body) of the POST in ``fmt``."""
        import json

        if fmt == "ntfy":
            title = f"renderloop: {self.batch} {'failed' if self.failed else 'done'}"
            return {"Content-Type": "text/plain; charset=utf-8", "Title": title,
                    "Tags": "warning" if self.failed else "white_check_mark"}, self.message.encode("utf-8")
        payload: dict[str, Any]
        if fmt == "slack":
            payload = {"text": self.message}
        elif fmt == "discord":
            payload = {"content": self.message}
        else:
            payload = {"event": self.event, "batch": self.batch, "done": self.done, "failed": self.failed,
                       "total": self.total, "worker": self.worker, "message": self.message,
                       "text": self.message, "content": self.message}
        return {"Content-Type": "application/json"}, json.dumps(payload).encode("utf-8")


Post = Callable[[str, dict[str, str], bytes], None]  # raises on failure


def http_post(url: str, headers: dict[str, str], body: bytes) -> None:
    """POST ``body``; the whole request within :data:`TIMEOUT` seconds and its answer within
    :data:`MAX_ANSWER` bytes, however the target trickles (:func:`win_side.backends.http.fetch`)."""
    import requests

    from win_side.backends.http import fetch

    with requests.Session() as session:
        answer = fetch(session, "POST", url, limit=MAX_ANSWER, seconds=TIMEOUT, connect_timeout=min(5.0, TIMEOUT),
                       data=body, headers=headers, allow_redirects=False)
    if answer.status_code >= 300:
        raise OSError(f"HTTP {answer.status_code} {answer.reason}")


class Notifier:
    """Posts :class:`BatchEnded` notifications to ``url`` from a background thread."""

    def __init__(self, url: str, fmt: Format = "json", *, post: Post = http_post,
                 delays: tuple[float, ...] = DELAYS, attempts: int = ATTEMPTS, size: int = QUEUE) -> None:
        self.url = url
        self.fmt = fmt
        self._post = post
        self._delays = delays
        self._attempts = attempts
        self._queue: queue.Queue[BatchEnded] = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self.sent = 0
        self.given_up = 0

    def start(self) -> "Notifier":
        self._thread.start()
        return self

    def tell(self, ended: BatchEnded) -> None:
        """Queue a notification; never blocks (the oldest waiting one is dropped when full)."""
        while True:
            try:
                self._queue.put_nowait(ended)
                break
            except queue.Full:
                try:
                    dropped = self._queue.get_nowait()
                    log.warning("notify: too many waiting; dropped the one for %s", dropped.batch)
                except queue.Empty:
                    pass

    def stop(self, timeout: float = 5.0) -> None:
        """Try what waits for up to ``timeout`` seconds more, then leave."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                ended = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            self._deliver(ended)

    def _deliver(self, ended: BatchEnded) -> None:
        throttle = Throttle(self._delays)
        headers, body = ended.body(self.fmt)
        for attempt in range(1, self._attempts + 1):
            try:
                self._post(self.url, headers, body)
            except Exception as exc:  # noqa: BLE001 - any failure of the target is only logged
                if attempt == self._attempts or self._stop.is_set():
                    self.given_up += 1
                    log.warning("notify: could not tell %s that %s ended (%s); given up after %d tries",
                                _host(self.url), ended.batch, exc, attempt)
                    return
                delay = throttle.fail()
                log.warning("notify: could not tell %s that %s ended (%s); %s",
                            _host(self.url), ended.batch, exc, try_again(delay))
                self._stop.wait(throttle.remaining)  # stopping: one last try at once
                continue
            self.sent += 1
            log.info("notify: told %s that %s ended (%s)", _host(self.url), ended.batch, ended.event)
            return


def _host(url: str) -> str:
    """The URL without its path: a webhook's path is its secret (Discord, Slack), never logged."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def batch_end_callback(notifier: Optional[Notifier], worker: str) -> Optional[Callable[[str, int, int, int], None]]:
    """What the worker's progress calls when a batch has every image finished."""
    if notifier is None:
        return None
    return lambda batch, done, failed, total: notifier.tell(BatchEnded(batch, done, failed, total, worker))
