"""The one way backends read HTTP answers: a size cap, a whole-request deadline, a stop heard at once.

A server may be hostile or broken: an answer of 3 GB, one byte every few
seconds, a connection that never closes.  :func:`fetch` therefore

* streams the body in chunks and gives up past ``limit`` bytes (at once
  when ``Content-Length`` says so), so memory stays bounded;
* ends the whole request at ``deadline`` (a monotonic time), however the
  server trickles its bytes: socket timeouts alone bound each read, not the
  request;
* runs the request in a helper thread and waits for it in slices of
  :data:`SLICE` seconds, so a stop event (SIGINT/SIGTERM) ends the wait at
  once, even while the connection is still being made.  A request given up
  this way is abandoned: its thread stops at the next chunk or socket
  timeout, and its connection is closed.

Compression is refused (``Accept-Encoding: identity``), so the cap is on the
bytes that arrive, not on what they would inflate to.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional
import requests
import urllib3
from requests.structures import CaseInsensitiveDict

from studio.machine import is_http_url  # noqa: F401 - the one URL check, asked here by the backends

CHUNK = 64 * 1024
SLICE = 0.05  # seconds between looks at the stop events while a request runs


class TooLarge(Exception):
    """The answer holds more than the cap."""

    def __init__(self, limit: int, announced: Optional[int] = None) -> None:
        self.limit = limit
        self.announced = announced
        said = f" ({announced} bytes announced)" if announced is not None else ""
        super().__init__(f"more than renderloop's limit of {size_text(limit)}{said}")


class OutOfTime(Exception):
    """The whole request did not finish by its deadline."""

    def __init__(self, seconds: float, received: int) -> None:
        self.seconds = seconds
        self.received = received
        super().__init__(f"not complete within {seconds:g} s ({received} bytes received)")


class Stopped(Exception):
    """A stop event was set while the request ran."""


class Unusable(Exception):
    """The answer is encoded in a way renderloop did not ask for."""


@dataclass
class Answer:
    """A complete HTTP answer, its body read within the cap."""

    status_code: int
    reason: str
    headers: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)
    content: bytes = b""
    url: str = ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not (nested too deep for Python included)."""
        try:
            return json.loads(self.content)
        except RecursionError:
            raise ValueError("the answer is JSON nested too deep to read") from None


def fetch(
    session: requests.Session, method: str, url: str, *, limit: int, seconds: float,
    stop: Iterable[Optional[threading.Event]] = (), connect_timeout: float = 5.0, **kwargs: Any,
) -> Answer:
    """``method url`` through ``session``, its answer at most ``limit`` bytes, all of it within ``seconds``.

    Raises :class:`TooLarge`, :class:`OutOfTime`, :class:`Stopped` (one of
    the ``stop`` events was set), :class:`Unusable`, or what requests raises
    (``requests.ConnectionError``, ``requests.Timeout``...).
    """
    events = [event for event in stop if event is not None]
    deadline = time.monotonic() + seconds
    transfer = _Transfer(session, method, url, limit, deadline, seconds, connect_timeout, kwargs)
    if any(event.is_set() for event in events):
        raise Stopped()
    thread = threading.Thread(target=transfer.run, name="http", daemon=True)
    thread.start()
    while not transfer.done.wait(SLICE):
        if any(event.is_set() for event in events):
            transfer.abandon()
            raise Stopped()
        if time.monotonic() >= deadline:
            transfer.abandon()
            if transfer.answered:  # it answered, then trickled
                raise OutOfTime(seconds, transfer.received)
            raise requests.Timeout(f"no answer within {seconds:g} s")  # as a silent server always was
    if transfer.error is not None:
        raise transfer.error
    assert transfer.answer is not None
    return transfer.answer


class _Transfer:
    """One request in its own thread: the answer, or the exception that ended it."""

    def __init__(self, session: requests.Session, method: str, url: str, limit: int, deadline: float,
                 seconds: float, connect_timeout: float, kwargs: dict[str, Any]) -> None:
        self.session = session
        self.method = method
        self.url = url
        self.limit = limit
        self.deadline = deadline
        self.seconds = seconds
        self.connect_timeout = connect_timeout
        self.kwargs = kwargs
        self.done = threading.Event()
        self.answer: Optional[Answer] = None
        self.error: Optional[BaseException] = None
        self.received = 0
        self._abandoned = threading.Event()
        self._response: Optional[requests.Response] = None

    @property
    def answered(self) -> bool:
        """The status line and headers arrived."""
        return self._response is not None

    def abandon(self) -> None:
        self._abandoned.set()
        response = self._response
        if response is not None:
            _shut(response)

    def run(self) -> None:
        try:
            self.answer = self._run()
        except BaseException as exc:  # handed to the waiting thread
            self.error = exc
        finally:
            self.done.set()

    def _left(self) -> float:
        return max(0.01, self.deadline - time.monotonic())

    def _run(self) -> Answer:
        headers = dict(self.kwargs.pop("headers", None) or {})
        headers["Accept-Encoding"] = "identity"
        timeout = (min(self.connect_timeout, self._left()), self._left())
        response = self.session.request(self.method, self.url, headers=headers, stream=True, timeout=timeout,
                                        **self.kwargs)
        self._response = response
        try:
            if self._abandoned.is_set():
                raise Stopped()
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise Unusable(f"the answer is compressed ({encoding}), which renderloop did not ask for")
            announced = _length(response)
            if announced is not None and announced > self.limit:
                raise TooLarge(self.limit, announced)
            body = bytearray()
            try:
                for chunk in response.raw.stream(CHUNK, decode_content=False):
                    body += chunk
                    self.received = len(body)
                    if len(body) > self.limit:
                        raise TooLarge(self.limit)
                    if self._abandoned.is_set():
                        raise Stopped()
                    if time.monotonic() >= self.deadline:
                        raise OutOfTime(self.seconds, len(body))
            except urllib3.exceptions.ReadTimeoutError:  # the socket's timeout is what is left of the deadline
                raise OutOfTime(self.seconds, len(body)) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:  # cut off mid-answer
                raise requests.ConnectionError(f"the answer was cut off after {len(body)} bytes: {exc}") from None
            return Answer(response.status_code, response.reason or "", response.headers, bytes(body), response.url)
        finally:
            response.close()


def _length(response: requests.Response) -> Optional[int]:
    try:
        value = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _shut(response: requests.Response) -> None:
    """Close the connection under ``response`` so a read blocked on it returns now (best effort)."""
    try:
        connection = getattr(response.raw, "connection", None) or getattr(response.raw, "_connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            import socket

            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass


def size_text(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    if limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} bytes"
