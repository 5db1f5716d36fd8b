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
* On start, and when a server is found again after it was unreachable, the
  lane reads its queue and history (``reattach``): prompts a killed worker
  left there that are still wanted are waited for and their image taken
  (no second execution); queued ones no longer wanted are deleted.  The
  websocket clientId is stable per clone and server, so messages about
  those prompts reach the new worker too.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from studio.config import StudioConfig
from studio.errors import InvalidFile, NotConfigured
from studio.layout import Studio
from studio.machine import public_url
from studio.spec import Spec, spec_hash
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
from win_side.backends import http
from win_side.backends.comfyui import capability, errors, reattach
from win_side.backends.comfyui.client import BadAnswer, ComfyClient, FileGone, OutOfTime, Rejected, ServerDown
from win_side.backends.comfyui.events import EventStream, Watch
from win_side.backends.comfyui.graphs import Graph, builtin_graph, filename_prefix, workflow_graph
from win_side.keeper import models_dir_problem
from win_side.power import CLOCK
from win_side.throttle import Throttle

log = logging.getLogger("renderloop.comfyui")

POLL = (0.25, 0.5, 1.0, 2.0)  # /queue + /history polling while the websocket is down
SAFETY_CHECK = 5.0  # a check even while the socket is up: no render waits on a lost message
DOWN_GRACE = 60.0  # an in-flight render waits this long for a vanished server
MAX_RESUBMITS = 3
MAX_BAD_ANSWERS = 3
HISTORY_SURVEYED = 1000  # the newest history entries read when re-attaching
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

    def __init__(self, url: str, window: int, builder: GraphBuilder, timeout: float,
                 client_id: Optional[str] = None, shared: Optional["_Shared"] = None) -> None:
        self.url = public_url(url)  # what logs, records and workers/<name>.json say: no password
        self.name = self.url
        self.label = f"ComfyUI at {self.url}"  # in the person's words
        self.window = window
        self.builder = builder
        self.timeout = timeout
        self.client = ComfyClient(url)
        self.client_id = client_id or uuid.uuid4().hex
        self.events = EventStream(url, self.client_id)
        self.lacking: dict[str, list[str]] = {}  # model -> what this server lacks (from preflight)
        self.peers: list[ComfyLane] = []
        self.clock = CLOCK.now  # time awake: a render spanning a sleep keeps its time limit
        self.shared = shared or _Shared()
        self.held: dict[tuple[str, str], tuple[str, str]] = {}  # key -> (spec_hash, prompt id) on this server
        self.survey_needed = True  # at start, and after the server was unreachable
        self.models_dir: Optional[str] = None  # this machine's ComfyUI models folder (worker.models_dir)

    def accepts(self, request: RenderRequest) -> bool:
        """False when preflight found this server lacks the model's files or nodes, or another server
        holds the image's prompt already."""
        if self.lacking.get(request.spec.model):
            return False
        return not any(peer.holds(request) for peer in self.peers)

    def holds(self, request: RenderRequest) -> bool:
        """This server has the image's prompt (re-attached): the lane takes it first."""
        with self.shared.lock:
            return self.held.get(request.key, ("", ""))[0] == request.spec_hash

    def close(self) -> None:
        self.events.close()
        self.client.close()

    # --------------------------------------------------------------- render
    def render(self, request: RenderRequest, cancel: threading.Event,
               progress: Optional[ReportProgress] = None) -> RenderResult:
        missing = models_dir_problem(self.models_dir)
        if missing:  # a drive not mounted: the image waits (named as such), it is not failed for missing files
            raise BackendUnavailable(missing)
        graph = self.builder.graph(request)
        self._leave_to_peers(request)
        if self.survey_needed:
            self.survey()
        with self.shared.lock:
            spec_hash, held = self.held.pop(request.key, ("", ""))
        adopt = held if spec_hash == request.spec_hash else None
        deadline = self.clock() + self.timeout
        for attempt in range(MAX_RESUBMITS + 1):
            if cancel.is_set():
                raise Cancelled(request.slug)
            try:
                return self._attempt(request, graph, cancel, progress, deadline, adopt)
            except _Again as again:
                graph, adopt = again.graph, None
                log.warning("ComfyUI at %s: %s; submitting %s/%s again", self.url, again.reason, *request.key)
        raise BackendUnavailable(f"ComfyUI at {self.url} lost {request.batch}/{request.slug} {MAX_RESUBMITS + 1} times")

    def _attempt(self, request: RenderRequest, graph: Graph, cancel: threading.Event,
                 progress: Optional[ReportProgress], deadline: float, adopt: Optional[str] = None) -> RenderResult:
        """Submit the graph and wait for its image; or, with ``adopt``, wait for that prompt already on the server."""
        prompt_id = adopt or str(uuid.uuid4())
        ids = {"server": self.url, "prompt_id": prompt_id}
        watch = self.events.watch(prompt_id)  # before submitting: no message can be missed
        submitted = self.clock()
        with self.shared.lock:
            self.shared.inflight.add(prompt_id)
        try:
            if adopt is None:
                self._submit(request, graph, prompt_id, ids)
            else:
                log.info("ComfyUI at %s: re-attached to %s for %s/%s (submitted before a restart)",
                         self.url, prompt_id, *request.key)
                watch.done = True  # look at once: it may have finished while nobody watched
            entry = self._wait(request, watch, cancel, progress, deadline, ids)
            if entry is LOST:
                raise _Again(graph, f"the server lost prompt {prompt_id} (restarted?)")
            return self._result(request, graph, entry, ids, self.clock() - submitted)
        except OutOfTime as exc:  # a server trickling its answer: this image fails, the lane goes on
            self._forget(prompt_id, interrupt=True)
            raise RenderFailed("timeout", str(exc), backend_ids=ids) from None
        finally:
            self.events.unwatch(prompt_id)
            with self.shared.lock:
                self.shared.inflight.discard(prompt_id)

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
            self.survey_needed = True  # and if it did, the next survey finds it
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
                    self.survey_needed = True
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
        return RenderResult.ended_now(png, seconds, ids, cached=errors.answered_from_cache(events, graph.save_node))

    def _forget(self, prompt_id: str, interrupt: bool = False) -> None:
        """Best effort: take our prompt off the server's queue (and stop it if it runs)."""
        try:
            self.client.delete([prompt_id], timeout=min(2.0, self.client.read_timeout))
            if interrupt:
                self.client.interrupt(prompt_id, timeout=min(2.0, self.client.read_timeout))
        except (ServerDown, BadAnswer) as exc:
            log.debug("ComfyUI at %s: could not withdraw %s: %s", self.url, prompt_id, exc)

    # ------------------------------------------------------------- re-attach
    def survey(self) -> None:
        """Read the server's queue and history: hold our prompts still wanted, withdraw the others."""
        with self.shared.lock:
            wanted, inflight = self.shared.wanted, set(self.shared.inflight)
        if wanted is None:
            return  # nothing planned yet: nothing to compare with
        try:
            found = reattach.survey(self.client.queue_items(), self.client.recent_history(HISTORY_SURVEYED),
                                    wanted, inflight)
        except (ServerDown, BadAnswer, OutOfTime) as exc:
            log.debug("ComfyUI at %s: cannot read its queue and history yet: %s", self.url, exc)
            return
        self.survey_needed = False
        with self.shared.lock:
            self.held = {key: (wanted[key], prompt_id) for key, prompt_id in found.held.items()}
        if found.held:
            log.info("ComfyUI at %s holds %d image(s) submitted before a restart; waiting for those, not "
                     "submitting them again", self.url, len(found.held))
        if found.delete or found.interrupt:
            log.info("ComfyUI at %s: withdrawing %d prompt(s) of ours no longer wanted",
                     self.url, len(found.delete) + len(found.interrupt))
        try:
            if found.delete:
                self.client.delete(found.delete)
            for prompt_id in found.interrupt:
                self.client.interrupt(prompt_id)
        except (ServerDown, BadAnswer) as exc:
            log.warning("ComfyUI at %s: could not withdraw prompts no longer wanted: %s", self.url, exc)

    # ------------------------------------------------------------ preflight
    def inspect(self, graphs: dict[str, Graph]) -> Optional[dict[str, list[str]]]:
        """Per model, what this server lacks to run its graph (files, node types); None if it does not answer."""
        try:
            lacking = lacking_by_model(self.client, graphs)
        except (ServerDown, BadAnswer, OutOfTime) as exc:
            log.warning("ComfyUI at %s is not answering (%s); its model files are checked when it renders", self.url, exc)
            return None
        self.lacking = lacking
        return lacking


def lacking_by_model(client: ComfyClient, graphs: dict[str, Graph]) -> dict[str, list[str]]:
    """Per model, what the server lacks to run its graph (files, node types), from its ``/object_info``.

    Raises :class:`ServerDown` or :class:`BadAnswer` when the server does not answer.
    """
    infos: dict[str, Optional[dict]] = {}
    return {model: errors.lacking(graph, infos, client.object_info) for model, graph in graphs.items()}


def model_graphs(builder: GraphBuilder, config: StudioConfig) -> tuple[dict[str, Graph], dict[str, str]]:
    """The graph of each model with ComfyUI settings, as an image of its default size would use;
    and why a model's graph cannot be built (a bad workflow file, a binding to no node)."""
    graphs: dict[str, Graph] = {}
    problems: dict[str, str] = {}
    for model, settings in sorted(config.models.items()):
        if settings.comfyui is None:
            continue
        spec = Spec(model=model, prompt="renderloop doctor", seed=1, width=settings.width, height=settings.height,
                    steps=settings.steps)
        try:
            graphs[model] = builder.graph(RenderRequest("doctor", "doctor", spec, spec_hash(spec), settings))
        except RenderFailed as exc:
            problems[model] = str(exc)
    return graphs, problems


@dataclass
class _Shared:
    """What the lanes of one backend share: the images the plan wants, the prompts being waited on."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    wanted: Optional[dict[tuple[str, str], str]] = None  # key -> spec_hash, from the last plan
    inflight: set[str] = field(default_factory=set)


class ComfyUIBackend:
    name = "comfyui"

    def __init__(self, options: BackendOptions) -> None:
        urls = options.comfyui_urls or list(options.machine.worker.comfyui)
        urls = list(dict.fromkeys(normalize_url(url) for url in urls))
        if not urls:
            raise NotConfigured(
                "no ComfyUI server: worker.comfyui in this machine's machine.yaml lists none; list one there "
                "(e.g. comfyui: [http://127.0.0.1:8188]) or pass --comfyui URL"
            )
        self.builder = GraphBuilder(options.studio_root)
        timeout = options.timeout_seconds or DEFAULT_TIMEOUT
        self.shared = _Shared()
        self._lanes = [ComfyLane(url, max(1, options.window), self.builder, timeout,
                                 client_id=stable_client_id(options.state_dir, url), shared=self.shared)
                       for url in urls]
        self.models_dir = options.machine.worker.models_dir
        for lane in self._lanes:
            lane.peers = [peer for peer in self._lanes if peer is not lane]
            lane.client.stop = options.stop
            lane.models_dir = self.models_dir

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
        missing = models_dir_problem(self.models_dir)
        if missing:  # before each batch: what the servers lack says nothing while the folder is away
            batches = sorted({request.batch for request in requests})
            log.warning("%s; %d image(s) of %s wait for it", missing, len(requests), ", ".join(batches))
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

    def describe(self, config: StudioConfig) -> Optional[dict[str, Any]]:
        """What the servers can render, for the capability file; None when none answers."""
        return capability.describe(self._lanes, self.builder.graph, config)

    def adopt(self, wanted: dict[tuple[str, str], str]) -> None:
        """The images the plan wants (key -> spec_hash): servers not surveyed since start or since they
        were unreachable are surveyed now, before anything new is submitted."""
        with self.shared.lock:
            self.shared.wanted = dict(wanted)
        due = [lane for lane in self._lanes if lane.survey_needed]
        if due:
            with ThreadPoolExecutor(max_workers=len(due)) as pool:
                list(pool.map(lambda lane: lane.survey(), due))

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()


def stable_client_id(state_dir: Path, url: str) -> str:
    """The websocket clientId of this clone's worker on ``url``: the same after a restart, so ComfyUI's
    messages about prompts submitted before it reach the new worker."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"renderloop:{state_dir.resolve().as_posix()}|{url}").hex


def normalize_url(url: str) -> str:
    """``host:port`` or a URL, as one form: ``http://host:port`` without a trailing slash.

    Anything else (another scheme, no host, a port that is not a number) is a
    :class:`NotConfigured` naming it.
    """
    text = url.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    if not http.is_http_url(text):
        raise NotConfigured(f"ComfyUI server {url!r} is not an http(s) URL: give one like http://127.0.0.1:8188")
    return text


def _report(progress: ReportProgress, fraction: float) -> None:
    try:
        progress(fraction)
    except Exception:  # a progress display must never break a render
        log.debug("progress callback failed", exc_info=True)
