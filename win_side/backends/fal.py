"""The fal backend: fal's queue API over HTTP.

One image is one queue request: POST the inputs to
``{queue}/{endpoint}`` with ``Authorization: Key $FAL_KEY``; the answer
carries ``request_id``, ``status_url``, ``response_url`` and ``cancel_url``.
Those URLs are used as given, never rebuilt: for an endpoint with a path,
such as ``fal-ai/flux/schnell``, they leave the path out.  The status is
polled until ``COMPLETED``, the result read from ``response_url``, and the
image (``images[0].url``) downloaded at once.

The request id goes into a progress file in the worker's state folder
(inside ``.git``, never committed) before any waiting, so a worker killed
mid-render re-attaches to the same request when it restarts instead of
paying for the image twice.

The key comes from ``FAL_KEY`` only, is sent only to the queue host, and is
never written anywhere.  Every answer is read through
:func:`win_side.backends.http.fetch`: JSON capped at ``MAX_ANSWER_BYTES``,
the image at ``MAX_PNG_BYTES``, each request ended at its whole-request
deadline (an image whose request runs past it fails as a timeout), and
given up at once when the worker stops.  429 and 5xx answers are retried with a capped
backoff; each image has a bounded wait (``worker.fal_timeout`` in this machine's machine.yaml).
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import urlsplit

import requests
from PIL import Image, UnidentifiedImageError

from studio.config import FalModel
from studio.errors import FatalError
from studio.fsutil import write_text_atomic
from studio.limits import MAX_ANSWER_BYTES, MAX_PNG_BYTES
from studio.models import BUILTIN_MODELS
from studio.png import DamagedPng, NotPng, check_png
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
from win_side.backends import http
from win_side.throttle import Throttle, doubling, try_again

log = logging.getLogger("renderloop.fal")

DEFAULT_QUEUE_URL = "https://queue.fal.run"
KEY_ENV = "FAL_KEY"
MEGAPIXEL = 1024 * 1024  # fal prices a 1024 x 1024 image as one megapixel
# Endpoints whose models have no negative prompt (distilled guidance).
IGNORES_NEGATIVE = frozenset(m.fal_endpoint for m in BUILTIN_MODELS if m.fal_endpoint and not m.negative_prompt)
REQUEST_SECONDS = 120.0  # the whole-request deadline of one HTTP call (a download included)
COMPLETED_KEPT_SECONDS = 3600.0  # a finished request is re-used this long (a kill before the commit)
STALE_SECONDS = 7 * 24 * 3600.0  # fal keeps results at least 7 days
NO_KEY = (
    "FAL_KEY is not set: create a key in fal's dashboard (API keys) and set it in the worker's "
    "environment, e.g. export FAL_KEY=... (renderloop reads it from the environment only and never "
    "writes it down)"
)


@dataclass
class Retry:
    """How one HTTP call is retried: delays base, 2 x base, 4 x base... up to cap."""

    base: float = 0.25
    cap: float = 30.0
    attempts: int = 8  # for one call outside a wait (submit, result, download)

    def throttle(self) -> Throttle:
        return Throttle(doubling(self.base, self.cap))


@dataclass
class FalRequest:
    """One fal queue request, as the progress file keeps it."""

    request_id: str
    status_url: str
    response_url: str
    cancel_url: Optional[str]
    endpoint: str
    base_url: str
    spec_hash: str
    submitted_at: float
    completed_at: Optional[float] = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "FalRequest":
        data = json.loads(text)
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


class JobFiles:
    """Progress files: ``<state>/fal/<batch>/<slug>.json``, one per image in flight."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, request: RenderRequest) -> Path:
        return self.root / request.batch / f"{request.slug}.json"

    def load(self, request: RenderRequest, endpoint: str, base_url: str) -> Optional[FalRequest]:
        path = self.path(request)
        try:
            job = FalRequest.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            return None
        same = job.spec_hash == request.spec_hash and job.endpoint == endpoint and job.base_url == base_url
        fresh = job.completed_at is None or time.time() - job.completed_at < COMPLETED_KEPT_SECONDS
        if not (same and fresh and job.request_id and job.status_url and job.response_url):
            return None
        return job

    def save(self, request: RenderRequest, job: FalRequest) -> None:
        write_text_atomic(self.path(request), job.to_json())

    def drop(self, request: RenderRequest) -> None:
        self.path(request).unlink(missing_ok=True)

    def prune(self) -> None:
        """Forget requests finished long ago, or too old for fal to still hold."""
        if not self.root.is_dir():
            return
        now = time.time()
        for path in self.root.glob("*/*.json"):
            try:
                job = FalRequest.from_json(path.read_text(encoding="utf-8"))
                old = (job.completed_at and now - job.completed_at > COMPLETED_KEPT_SECONDS) or (
                    now - float(job.submitted_at) > STALE_SECONDS
                )
            except (OSError, ValueError, TypeError):
                old = True
            if old:
                path.unlink(missing_ok=True)


class _Lost(Exception):
    """fal does not know this request (expired, or another account's)."""


class FalClient:
    """HTTP with fal: the key goes to the queue host only; 429 and 5xx are retried."""

    def __init__(self, base_url: str, key: str, retry: Optional[Retry] = None,
                 stop: Optional[threading.Event] = None, seconds: float = REQUEST_SECONDS) -> None:
        self.base_url = base_url
        self._key = key
        self.retry = retry or Retry()
        self.stop = stop  # set when the worker stops: every request ends at once
        self.seconds = seconds
        self._origin = _origin(base_url)
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxies from the environment, no ~/.netrc credentials
            self._local.session = session
        return session

    def headers_for(self, url: str) -> dict[str, str]:
        if _origin(url) != self._origin:
            return {}
        return {"Authorization": f"Key {self._key}"}

    def call(
        self, method: str, url: str, what: str, cancel: threading.Event, *,
        payload: Any = None, deadline: Optional[float] = None, auth: bool = True, limit: int = MAX_ANSWER_BYTES,
    ) -> http.Answer:
        """One HTTP call, retried on 429, 5xx and network errors until ``deadline`` or the attempt limit.

        Its answer is at most ``limit`` bytes and complete within the client's
        whole-request deadline, else the image fails (``backend-error``,
        ``timeout``); the worker stopping ends it at once (:class:`Cancelled`).
        """
        throttle = self.retry.throttle()
        while True:
            if cancel.is_set():
                raise Cancelled(what)
            retry_after: Optional[float] = None
            try:
                headers = self.headers_for(url) if auth else {}
                response = http.fetch(self._session(), method, url, limit=limit, seconds=self.seconds,
                                      stop=(cancel, self.stop), connect_timeout=10.0, json=payload, headers=headers)
            except http.Stopped:
                raise Cancelled(what) from None
            except http.OutOfTime as exc:
                raise RenderFailed("timeout", f"{what}: {_origin(url)} answered too slowly: {exc}") from None
            except http.TooLarge as exc:
                raise RenderFailed("backend-error", f"{what}: {_origin(url)} answered with {exc}; refused") from None
            except http.Unusable as exc:
                raise RenderFailed("backend-error", f"{what}: {_origin(url)}: {exc}") from None
            except requests.RequestException as exc:
                problem = f"cannot reach {_origin(url)} ({type(exc).__name__})"
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                problem = f"fal answered {response.status_code} {response.reason}"
                retry_after = _retry_after(response)
            wait = throttle.fail(at_least=retry_after)
            out_of_time = deadline is not None and time.monotonic() + wait > deadline
            if out_of_time or (deadline is None and throttle.failures >= self.retry.attempts):
                raise BackendUnavailable(f"{what}: {problem} (tried {throttle.failures} times)", retry_after=wait)
            log.warning("%s: %s, %s", what, problem, try_again(wait))
            if throttle.wait(cancel):
                raise Cancelled(what)


class FalLane:
    """fal's queue: many images in flight at once."""

    def __init__(
        self, client: FalClient, jobs: JobFiles, window: int, poll: float = 0.5, poll_cap: float = 3.0,
        timeout: float = 600.0,
    ) -> None:
        self.name = "fal"
        self.window = window
        self.timeout = timeout  # the longest wait for one image (machine.yaml worker.fal_timeout)
        self.client = client
        self.jobs = jobs
        self.poll = poll
        self.poll_cap = poll_cap

    def render(
        self, request: RenderRequest, cancel: threading.Event, progress: Optional[ReportProgress] = None
    ) -> RenderResult:
        fal = _fal_settings(request)
        t0 = time.monotonic()
        job = self.jobs.load(request, fal.endpoint, self.client.base_url)
        if job is not None:
            log.info("%s/%s: re-attaching to fal request %s", request.batch, request.slug, job.request_id)
            try:
                result = self._wait(request, job, fal, cancel, progress)
            except _Lost:
                log.warning("%s/%s: fal no longer knows request %s; submitting again",
                            request.batch, request.slug, job.request_id)
                self.jobs.drop(request)
                job = None
        if job is None:
            job = self._submit(request, fal, cancel)
            try:
                result = self._wait(request, job, fal, cancel, progress)
            except _Lost:
                self.jobs.drop(request)
                raise RenderFailed("backend-error", f"fal lost request {job.request_id} (404 on its status)") from None
        png, width, height = self._image(request, job, result, cancel)
        job.completed_at = time.time()
        self.jobs.save(request, job)
        if progress:
            progress(1.0)
        return RenderResult.ended_now(png, round(time.monotonic() - t0, 3),
                                      {"endpoint": fal.endpoint, "request_id": job.request_id},
                                      cost_usd=cost_usd(fal, width, height))

    # -- submit ------------------------------------------------------------------------------

    def _submit(self, request: RenderRequest, fal: FalModel, cancel: threading.Event) -> FalRequest:
        what = f"{request.batch}/{request.slug}: submitting to fal"
        url = f"{self.client.base_url}/{fal.endpoint}"
        response = self.client.call("POST", url, what, cancel, payload=payload(request, fal))
        _raise_for_client_error(response, what, fal.endpoint)
        data = _json(response, what)
        job = FalRequest(
            request_id=_text(data, "request_id", what),
            status_url=_text(data, "status_url", what),
            response_url=_text(data, "response_url", what),
            cancel_url=data.get("cancel_url") if isinstance(data.get("cancel_url"), str) else None,
            endpoint=fal.endpoint,
            base_url=self.client.base_url,
            spec_hash=request.spec_hash,
            submitted_at=time.time(),
        )
        for url in (job.status_url, job.response_url):
            if _origin(url) != _origin(self.client.base_url):
                raise RenderFailed("backend-error", f"fal answered with a URL on another host: {url}")
        self.jobs.save(request, job)  # before any waiting: a restarted worker re-attaches
        log.info("%s/%s: submitted to %s as request %s", request.batch, request.slug, fal.endpoint, job.request_id)
        return job

    # -- wait --------------------------------------------------------------------------------

    def _wait(
        self, request: RenderRequest, job: FalRequest, fal: FalModel, cancel: threading.Event,
        progress: Optional[ReportProgress],
    ) -> dict[str, Any]:
        deadline = time.monotonic() + max(job.submitted_at + self.timeout - time.time(), 0.0)
        what = f"{request.batch}/{request.slug}: fal request {job.request_id}"
        delay = self.poll
        while True:
            response = self.client.call("GET", job.status_url, what, cancel, deadline=deadline + 30)
            if response.status_code == 404:
                raise _Lost(job.request_id)
            _raise_for_client_error(response, what, fal.endpoint)
            status = _json(response, what)
            state = status.get("status")
            if state == "COMPLETED":
                if status.get("error"):
                    self.jobs.drop(request)
                    raise RenderFailed("backend-error", f"fal: {status.get('error')}", detail=_short(status))
                return self._result(request, job, fal, cancel)
            if state not in ("IN_QUEUE", "IN_PROGRESS"):
                self.jobs.drop(request)
                message = f"fal request {job.request_id} ended as {state!r}"
                raise RenderFailed("backend-error", message, detail=_short(status))
            if progress and state == "IN_PROGRESS":
                progress(0.5)
            if time.monotonic() >= deadline:
                self._give_up(request, job, fal, cancel)
            if cancel.wait(delay):  # the worker is stopping: keep the request, a restart re-attaches
                raise Cancelled(what)
            delay = min(self.poll_cap, delay * 1.5)

    def _give_up(self, request: RenderRequest, job: FalRequest, fal: FalModel, cancel: threading.Event) -> None:
        if job.cancel_url and _origin(job.cancel_url) == _origin(self.client.base_url):
            try:
                self.client.call("PUT", job.cancel_url, "cancelling the fal request", cancel)
            except (BackendUnavailable, Cancelled):
                pass
        self.jobs.drop(request)
        raise RenderFailed("timeout", f"fal did not finish request {job.request_id} within {self.timeout:g} s")

    def _result(self, request: RenderRequest, job: FalRequest, fal: FalModel, cancel: threading.Event) -> dict[str, Any]:
        what = f"{request.batch}/{request.slug}: fetching the result of fal request {job.request_id}"
        response = self.client.call("GET", job.response_url, what, cancel)
        if response.status_code >= 400:
            self.jobs.drop(request)
        _raise_for_client_error(response, what, fal.endpoint)
        return _json(response, what)

    # -- download ----------------------------------------------------------------------------

    def _image(
        self, request: RenderRequest, job: FalRequest, result: dict[str, Any], cancel: threading.Event
    ) -> tuple[bytes, int, int]:
        images = result.get("images")
        first = images[0] if isinstance(images, list) and images and isinstance(images[0], dict) else None
        url = first.get("url") if first else None
        if not isinstance(url, str) or not url:
            self.jobs.drop(request)
            raise RenderFailed("backend-error", "fal's result has no image (images[0].url)", detail=_short(result))
        if any(result.get("has_nsfw_concepts") or []):
            log.warning("%s/%s: fal flagged the image as NSFW (it may be blank)", request.batch, request.slug)
        data = self._download(url, f"{request.batch}/{request.slug}: downloading the image", cancel)
        png, width, height = as_png(data)
        return png, width, height

    def _download(self, url: str, what: str, cancel: threading.Event) -> bytes:
        if url.startswith("data:"):
            return _data_uri(url)
        if urlsplit(url).scheme not in ("http", "https"):
            raise RenderFailed("backend-error", f"fal's image URL is not http(s): {url[:80]}")
        response = self.client.call("GET", url, what, cancel, auth=False, limit=MAX_PNG_BYTES)  # files need no key
        if response.status_code >= 400:
            raise RenderFailed("backend-error", f"{what}: {response.status_code} {response.reason} from {_origin(url)}")
        return response.content


class FalBackend:
    name = "fal"

    def __init__(self, options: BackendOptions) -> None:
        key = os.environ.get(KEY_ENV, "").strip()
        if not key:
            raise FatalError(NO_KEY)
        base_url = (options.fal_url or options.machine.worker.fal_url or DEFAULT_QUEUE_URL).rstrip("/")
        if not http.is_http_url(base_url):
            raise FatalError(f"fal URL {base_url!r} is not an http(s) URL (like {DEFAULT_QUEUE_URL})")
        jobs = JobFiles(options.state_dir / "fal")
        jobs.prune()
        self._lanes = [FalLane(FalClient(base_url, key, stop=options.stop), jobs, window=max(options.window, 1),
                               timeout=options.machine.worker.fal_timeout)]

    @property
    def lanes(self) -> Sequence[FalLane]:
        return self._lanes

    def preflight(self, requests_: Sequence[RenderRequest]) -> dict[tuple[str, str], RenderFailed]:
        return {
            r.key: not_configured(r.spec.model, "fal", "endpoint")
            for r in requests_
            if r.settings.fal is None
        }

    def close(self) -> None:
        pass


# -- pure helpers ----------------------------------------------------------------------------


def payload(request: RenderRequest, fal: FalModel) -> dict[str, Any]:
    """The inputs of one fal request, following fal's text-to-image schema."""
    spec = request.spec
    body: dict[str, Any] = dict(fal.arguments)
    body.update(
        prompt=spec.prompt,
        seed=spec.seed,
        image_size={"width": spec.width, "height": spec.height},
        num_images=1,
        output_format="png",
    )
    if spec.steps is not None:
        body["num_inference_steps"] = spec.steps
    if spec.negative.strip() and fal.endpoint not in IGNORES_NEGATIVE:
        body["negative_prompt"] = spec.negative
    return body


def cost_usd(fal: FalModel, width: int, height: int) -> float:
    """What fal charges for one image of this size at the configured price per megapixel."""
    megapixels = width * height / MEGAPIXEL
    if fal.round_up_mp:
        megapixels = math.ceil(round(megapixels, 6))
    return round(megapixels * fal.usd_per_mp, 6)


def as_png(data: bytes) -> tuple[bytes, int, int]:
    """The image as PNG bytes with its size; another format is converted, garbage refused."""
    try:
        width, height = check_png(data)
        return data, width, height
    except DamagedPng as exc:
        raise RenderFailed("backend-error", f"fal sent something that is not an image: {exc}") from None
    except NotPng:
        pass  # another format: converted below
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            out = io.BytesIO()
            image.save(out, format="PNG")
            return out.getvalue(), width, height
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise RenderFailed("backend-error", f"fal sent something that is not an image: {exc}") from None


def _fal_settings(request: RenderRequest) -> FalModel:
    if request.settings.fal is None:
        raise not_configured(request.spec.model, "fal", "endpoint")
    return request.settings.fal


def _raise_for_client_error(response: http.Answer, what: str, endpoint: str) -> None:
    code = response.status_code
    if code < 400:
        return
    detail = _error_detail(response)
    if code in (401, 403):
        raise BackendUnavailable(f"{what}: fal refused the key in FAL_KEY ({code}): {detail}", retry_after=60.0)
    if code == 404:
        raise RenderFailed("missing-model", f"{what}: fal has no endpoint {endpoint!r} (404): {detail}")
    kind: ErrorKind = "invalid-spec" if code == 422 else "backend-error"
    raise RenderFailed(kind, f"{what}: fal answered {code}: {detail}", detail=detail)


def _error_detail(response: http.Answer) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        where = ".".join(str(p) for p in first.get("loc", []) if p != "body")
        return f"{where}: {first.get('msg', first)}" if where else str(first.get("msg", first))
    return str(detail)[:300]


def _json(response: http.Answer, what: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        message = f"{what}: fal answered something that is not JSON: {response.text[:120]!r}"
        raise RenderFailed("backend-error", message) from None
    if not isinstance(data, dict):
        raise RenderFailed("backend-error", f"{what}: fal answered JSON that is not an object: {str(data)[:120]}")
    return data


def _text(data: dict[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise RenderFailed("backend-error", f"{what}: fal's answer has no {key}", detail=_short(data))
    return value


def _data_uri(url: str) -> bytes:
    header, _, body = url.partition(",")
    if ";base64" not in header:
        raise RenderFailed("backend-error", "fal sent a data URI that is not base64")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RenderFailed("backend-error", f"fal sent a broken data URI: {exc}") from None


def _retry_after(response: http.Answer) -> Optional[float]:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _short(data: Any) -> str:
    return json.dumps(data, default=str)[:1000]
