"""The ComfyUI backend: one lane per server, prompts pipelined ``window`` deep.

A render submits its graph with POST /prompt (the lane's client_id, a uuid4
prompt_id), waits for ``executing {node: null}`` on the lane's shared
websocket (or, while the socket is down, polls /queue and /history), reads
/history/{id} and downloads the PNG from /view, keeping ComfyUI's bytes (they
carry the graph and the spec as text chunks).

Decisions, for the people reading the worker's log:

* A server that cannot be reached when an image is submitted raises
  :class:`BackendUnavailable`: the worker puts the image back, another lane
  may take it, and this lane retries on the worker's capped backoff.
* A server that vanishes while our prompt is on it is waited for (up to
  ``DOWN_GRACE`` seconds); when it is back and neither its queue nor its
  history knows the prompt (a restart), the prompt is submitted again.
* ``/prompt`` refusing a graph fails that image: ``missing-model`` when only
  model files are missing, ``invalid-spec`` otherwise, naming node and
  input.  An ``execution_error`` fails it with ComfyUI's message
  (``out-of-memory`` for torch's OutOfMemoryError).  Other images go on.
"""
from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from studio.clock import utcnow
from studio.errors import InvalidFile, NotConfigured
from studio.layout import Studio
from studio.workflow import BindingError, Workflow, load_workflow, workflow_path
from win_side.backends.base import (
    BackendOptions,
    BackendUnavailable,
    Cancelled,
    ReportProgress,
    RenderFailed,
    RenderRequest,
    RenderResult,
)
from win_side.backends.comfyui import errors
from win_side.backends.comfyui.client import BadAnswer, ComfyClient, FileGone, Rejected, ServerDown
from win_side.backends.comfyui.events import EventStream, Watch
from win_side.backends.comfyui.graphs import Graph, builtin_graph, filename_prefix, workflow_graph
from win_side.power import CLOCK
from win_side.throttle import Throttle

log = logging.getLogger("renderloop.comfyui")

POLL = (0.25, 0.5, 1.0, 2.0)  # /queue + /history polling while the websocket is down
SAFETY_CHECK = 5.0  # a check even while the socket is up: no render waits on a lost message
DOWN_GRACE = 60.0  # an in-flight render waits this long for a vanished server
MAX_RESUBMITS = 3
MAX_BAD_ANSWERS = 3
DEFAULT_TIMEOUT = 1800.0
LOST = "lost"


class GraphBuilder:
    """Graphs for requests: built-in, or a user workflow read from the studio (cached by mtime)."""

    def __init__(self, studio_root: Path) -> None:
        self.studio = Studio.at(studio_root)
        self._workflows: dict[str, tuple[tuple[int, int], Workflow]] = {}
        self._lock = threading.Lock()

    def graph(self, request: RenderRequest) -> Graph:
        spec = request.spec
        comfy = request.settings.comfyui
        if comfy is None:
            raise RenderFailed("invalid-spec", f"model {spec.model!r} has no 'comfyui' settings in renderloop.yaml")
        prefix = filename_prefix(request.batch, request.slug, request.spec_hash)
        if comfy.graph is not None:
            return builtin_graph(comfy, spec, prefix)
        assert comfy.workflow is not None
        try:
            return workflow_graph(self._workflow(comfy.workflow), comfy, spec, prefix)
        except BindingError as exc:
            raise RenderFailed("invalid-spec", f"renderloop.yaml models.{spec.model}.comfyui.{exc}") from None

    def _workflow(self, rel: str) -> Workflow:
        try:
            path = workflow_path(self.studio, rel)
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
            with self._lock:
                cached = self._workflows.get(rel)
            if cached and cached[0] == key:
                return cached[1]
            workflow = load_workflow(self.studio, rel)
        except (BindingError, InvalidFile) as exc:
            raise RenderFailed("invalid-spec", " ".join(str(exc).split())) from None
        except OSError as exc:
            raise RenderFailed("invalid-spec", f"cannot read workflow {rel}: {exc.strerror or exc}") from None
        with self._lock:
            self._workflows[rel] = (key, workflow)
        return workflow


@dataclass
class _Again(Exception):
    """Submit again: the server lost the prompt, or the cached file it points to is gone."""

    graph: Graph
    reason: str


class ComfyLane:
    """One ComfyUI server."""

    def __init__(self, url: str, window: int, builder: GraphBuilder, timeout: float) -> None:
        self.url = url
        self.name = url
        self.window = window
        self.builder = builder
        self.timeout = timeout
        self.client = ComfyClient(url)
        self.client_id = uuid.uuid4().hex
        self.events = EventStream(url, self.client_id)
        self.lacking: dict[str, list[str]] = {}  # model -> what this server lacks (from preflight)
        self.peers: list[ComfyLane] = []
        self.clock = CLOCK.now  # time awake: a render spanning a sleep keeps its time limit

    def accepts(self, request: RenderRequest) -> bool:
        """False when preflight found this server lacks the model's files or nodes."""
        return not self.lacking.get(request.spec.model)

    def close(self) -> None:
        self.events.close()
        self.client.close()

    # --------------------------------------------------------------- render
    def render(self, request: RenderRequest, cancel: threading.Event,
               progress: Optional[ReportProgress] = None) -> RenderResult:
        graph = self.builder.graph(request)
        self._leave_to_peers(request)
        deadline = self.clock() + self.timeout
        for attempt in range(MAX_RESUBMITS + 1):
            if cancel.is_set():
                raise Cancelled(request.slug)
            try:
                return self._attempt(request, graph, cancel, progress, deadline)
            except _Again as again:
                graph = again.graph
                log.warning("ComfyUI at %s: %s; submitting %s/%s again", self.url, again.reason, *request.key)
        raise BackendUnavailable(f"ComfyUI at {self.url} lost {request.batch}/{request.slug} {MAX_RESUBMITS + 1} times")

    def _attempt(self, request: RenderRequest, graph: Graph, cancel: threading.Event,
                 progress: Optional[ReportProgress], deadline: float) -> RenderResult:
        prompt_id = str(uuid.uuid4())
        ids = {"server": self.url, "prompt_id": prompt_id}
        watch = self.events.watch(prompt_id)  # before submitting: no message can be missed
        submitted = self.clock()
        try:
            self._submit(request, graph, prompt_id, ids)
            entry = self._wait(request, watch, cancel, progress, deadline, ids)
            if entry is LOST:
                raise _Again(graph, f"the server lost prompt {prompt_id} (restarted?)")
            return self._result(request, graph, entry, ids, self.clock() - submitted)
        finally:
            self.events.unwatch(prompt_id)

    def _leave_to_peers(self, request: RenderRequest) -> None:
        lacks = self.lacking.get(request.spec.model)
        if lacks and any(peer.lacking.get(request.spec.model) == [] for peer in self.peers):
            raise BackendUnavailable(f"ComfyUI at {self.url} lacks {', '.join(lacks)}; leaving {request.slug} "
                                     "to a server that has them")

    def _submit(self, request: RenderRequest, graph: Graph, prompt_id: str, ids: dict) -> None:
        extra = {"renderloop": {"batch": request.batch, "slug": request.slug, "spec_hash": request.spec_hash,
                                "spec": request.spec.model_dump(mode="json")}}
        try:
            answer = self.client.submit(graph.nodes, self.client_id, prompt_id, extra)
        except Rejected as exc:
            raise errors.rejected(exc, self.url, ids) from None
        except ServerDown as exc:
            self._forget(prompt_id)  # a timed-out POST may still have queued it
            raise BackendUnavailable(str(exc)) from None
        except BadAnswer as exc:
            raise RenderFailed("backend-error", str(exc), backend_ids=ids) from None
        blocking = errors.blocking_errors(answer["node_errors"], graph.save_node)
        if blocking:  # 200, but our SaveImage will not run
            self._forget(prompt_id)
            raise errors.rejected(Rejected({"message": "Prompt outputs failed validation"}, blocking), self.url, ids)

    def _wait(self, request: RenderRequest, watch: Watch, cancel: threading.Event,
              progress: Optional[ReportProgress], deadline: float, ids: dict) -> Union[dict, str]:
        prompt_id = watch.prompt_id
        epoch = self.events.epoch
        polls = Throttle(POLL)  # while the socket is down or the server does not answer
        bad = 0
        down_since: Optional[float] = None
        next_check = self.clock() + (SAFETY_CHECK if self.events.connected else POLL[0])
        shown: Optional[float] = None
        while True:
            watch.changed.clear()
            if cancel.is_set():
                self._forget(prompt_id, interrupt=True)
                raise Cancelled(request.slug)
            if progress is not None and watch.fraction is not None and watch.fraction != shown:
                shown = watch.fraction
                _report(progress, shown)
            now = self.clock()
            if now > deadline:
                self._forget(prompt_id, interrupt=True)
                raise RenderFailed("timeout", f"no image from ComfyUI at {self.url} after {self.timeout:g} s",
                                   backend_ids=ids)
            if watch.done or self.events.epoch != epoch or now >= next_check:
                epoch = self.events.epoch
                failed = True
                try:
                    state = self._check(prompt_id, watch.done)
                    failed, down_since, bad = False, None, 0
                except ServerDown as exc:
                    down_since = down_since or now
                    if now - down_since > DOWN_GRACE:
                        raise BackendUnavailable(f"{exc}; gave up waiting after {DOWN_GRACE:g} s") from None
                    state = None
                except BadAnswer as exc:
                    bad += 1
                    if bad >= MAX_BAD_ANSWERS:
                        raise RenderFailed("backend-error", str(exc), backend_ids=ids) from None
                    state = None
                if state is not None:
                    return state
                if not failed:
                    watch.done = False  # queued or running after all: wait for the next signal
                if self.events.connected and not failed:
                    polls.succeed()
                    next_check = now + SAFETY_CHECK
                else:
                    next_check = now + polls.fail()
            watch.changed.wait(max(0.0, min(0.1, next_check - now)))

    def _check(self, prompt_id: str, done: bool) -> Union[dict, str, None]:
        """The history entry, None while queued or running, or LOST when the server forgot it."""
        if done:
            entry = self.client.history(prompt_id)
            if entry is not None:
                return entry
        running, pending = self.client.queue()  # the queue first: a prompt that leaves it is in the history
        if prompt_id in running or prompt_id in pending:
            return None
        entry = self.client.history(prompt_id)
        return entry if entry is not None else LOST

    def _result(self, request: RenderRequest, graph: Graph, entry: Any, ids: dict, waited: float) -> RenderResult:
        status = errors.as_dict(entry.get("status"))
        events = errors.status_events(status)
        if status.get("status_str") != "success" or "execution_error" in events or "execution_interrupted" in events:
            raise errors.execution_failed(events, status, self.url, ids)
        image = errors.output_image(entry, graph.save_node, self.url, ids)
        try:
            png = self.client.view(image)
        except FileGone as exc:
            suffix = uuid.uuid4().hex[:6]
            raise _Again(graph.with_prefix(f"{graph.prefix}-{suffix}"), f"{exc} (a cached result)") from None
        except ServerDown as exc:
            raise BackendUnavailable(str(exc)) from None
        except BadAnswer as exc:
            raise RenderFailed("backend-error", str(exc), backend_ids=ids) from None
        seconds = errors.render_seconds(events)
        seconds = round(waited, 3) if seconds is None else seconds
        finished = utcnow()
        started = (finished - timedelta(seconds=seconds)).replace(microsecond=0)
        return RenderResult(png=png, started_at=started, finished_at=finished, render_seconds=seconds,
                            backend_ids=ids, cost_usd=0.0, cached=errors.answered_from_cache(events, graph.save_node))

    def _forget(self, prompt_id: str, interrupt: bool = False) -> None:
        """Best effort: take our prompt off the server's queue (and stop it if it runs)."""
        try:
            self.client.delete([prompt_id], timeout=min(2.0, self.client.read_timeout))
            if interrupt:
                self.client.interrupt(prompt_id, timeout=min(2.0, self.client.read_timeout))
        except (ServerDown, BadAnswer) as exc:
            log.debug("ComfyUI at %s: could not withdraw %s: %s", self.url, prompt_id, exc)

    # ------------------------------------------------------------ preflight
    def inspect(self, graphs: dict[str, Graph]) -> Optional[dict[str, list[str]]]:
        """Per model, what this server lacks to run its graph (files, node types); None if it does not answer."""
        infos: dict[str, Optional[dict]] = {}
        lacking: dict[str, list[str]] = {}
        try:
            for model, graph in graphs.items():
                lacking[model] = errors.lacking(graph, infos, self.client.object_info)
        except (ServerDown, BadAnswer) as exc:
            log.warning("ComfyUI at %s is not answering (%s); its model files are checked when it renders", self.url, exc)
            return None
        self.lacking = lacking
        return lacking


class ComfyUIBackend:
    name = "comfyui"

    def __init__(self, options: BackendOptions) -> None:
        urls = options.comfyui_urls or list(options.config.worker.comfyui)
        urls = list(dict.fromkeys(_normalize(url) for url in urls))
        if not urls:
            raise NotConfigured(
                "no ComfyUI server: worker.comfyui in renderloop.yaml lists none; list one there "
                "(e.g. comfyui: [http://127.0.0.1:8188]) or pass --comfyui URL"
            )
        self.builder = GraphBuilder(options.studio_root)
        timeout = options.timeout_seconds or DEFAULT_TIMEOUT
        self._lanes = [ComfyLane(url, max(1, options.window), self.builder, timeout) for url in urls]
        for lane in self._lanes:
            lane.peers = [peer for peer in self._lanes if peer is not lane]

    @property
    def lanes(self) -> Sequence[ComfyLane]:
        return self._lanes

    def preflight(self, requests: Sequence[RenderRequest]) -> dict[tuple[str, str], RenderFailed]:
        """Fail the requests no server can render: model files or node types it does not list."""
        failures: dict[tuple[str, str], RenderFailed] = {}
        graphs: dict[str, Graph] = {}
        by_model: dict[str, list[RenderRequest]] = {}
        for request in requests:
            model = request.spec.model
            if model not in graphs:
                try:
                    graphs[model] = self.builder.graph(request)
                except RenderFailed as exc:
                    failures[request.key] = exc
                    continue
            by_model.setdefault(model, []).append(request)
        if not graphs:
            return failures
        with ThreadPoolExecutor(max_workers=len(self._lanes)) as pool:
            answers = list(pool.map(lambda lane: lane.inspect(graphs), self._lanes))
        for model, model_requests in by_model.items():
            answered = [(lane.url, lacks[model]) for lane, lacks in zip(self._lanes, answers) if lacks is not None]
            if answered and all(lacks for _, lacks in answered):
                failure = errors.preflight_failure(model, answered)
                for request in model_requests:
                    failures[request.key] = failure
                log.warning("%s: %d image(s) of %s cannot render: %s",
                            "ComfyUI", len(model_requests), model, failure.message)
        return failures

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()


def _normalize(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    return url


def _report(progress: ReportProgress, fraction: float) -> None:
    try:
        progress(fraction)
    except Exception:  # a progress display must never break a render
        log.debug("progress callback failed", exc_info=True)
