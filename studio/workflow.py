"""User workflows: ComfyUI graphs exported with "Save (API)", and where a spec goes in them.

A workflow file is data.  renderloop reads it, sets the bound inputs
(prompt, negative, seed, width, height, steps) and submits it to ComfyUI;
it never runs anything from it.

A binding names a node input as ``NODE.INPUT``: NODE is a node id (``"3"``)
or a node title (``_meta.title``, the name shown in ComfyUI, e.g.
``"Positive"``); the input is split off at the last dot, so titles may hold
dots.  An id wins over a title.  A binding may list several inputs
(``width: ["5.width", "12.width"]``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Optional, Sequence, Union

from studio.capability import unknown_input
from studio.errors import FatalError, InvalidFile, Problem
from studio.fsutil import read_or_none
from studio.layout import Studio
from studio.limits import MAX_WORKFLOW_BYTES
from studio.source import Document, load_bytes

BIND_FIELDS = ("prompt", "negative", "seed", "width", "height", "steps")
TEXT_FIELDS = ("prompt", "negative")
SAVE_CLASS = "SaveImage"

Binding = Union[str, Sequence[str]]


@dataclass(frozen=True)
class Target:
    """One node input a spec value is written to."""

    node: str
    input: str

    def __str__(self) -> str:
        return f"{self.node}.{self.input}"


class BindingError(ValueError):
    """A binding that does not name an input of the workflow."""


@dataclass(frozen=True)
class Workflow:
    """An API-format graph: ``{node_id: {"class_type": ..., "inputs": {...}, "_meta": {...}}}``."""

    path: str  # as the user knows it, relative to the studio
    graph: Mapping[str, Any]

    def title(self, node: str) -> Optional[str]:
        meta = self.graph[node].get("_meta")
        title = meta.get("title") if isinstance(meta, dict) else None
        return title if isinstance(title, str) else None

    @property
    def save_node(self) -> str:
        """The one SaveImage node renderloop takes the image from."""
        return self.save_nodes()[0]

    def save_nodes(self) -> list[str]:
        return [node for node, spec in self.graph.items() if spec["class_type"] == SAVE_CLASS]

    def find_node(self, ref: str) -> str:
        if ref in self.graph:
            return ref
        matches = [node for node in self.graph if self.title(node) == ref]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise BindingError(f"title {ref!r} names nodes {', '.join(matches)} in {self.path}: use the node id")
        titles = sorted({t for t in (self.title(n) for n in self.graph) if t})
        hint = f" (titles: {', '.join(repr(t) for t in titles[:8])}{', ...' if len(titles) > 8 else ''})" if titles else ""
        raise BindingError(f"no node with id or title {ref!r} in {self.path}{hint}")

    def target(self, field: str, ref: str) -> Target:
        """The input ``ref`` names, checked against the graph and the kind of value ``field`` holds."""
        if not isinstance(ref, str) or "." not in ref.strip("."):
            raise BindingError(f"write NODE.INPUT, like '3.seed' or 'Positive.text' (got {ref!r})")
        node_ref, name = ref.rsplit(".", 1)
        node = self.find_node(node_ref)
        inputs = self.graph[node]["inputs"]
        where = f"node {node}" + (f" ({self.title(node)!r})" if self.title(node) else "")
        if name not in inputs:
            known = ", ".join(sorted(inputs)) or "none"
            raise BindingError(f"{where} has no input {name!r} (its inputs: {known})")
        value = inputs[name]
        if isinstance(value, list):
            raise BindingError(
                f"input {name!r} of {where} is linked to node {value[0]}; bind an input that holds a value"
            )
        if field in TEXT_FIELDS and not isinstance(value, str):
            raise BindingError(f"input {name!r} of {where} holds {value!r}, not text")
        if field not in TEXT_FIELDS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BindingError(f"input {name!r} of {where} holds {value!r}, not a number")
        return Target(node, name)

    def resolve(self, bind: Mapping[str, Binding]) -> dict[str, list[Target]]:
        """Every binding as node inputs; raises BindingError for the first that is wrong."""
        targets: dict[str, list[Target]] = {}
        for field, refs in bind.items():
            if field not in BIND_FIELDS:
                raise BindingError(f"cannot bind {field!r}: choose from {', '.join(BIND_FIELDS)}")
            refs = [refs] if isinstance(refs, str) else list(refs)
            try:
                targets[field] = [self.target(field, ref) for ref in refs]
            except BindingError as exc:
                raise BindingError(f"bind.{field}: {exc}") from None
        return targets

    def apply(self, targets: Mapping[str, Sequence[Target]], values: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the graph with ``values`` (None = keep the workflow's own) written to their targets."""
        graph = copy.deepcopy(dict(self.graph))
        for field, field_targets in targets.items():
            value = values.get(field)
            if value is None:
                continue
            for target in field_targets:
                graph[target.node]["inputs"][target.input] = value
        return graph


def parse_workflow(doc: Document, nodes: Optional[Mapping[str, Sequence[str]]] = None) -> Workflow:
    """Check the shape of an API-format graph; problems name the workflow file's lines.

    ``nodes``: input names per node type (``studio.capability.node_inputs``); an input a node
    type does not have is a problem (ComfyUI would ignore it and complain of another, missing).
    """
    data = doc.data
    if isinstance(data, dict) and ("nodes" in data and "links" in data):
        raise InvalidFile([doc.problem((), "this is a UI workflow; in ComfyUI use Workflow > Export (API) to save the API format")])
    if not isinstance(data, dict) or not data:
        raise InvalidFile([doc.problem((), "an API-format workflow is a mapping of node ids to nodes")])
    problems = []
    for node, spec in data.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("class_type"), str):
            problems.append(doc.problem((node,), f"node {node}: needs a 'class_type' and 'inputs'"))
        elif not isinstance(spec.get("inputs", {}), dict):
            problems.append(doc.problem((node, "inputs"), f"node {node}: 'inputs' must be a mapping"))
        else:
            problems += _link_problems(doc, data, node, spec.get("inputs", {}))
            problems += _name_problems(doc, node, spec, nodes or {})
    if problems:
        raise InvalidFile(problems)
    graph = {node: {**spec, "inputs": dict(spec.get("inputs", {}))} for node, spec in data.items()}
    workflow = Workflow(doc.path, graph)
    saves = workflow.save_nodes()
    if len(saves) != 1:
        found = f"{len(saves)} ({', '.join(saves)})" if saves else "none"
        raise InvalidFile([doc.problem((), f"renderloop takes the image from one SaveImage node; this workflow has {found}")])
    return workflow


def _name_problems(doc: Document, node: str, spec: dict, nodes: Mapping[str, Sequence[str]]) -> list[Problem]:
    problems = []
    for name in spec.get("inputs", {}):
        why = unknown_input(spec["class_type"], str(name), nodes)
        if why:
            problems.append(doc.problem((node, "inputs", name), f"node {node}: {why}"))
    return problems


def _link_problems(doc: Document, graph: dict, node: str, inputs: dict) -> list[Problem]:
    problems = []
    for name, value in inputs.items():
        if isinstance(value, list) and (len(value) != 2 or str(value[0]) not in graph):
            problems.append(doc.problem((node, "inputs", name), f"node {node}: input {name!r} links to {value!r}, not to a node of this workflow"))
    return problems


def check_path(rel: str) -> PurePosixPath:
    """``rel`` as a relative path that stays inside the studio; raises BindingError otherwise."""
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or ":" in rel:
        raise BindingError(f"workflow {rel!r} must be a path inside the studio, like 'workflows/my-sdxl.api.json'")
    return pure


def workflow_path(studio: Studio, rel: str) -> Path:
    """The workflow file ``rel`` inside the studio; refuses paths that leave it (links included)."""
    pure = check_path(rel)
    path = studio.root.joinpath(*pure.parts)
    try:
        studio.inside(path.parent)  # the file itself is checked as it is read
        return path
    except FatalError as exc:
        raise BindingError(f"workflow {rel!r} leaves the studio: {exc}") from None


def parse_workflow_bytes(raw: bytes, rel: str, nodes: Optional[Mapping[str, Sequence[str]]] = None) -> Workflow:
    """A workflow from the bytes of ``rel`` (a file on disk, or staged in git); raises InvalidFile."""
    display = check_path(rel).as_posix()
    if len(raw) > MAX_WORKFLOW_BYTES:
        raise InvalidFile([Problem(display, 1, f"file is {len(raw) / 1e6:.1f} MB; the limit is "
                                               f"{MAX_WORKFLOW_BYTES / 1e6:.1f} MB")])
    return parse_workflow(load_bytes(raw, display, json_syntax=True), nodes)


def read_workflow(studio: Studio, rel: str) -> Optional[bytes]:
    """The bytes of workflow ``rel`` in the working tree, None when there is no such file.

    A link, a device, a FIFO or a file over MAX_WORKFLOW_BYTES raises InvalidFile naming it.
    """
    path = workflow_path(studio, rel)
    return read_or_none(path, MAX_WORKFLOW_BYTES, studio.root, check_path(rel).as_posix())


def load_workflow(studio: Studio, rel: str) -> Workflow:
    """Load and check ``rel``; raises InvalidFile (problems in the workflow) or BindingError (bad path)."""
    raw = read_workflow(studio, rel)
    if raw is None:
        raise BindingError(f"workflow file {rel} does not exist")
    return parse_workflow_bytes(raw, rel)
