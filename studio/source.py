"""Reading YAML and JSON files safely, remembering the line of every value.

Batch files and ``renderloop.yaml`` are written by people, so every error
must name the file, the line and the value.  This module loads a file into
plain data plus a map from each value's location (``("prompts", 2, "slug")``)
to its line, refuses what could hurt (links, devices and huge files, anchors
that expand into huge documents, tags that would build Python objects), and
turns pydantic's validation errors into ``path:line: message`` problems.

YAML is read with the YAML 1.2 core rules for plain values, stricter still
for numbers: an integer is decimal digits (no ``1:30`` sexagesimal, ``0x400``
hex, ``0o17`` octal or ``1_024`` underscores: those stay text, and the schema
refuses text where a number belongs), a boolean is ``true`` or ``false``
(``yes``, ``on``, ``n`` are text), and dates are text.
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from studio.errors import InvalidFile, Problem
from studio.fsutil import read_bounded
from studio.limits import CONTROL_IN_FILE, MAX_BATCH_BYTES


class Strict(BaseModel):
    """A model of a file people write (renderloop.yaml, batch files, machine.yaml): unknown keys refused;
    strict types, so "8" is not 8 and true is not 1.0 (a float field still takes an int); no nan or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, defer_build=True)


MAX_BYTES = MAX_BATCH_BYTES
MAX_NODES = 200_000
MAX_DEPTH = 64  # nesting; PyYAML's scanner slows down quadratically with depth
MAX_NUMBER_DIGITS = 100  # Python refuses to read integers past 4300 digits

Loc = tuple[Any, ...]


@dataclass
class Document:
    """A loaded file: its data, and the line where each value starts."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest enclosing value that has one."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(self.path, self.line_of(loc), message)


def load_file(path: Path, display: str, *, max_bytes: int = MAX_BYTES, root: Path | None = None) -> Document:
    """Load a YAML or JSON file (chosen by suffix) or raise :class:`InvalidFile`.

    The file is read with :func:`studio.fsutil.read_bounded`: a link (on the
    way below ``root`` too), a device, a FIFO or a file over ``max_bytes`` is
    refused as this file's problem.
    """
    try:
        raw = read_bounded(path, max_bytes, root, display)
    except OSError as exc:
        raise InvalidFile([Problem(display, 1, f"cannot read the file: {exc.strerror or exc}")]) from exc
    return load_bytes(raw, display, json_syntax=path.suffix.lower() == ".json", max_bytes=max_bytes)


def load_bytes(raw: bytes, display: str, *, json_syntax: bool, max_bytes: int = MAX_BYTES) -> Document:
    _check_bytes(len(raw), display, max_bytes)
    text = _decode(raw, display)
    if not text.strip():
        raise InvalidFile([Problem(display, 1, "file is empty")])
    if json_syntax:
        return _load_json(text, display)
    return _load_yaml(text, display)


def _check_bytes(size: int, display: str, max_bytes: int) -> None:
    if size > max_bytes:
        raise InvalidFile(
            [Problem(display, 1, f"file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB")]
        )


def _decode(raw: bytes, display: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark, as Notepad writes: harmless
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        bad = raw[exc.start : exc.start + 4]
        raise InvalidFile(
            [Problem(display, line, f"not valid UTF-8: byte {bad[:1].hex()} in {bad!r}; save the file as UTF-8")]
        ) from None
    bad_char = CONTROL_IN_FILE.search(text)
    if bad_char:
        number = text.count("\n", 0, bad_char.start()) + 1
        raise InvalidFile(
            [Problem(display, number, f"control character {bad_char.group()!r} is not allowed in the file")]
        )
    return text.replace("\r\n", "\n")


def _load_json(text: str, display: str) -> Document:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen[key] = value
        return seen

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise InvalidFile(
            [Problem(display, exc.lineno, f"JSON syntax error at column {exc.colno}: {exc.msg}")]
        ) from None
    except _DuplicateKey as exc:
        _json_lines(text, display)  # names the line of the second occurrence when it can
        line = _first_line_with(text, json.dumps(exc.key))
        raise InvalidFile([Problem(display, line, f"duplicate key {exc.key!r}")]) from None
    except RecursionError:
        raise InvalidFile([Problem(display, 1, f"JSON is nested more than {MAX_DEPTH} levels deep")]) from None
    except ValueError:  # an integer too long for Python to read
        raise InvalidFile([_long_number_problem(text, display)]) from None
    return Document(display, data, _json_lines(text, display))


def _json_lines(text: str, display: str) -> dict[Loc, int]:
    """Line numbers of a JSON document, read with the YAML composer (JSON is nearly YAML)."""
    lines: dict[Loc, int] = {}
    # Outside strings a tab is only white space in JSON, and YAML refuses tabs
    # as indentation; inside strings JSON escapes tabs, so this is safe.
    loader = _Loader(text.replace("\t", " "))
    try:
        node = loader.get_single_node()
        if node is not None:
            _index_lines(node, (), lines, set(), display=display)
    except _TooDeep as exc:
        raise InvalidFile([Problem(display, exc.line, f"JSON is nested more than {MAX_DEPTH} levels deep")]) from None
    except (yaml.YAMLError, RecursionError):
        pass
    finally:
        loader.dispose()
    lines.setdefault((), 1)
    return lines


def _long_number_problem(text: str, display: str) -> Problem:
    match = re.search(r"\d{%d,}" % (MAX_NUMBER_DIGITS + 1), text)
    line = text.count("\n", 0, match.start()) + 1 if match else 1
    shown = match.group()[:20] + "..." if match else "a number"
    return Problem(display, line, f"number {shown} has more than {MAX_NUMBER_DIGITS} digits")


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _first_line_with(text: str, needle: str) -> int:
    index = text.find(needle)
    return 1 if index < 0 else text.count("\n", 0, index) + 1


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
DECIMAL_INT = re.compile(r"[-+]?[0-9]+")
_DECIMAL_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_SPECIAL_FLOAT = re.compile(r"[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
# YAML 1.2 core schema for plain values (numbers: decimal only, see the module's docstring).
_RESOLVERS: list[tuple[str, re.Pattern[str], list[str]]] = [
    (_BOOL, re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z"), list("tTfF")),
    (_INT, re.compile(DECIMAL_INT.pattern + r"\Z"), list("-+0123456789")),
    (_FLOAT, re.compile(f"(?:{_DECIMAL_FLOAT.pattern}|{_SPECIAL_FLOAT.pattern})\\Z"), list("-+.0123456789")),
    (_NULL, re.compile(r"(?:~|null|Null|NULL|)\Z"), ["~", "n", "N", ""]),
]


class _Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2 plain values, refusing nesting past MAX_DEPTH before it gets slow."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _INT, _FLOAT, _NULL, _TIMESTAMP)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:  # also for an explicit !!int
        value = self.construct_scalar(node)
        if not DECIMAL_INT.fullmatch(value):
            raise yaml.constructor.ConstructorError(
                None, None, f"{value!r} is not a decimal integer", node.start_mark)
        return int(value)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value = self.construct_scalar(node)
        if _SPECIAL_FLOAT.fullmatch(value):
            return float(value.replace(".", "").lower())
        if not _DECIMAL_FLOAT.fullmatch(value):
            raise yaml.constructor.ConstructorError(
                None, None, f"{value!r} is not a decimal number", node.start_mark)
        return float(value)

    def construct_yaml_bool(self, node: yaml.ScalarNode) -> bool:
        value = self.construct_scalar(node)
        if value.lower() not in ("true", "false"):
            raise yaml.constructor.ConstructorError(
                None, None, f"{value!r} is not a boolean: write true or false", node.start_mark)
        return value.lower() == "true"

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


for _tag, _regexp, _first in _RESOLVERS:
    _Loader.add_implicit_resolver(_tag, _regexp, _first)
_Loader.add_constructor(_INT, _Loader.construct_yaml_int)
_Loader.add_constructor(_FLOAT, _Loader.construct_yaml_float)
_Loader.add_constructor(_BOOL, _Loader.construct_yaml_bool)


def _load_yaml(text: str, display: str) -> Document:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise InvalidFile([Problem(display, 1, "file is empty")])
        _check_size(node, display)
        lines: dict[Loc, int] = {}
        _index_lines(node, (), lines, set(), display=display)
        data = loader.construct_document(node)
    except _TooDeep as exc:
        raise InvalidFile([Problem(display, exc.line, f"YAML is nested more than {MAX_DEPTH} levels deep")]) from None
    except yaml.constructor.ConstructorError as exc:
        raise InvalidFile([_mark_problem(display, exc, _constructor_message(exc))]) from None
    except yaml.MarkedYAMLError as exc:
        what = exc.problem or exc.context or "invalid YAML"
        raise InvalidFile([_mark_problem(display, exc, f"YAML syntax error at{_column(exc)}: {what}")]) from None
    except yaml.YAMLError as exc:
        raise InvalidFile([Problem(display, 1, f"YAML error: {exc}")]) from None
    except RecursionError:
        raise InvalidFile([Problem(display, 1, "YAML is nested too deeply")]) from None
    finally:
        loader.dispose()
    return Document(display, data, lines)


def _mark_problem(display: str, exc: yaml.MarkedYAMLError, message: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    return Problem(display, mark.line + 1 if mark else 1, message)


def _column(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    return f" column {mark.column + 1}" if mark else ""


def _constructor_message(exc: yaml.constructor.ConstructorError) -> str:
    what = exc.problem or exc.context or "cannot read this value"
    tag = re.search(r"tag '([^']*)'", what)
    if tag:
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return f"YAML tag {shown!r} is not allowed at{_column(exc)}: tags that build objects are refused"
    return f"YAML error at{_column(exc)}: {what}"


def _check_size(root: yaml.Node, display: str) -> None:
    """Refuse a document whose anchors and aliases expand past MAX_NODES values.

    Sizes are counted on the node graph, where an alias is the very node its
    anchor names, so a "billion laughs" document is refused after visiting
    each distinct node once, without building anything.  Integers too long
    for Python to read are refused here too, with their line.
    """
    sizes: dict[int, int] = {}
    aliased = False

    def size(node: yaml.Node) -> int:
        nonlocal aliased
        key = id(node)
        if key in sizes:
            aliased = True
            return sizes[key]
        sizes[key] = 1  # a cycle counts once; construction will reject it anyway
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_NUMBER_DIGITS:
            raise InvalidFile(
                [Problem(display, node.start_mark.line + 1,
                         f"number {node.value[:20]}... has more than {MAX_NUMBER_DIGITS} digits")]
            )
        if total > MAX_NODES:
            why = " (YAML anchors and aliases); write it out plainly" if aliased else "; split it into several files"
            raise InvalidFile(
                [Problem(display, node.start_mark.line + 1, f"the document expands to more than {MAX_NODES} values{why}")]
            )
        sizes[key] = total
        return total

    size(root)


def _index_lines(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], seen: set[int], display: str | None = None
) -> None:
    if loc in lines:
        return
    lines[loc] = node.start_mark.line + 1
    if id(node) in seen:
        return
    seen = seen | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            _index_lines(child, loc + (index,), lines, seen, display)
    elif isinstance(node, yaml.MappingNode):
        keys: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if display is not None and key is not None and key in keys:
                raise InvalidFile([Problem(display, key_node.start_mark.line + 1, f"duplicate key {key!r}")])
            keys.add(key)
            if key is not None:
                _index_lines(value_node, loc + (key,), lines, seen, display)
                lines.setdefault(loc + (key, "__key__"), key_node.start_mark.line + 1)


KnownKeys = Callable[[Loc], Iterable[str]]  # the keys allowed in the mapping at a location


def problems_from(exc: ValidationError, doc: Document, prefix: Loc = (), known: Optional[KnownKeys] = None) -> list[Problem]:
    """Turn a pydantic ValidationError on ``doc.data`` into ``path:line: message`` problems.

    With ``known``, an unknown key names the allowed key it is closest to.
    """
    problems = []
    for error in exc.errors(include_url=False):
        loc = prefix + tuple(error["loc"])
        # An unknown key, or a whole mapping found wrong, is pointed at by its key's line.
        on_key = error["type"] == "extra_forbidden" or isinstance(error.get("input"), dict)
        where = loc + ("__key__",) if on_key else loc
        message = describe_error(error, loc)
        if error["type"] == "extra_forbidden" and known is not None:
            message += did_you_mean(str(loc[-1]), known(loc[:-1]))
        problems.append(doc.problem(where, message))
    return sorted(problems, key=lambda p: p.line)


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """``; did you mean 'prompt'?`` for the option nearest ``word`` (as git and ruff say it), or ""."""
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


def describe_error(error: ErrorDetails, loc: Loc) -> str:
    """One readable sentence for one pydantic error."""
    kind = error["type"]
    where = dotted(loc)
    value = error.get("input")
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}" + (f" in {dotted(loc[:-1])}" if loc[:-1] else "")
    if kind == "missing":
        return f"missing required key {loc[-1]!r}" + (f" in {dotted(loc[:-1])}" if loc[:-1] else "")
    yaml11 = _yaml11_hint(kind, value)
    if yaml11:
        return f"{where}: {yaml11}" if where else yaml11
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if (isinstance(value, str) and repr(value)[:20] in message) or (kind == "value_error" and isinstance(value, dict)):
        return f"{where}: {message}" if where else message  # the message already names the value
    shown = _short(value)
    return f"{where}: {message} (got {shown})" if where else f"{message} (got {shown})"


# Numbers and booleans as YAML 1.1 wrote them; YAML 1.2 (and renderloop) reads them as text.
_YAML11_NUMBER = re.compile(
    r"[-+]?(?:0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?|[0-9][0-9_]*_[0-9_]*(?:\.[0-9_]*)?)"
)
_YAML11_BOOL = frozenset({"yes", "no", "on", "off", "y", "n"})


def _yaml11_hint(kind: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if kind in ("int_type", "float_type") and _YAML11_NUMBER.fullmatch(value):
        return (f"{value!r} is not read as a number: write it in plain decimal digits, like 1024 "
                "(YAML 1.2 reads sexagesimal 1:30, hex 0x400, octal 0o17 and underscores 1_024 as text)")
    if kind == "bool_type" and value.lower() in _YAML11_BOOL:
        return f"{value!r} is not read as a boolean: write true or false"
    return None


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if part == "__key__":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
