"""ComfyUI's HTTP API, with every answer checked and every call bounded in time.

Library errors are translated here, once, into three exceptions the lane
acts on: :class:`ServerDown` (cannot reach it, or it did not answer in
time: temporary), :class:`Rejected` (``/prompt`` refused the graph, with
ComfyUI's ``node_errors``) and :class:`BadAnswer` (it answered something
that is not ComfyUI's API: an HTML error page, broken JSON, a PNG that is
not a PNG, an answer over its size cap), plus :class:`OutOfTime` (a request
not complete by its whole-request deadline: the image fails as a timeout)
and :class:`Stopping` (the worker is stopping; a kind of ServerDown).  Every
answer is read through :func:`win_side.backends.http.fetch`: capped at
``MAX_ANSWER_BYTES`` (an image at ``MAX_PNG_BYTES``), ended at its deadline,
and given up at once when the worker stops.  Each HTTP-using thread gets its
own keep-alive session.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Optional

import requests

from studio.limits import MAX_ANSWER_BYTES, MAX_PNG_BYTES
from studio.machine import public_url
from studio.png import NotPng, check_png
from win_side.backends import http

CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 30.0
VIEW_TIMEOUT = 120.0
STOPPING_CLEANUP = 0.3  # seconds a withdrawal may take once the worker is stopping


class ServerDown(Exception):
    """The server cannot be reached or did not answer in time."""


class BadAnswer(Exception):
    """The server answered, but not with what ComfyUI's API answers."""


class FileGone(BadAnswer):
    """/view has no such file (a cached result whose file was deleted)."""


class Stopping(ServerDown):
    """The worker is stopping: the request was given up."""


class OutOfTime(Exception):
    """A request did not finish by its whole-request deadline (a server trickling its answer)."""


class Rejected(Exception):
    """POST /prompt refused the graph (HTTP 400): ``error`` and ``node_errors`` as ComfyUI sent them."""

    def __init__(self, error: dict, node_errors: dict) -> None:
        super().__init__(error.get("message") or "prompt rejected")
        self.error = error
        self.node_errors = node_errors


class ComfyClient:
    def __init__(self, url: str, read_timeout: float = READ_TIMEOUT, stop: Optional[threading.Event] = None,
                 view_timeout: float = VIEW_TIMEOUT) -> None:
        self._base = url.rstrip("/")  # what is reached: a user and password in it are sent as basic auth
        self.url = public_url(self._base)  # what every message says
        self.read_timeout = read_timeout  # the whole-request deadline of an API call (seconds)
        self.view_timeout = view_timeout  # ... and of an image download
        self.stop = stop  # set when the worker stops: every request ends at once
        self._local = threading.local()

    # ------------------------------------------------------------- plumbing
    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # ComfyUI is on the LAN: no proxy from the environment
        return session

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()

    def request(self, method: str, path: str, *, timeout: Optional[float] = None, limit: int = MAX_ANSWER_BYTES,
                stoppable: bool = True, **kwargs: Any) -> http.Answer:
        """One request, its answer read whole within ``limit`` bytes and ``timeout`` seconds (whole request)."""
        seconds = self.read_timeout if timeout is None else timeout
        what = f"{method} {path}"
        try:
            return http.fetch(self._session, method, self._base + path, limit=limit, seconds=seconds,
                              stop=(self.stop if stoppable else None,), connect_timeout=min(CONNECT_TIMEOUT, seconds),
                              **kwargs)
        except _FAILED as exc:
            error, words = next((error, words) for failed, error, words in _FAILURES if isinstance(exc, failed))
            raise error(words.format(at=f"ComfyUI at {self.url}", what=what, exc=exc, seconds=seconds,
                                     reason=_reason(exc))) from exc

    def _json(self, response: http.Answer, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise BadAnswer(
                f"ComfyUI at {self.url} answered {what} with {response.status_code} "
                f"{response.headers.get('Content-Type', 'no content type')}, not JSON: {_snippet(response)}"
            ) from None

    def _expect(self, response: http.Answer, what: str, *statuses: int) -> None:
        if response.status_code in (502, 503, 504):
            raise ServerDown(f"ComfyUI at {self.url} is unavailable: {what} answered {response.status_code} {response.reason}")
        if response.status_code not in (statuses or (200,)):
            raise BadAnswer(
                f"ComfyUI at {self.url} answered {what} with {response.status_code} {response.reason}: {_snippet(response)}"
            )

    def get_json(self, path: str, what: str, **kwargs: Any) -> Any:
        response = self.request("GET", path, **kwargs)
        self._expect(response, what)
        return self._json(response, what)

    # ------------------------------------------------------------------ API
    def submit(self, graph: dict, client_id: str, prompt_id: str, extra_pnginfo: dict) -> dict:
        """POST /prompt; returns ``{prompt_id, number, node_errors}`` or raises Rejected."""
        body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id,
                "extra_data": {"extra_pnginfo": extra_pnginfo}}
        response = self.request("POST", "/prompt", data=json.dumps(body), headers={"Content-Type": "application/json"})
        self._expect(response, "POST /prompt", 200, 400)
        answer = self._json(response, "POST /prompt")
        if not isinstance(answer, dict):
            raise BadAnswer(f"ComfyUI at {self.url} answered POST /prompt with {_short(answer)}")
        if response.status_code == 400:
            error = answer.get("error")
            error = error if isinstance(error, dict) else {"message": str(error)}
            node_errors = answer.get("node_errors")
            raise Rejected(error, node_errors if isinstance(node_errors, dict) else {})
        if not isinstance(answer.get("prompt_id"), str):
            raise BadAnswer(f"ComfyUI at {self.url} accepted the prompt but sent no prompt_id: {_short(answer)}")
        if not isinstance(answer.get("node_errors", {}), dict):
            answer["node_errors"] = {}
        return answer

    def history(self, prompt_id: str) -> Optional[dict]:
        """The history entry of ``prompt_id``, or None while it is queued, running or unknown."""
        answer = self.get_json(f"/history/{prompt_id}", "GET /history")
        if not isinstance(answer, dict):
            raise BadAnswer(f"ComfyUI at {self.url} answered GET /history with {_short(answer)}")
        entry = answer.get(prompt_id)
        if entry is None:
            return None
        if not isinstance(entry, dict):
            raise BadAnswer(f"ComfyUI at {self.url}: history of {prompt_id} is {_short(entry)}")
        return entry

    def queue_items(self) -> dict[str, list]:
        """GET /queue as ComfyUI answers it: ``queue_running`` and ``queue_pending`` lists of
        ``[number, prompt_id, prompt, extra_data, outputs]``."""
        answer = self.get_json("/queue", "GET /queue")
        if not (isinstance(answer, dict) and isinstance(answer.get("queue_running"), list)
                and isinstance(answer.get("queue_pending"), list)
                and all(isinstance(item, list) and len(item) >= 4
                        for item in answer["queue_running"] + answer["queue_pending"])):
            raise BadAnswer(f"ComfyUI at {self.url} answered GET /queue with {_short(answer)}")
        return answer

    def recent_history(self, max_items: int) -> dict[str, Any]:
        """The last ``max_items`` history entries by prompt id (GET /history?max_items=N)."""
        answer = self.get_json(f"/history?max_items={max_items}", "GET /history")
        if not isinstance(answer, dict):
            raise BadAnswer(f"ComfyUI at {self.url} answered GET /history with {_short(answer)}")
        return answer

    def queue(self) -> tuple[set[str], set[str]]:
        """The prompt ids running and pending."""
        answer = self.get_json("/queue", "GET /queue")
        try:
            running = {str(item[1]) for item in answer["queue_running"]}
            pending = {str(item[1]) for item in answer["queue_pending"]}
        except (KeyError, TypeError, IndexError):
            raise BadAnswer(f"ComfyUI at {self.url} answered GET /queue with {_short(answer)}") from None
        return running, pending

    def view(self, image: dict) -> bytes:
        """The PNG bytes of an output image, exactly as ComfyUI wrote them."""
        params = {"filename": image.get("filename", ""), "subfolder": image.get("subfolder", ""),
                  "type": image.get("type", "output")}
        response = self.request("GET", "/view", params=params, timeout=self.view_timeout, limit=MAX_PNG_BYTES)
        if response.status_code == 404:
            raise FileGone(f"ComfyUI at {self.url} has no file {params['subfolder']}/{params['filename']}")
        self._expect(response, "GET /view")
        data = response.content
        try:
            check_png(data)
        except NotPng as exc:
            raise BadAnswer(
                f"ComfyUI at {self.url} sent {params['filename']} as {len(data)} bytes that are not a PNG "
                f"({response.headers.get('Content-Type', 'no content type')}, {exc}): {data[:40]!r}"
            ) from None
        return data

    def object_info(self, class_type: str) -> Optional[dict]:
        """The definition of one node type, or None when the server has no such node."""
        answer = self.get_json(f"/object_info/{class_type}", f"GET /object_info/{class_type}")
        if not isinstance(answer, dict):
            raise BadAnswer(f"ComfyUI at {self.url} answered GET /object_info/{class_type} with {_short(answer)}")
        info = answer.get(class_type)
        return info if isinstance(info, dict) else None

    def delete(self, prompt_ids: list[str], timeout: float = 5.0) -> None:
        response = self._cleanup("POST", "/queue", {"delete": prompt_ids}, timeout)
        self._expect(response, "POST /queue")

    def interrupt(self, prompt_id: str, timeout: float = 5.0) -> None:
        response = self._cleanup("POST", "/interrupt", {"prompt_id": prompt_id}, timeout)
        self._expect(response, "POST /interrupt")

    def _cleanup(self, method: str, path: str, body: dict, timeout: float) -> http.Answer:
        """A withdrawal: still sent while the worker stops, then within STOPPING_CLEANUP seconds."""
        if self.stop is not None and self.stop.is_set():
            timeout = min(timeout, STOPPING_CLEANUP)
        try:
            return self.request(method, path, json=body, timeout=timeout, stoppable=False)
        except OutOfTime as exc:
            raise ServerDown(str(exc)) from None


# What a failed request becomes, and how it reads: the first row whose type the failure is.
_FAILURES: tuple[tuple[type[Exception], type[Exception], str], ...] = (
    (http.Stopped, Stopping, "{at}: {what} given up, the worker is stopping"),
    (http.OutOfTime, OutOfTime, "{at} did not finish answering {what}: {exc}"),
    (http.TooLarge, BadAnswer, "{at} answered {what} with {exc}; refused"),
    (http.Unusable, BadAnswer, "{at} answered {what}: {exc}"),
    (requests.Timeout, ServerDown, "{at} did not answer {what} within {seconds:g} s"),
    (requests.ConnectionError, ServerDown, "cannot reach {at} ({reason})"),
    (requests.RequestException, BadAnswer, "{at}: {what} failed: {exc}"),
)
_FAILED = tuple(failed for failed, _, _ in _FAILURES)

_REASONS = (
    ("connection refused", "connection refused"), ("actively refused", "connection refused"),
    ("name or service not known", "unknown host"), ("getaddrinfo failed", "unknown host"),
    ("no route to host", "no route to host"), ("connection reset", "connection reset"),
    ("remote end closed", "connection closed"), ("connection aborted", "connection closed"),
)


def _reason(exc: Exception) -> str:
    text = str(exc).lower()
    return next((label for marker, label in _REASONS if marker in text), type(exc).__name__)


def _snippet(response: http.Answer) -> str:
    text = response.content[:120].decode("utf-8", "replace")
    return " ".join(text.split()) or "(empty body)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."
