"""``machine.yaml``: where and with what this machine renders.

The repository's ``renderloop.yaml`` says *what* to render; everything that
addresses a host, runs a program or spends money on this machine's behalf
comes from this machine (SPEC section 8b), never from repository content:

1. a command-line flag (``renderloop worker --comfyui URL``),
2. the environment (``RENDERLOOP_WORKER_COMFYUI=URL,URL``: ``RENDERLOOP_``,
   then the section and the setting in capitals; lists are comma-separated),
3. this machine's own settings file, outside every repository:
   ``<user config folder>/renderloop/machine.yaml`` (``renderloop config
   --path`` prints it; ``RENDERLOOP_MACHINE_CONFIG=<path>`` names another),
4. the built-in default.

Secrets come only from the environment (``FAL_KEY``) and are never printed.
The one model, :class:`MachineSettings`, is read by both sides through
:func:`load_machine`.
"""
from __future__ import annotations

import os
import re
import socket
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator, model_validator

from studio.errors import FatalError, InvalidFile
from studio.limits import control_problem, worker_name_problem
from studio.source import Document, Strict, describe_error, load_file, problems_from

MACHINE_ENV = "RENDERLOOP_MACHINE_CONFIG"  # another settings file (tests use it)
ENV_PREFIX = "RENDERLOOP_"
SECRET_ENV = ("FAL_KEY",)  # secrets: from the environment only, never shown
FILE_NAME = "machine.yaml"

# The command-line flag for each setting that has one (named in messages).
FLAGS: dict[str, str] = {
    "worker.backend": "--backend",
    "worker.name": "--name",
    "worker.comfyui": "--comfyui",
    "worker.window": "--window",
    "worker.poll": "--poll",
    "worker.fal_url": "--fal-url",
    "worker.notify": "--notify",
    "worker.comfyui_start": "--comfyui-start",
    "worker.models_dir": "--models-dir",
    "worker.notify_format": "--notify-format",
    "worker.log_file": "--log-file",
    "worker.push_interval": "--push-interval",
    "worker.backend_wait": "--backend-wait",
    "mac.cooldown": "--cooldown",
    "mac.min_available_gb": "--min-available-gb",
    "mac.timeout": "--timeout",
    "mac.wake.mac": "--mac",
    "mac.wake.broadcast": "--broadcast",
    "mac.wake.port": "--port",
}

# What an unset setting means, as `renderloop config` says it.
UNSET: dict[str, str] = {
    "worker.poll": "12 s to a remote over the network; a remote on this disk is watched",
    "worker.fal_url": "https://queue.fal.run",
    "worker.push_interval": "0 s to a remote on this disk, 10 s (at most 6 pushes a minute) to any other",
    "worker.log_file": "the console only",
    "mac.mflux_bin": "found on PATH",
}

BackendName = Literal["comfyui", "fal", "mflux", "placeholder"]  # each built by win_side.backends.BACKENDS
NotifyFormat = Literal["json", "ntfy", "slack", "discord"]  # the bodies a webhook POST can have (win_side.notify)


def public_url(url: str) -> str:
    """``url`` as it may be logged, shown or committed: a user name and password in it become ``***@``.

    The server is still reached with them (``requests`` and the websocket send them as basic auth); only
    what is written anywhere loses them.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def is_http_url(url: str) -> bool:
    """``url`` is an http(s) URL with a host (and a port, if it names one, that is a number).

    The one URL check: this machine's settings and the backends (``win_side.backends.http``) ask it.
    """
    try:
        parts = urlsplit(url)
        parts.port  # a ValueError when the port is not a number
    except ValueError:  # "http://[::1": an unclosed address
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _url(value: str, what: str, example: str = "http://127.0.0.1:8188", given: Optional[str] = None) -> str:
    """An http(s) URL with a host, nothing around it (``given``: the value as written, for the message)."""
    value = value.strip()
    if not is_http_url(value) or _spaced(value):
        raise ValueError(f"{what} {value if given is None else given!r} is not an http(s) URL like {example}")
    return value.rstrip("/")


def _spaced(value: str) -> bool:
    """``value`` holds a space or a character no one-line value may (studio.limits' one rule)."""
    return any(c.isspace() for c in value) or control_problem(value) is not None


def _one_line(value: Optional[str], what: str) -> Optional[str]:
    """``value`` unless it is blank or holds a control character (then: it is not ``what``)."""
    if value is not None and (not value.strip() or control_problem(value) is not None):
        raise ValueError(f"{value!r} is not {what}")
    return value


class WakeTarget(Strict):
    """Wake-on-LAN for the worker (`renderloop wake` on the Mac)."""

    mac: str  # the worker's network card, e.g. AA:BB:CC:DD:EE:FF
    broadcast: str = "255.255.255.255"  # the LAN's broadcast address, e.g. 192.168.1.255
    port: int = Field(default=9, gt=0, lt=65536)

    @field_validator("mac", mode="before")
    @classmethod
    def _mac_quoted(cls, value: object) -> object:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(
                'put the MAC address in quotes, like mac: "AA:BB:CC:DD:EE:FF" (unquoted, YAML reads it as a number)'
            )
        return value

    @field_validator("mac")
    @classmethod
    def _mac_shape(cls, value: str) -> str:
        digits = re.sub(r"[:\-.]", "", value.strip())
        if not re.fullmatch(r"[0-9A-Fa-f]{12}", digits):
            raise ValueError(
                f"{value!r} is not a MAC address: write six pairs of hex digits, like AA:BB:CC:DD:EE:FF"
            )
        return ":".join(digits[i : i + 2] for i in range(0, 12, 2)).upper()

    @field_validator("broadcast")
    @classmethod
    def _broadcast_shape(cls, value: str) -> str:
        if not value.strip() or _spaced(value.strip()):
            raise ValueError(f"broadcast {value!r} is not an address: write one like 192.168.1.255")
        return value.strip()

    @property
    def mac_bytes(self) -> bytes:
        return bytes.fromhex(self.mac.replace(":", ""))


class WorkerMachine(Strict):
    """The GPU box: `renderloop worker`."""

    backend: BackendName = "comfyui"  # where images are rendered
    # This worker's name in records and commit trailers: a plain token (default: the host name).
    name: Optional[str] = None
    # ComfyUI servers, each image to the first free one.
    comfyui: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8188"])
    # A command that starts ComfyUI when it is not answering (run without a shell; a .bat via cmd /c).
    comfyui_start: Optional[str] = None
    window: int = Field(default=2, ge=1, le=64)  # images queued ahead on each server
    # Seconds between checks of a remote over the network (default 12; a remote on this disk is watched).
    poll: Optional[float] = Field(default=None, gt=0, le=3600)
    backstop: float = Field(default=60.0, gt=0, le=86400)  # slow periodic check behind the watcher
    # fal's queue host (default https://queue.fal.run); the key comes from FAL_KEY only.
    fal_url: Optional[str] = None
    # The longest wait for one fal image, in seconds: fal bills what it renders.
    fal_timeout: float = Field(default=600.0, gt=0, le=86400)
    notify: Optional[str] = None  # a webhook told when a batch finishes (a secret: never printed whole)
    notify_format: NotifyFormat = "json"  # the body of that POST
    models_dir: Optional[str] = None  # ComfyUI's models folder: missing means a drive not mounted
    log_file: Optional[str] = None  # where the worker also writes its log (rotated at 5 MB, 3 kept)
    # Seconds between two pushes at least (None: 0 to a remote on this disk, 10 to any other).
    push_interval: Optional[float] = Field(default=None, ge=0, le=3600)
    # With --once: how long to wait for a backend that does not answer before giving up.
    backend_wait: float = Field(default=60.0, ge=0, le=86400)

    @model_validator(mode="before")
    @classmethod
    def _no_secret(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(str(k).lower() in ("fal_key", "key", "api_key") for k in data):
            raise ValueError("the fal key is read from the environment only (FAL_KEY): remove it from this file")
        return data

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: Optional[str]) -> Optional[str]:
        problem = None if value is None else worker_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("comfyui", mode="before")
    @classmethod
    def _one_url(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value  # one URL, as RENDERLOOP_WORKER_COMFYUI takes it

    @field_validator("comfyui")
    @classmethod
    def _comfyui_urls(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one ComfyUI server, like http://127.0.0.1:8188")
        # host:port alone means http://host:port, as ComfyUI prints it
        return [_url(url if "://" in url else "http://" + url.strip(), "ComfyUI server", given=url) for url in value]

    @field_validator("fal_url")
    @classmethod
    def _fal_url(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else _url(value, "fal URL", "https://queue.fal.run")

    @field_validator("notify")
    @classmethod
    def _webhook(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else _url(value, "webhook", "https://ntfy.sh/my-studio")

    @field_validator("comfyui_start", "models_dir", "log_file")
    @classmethod
    def _some_text(cls, value: Optional[str]) -> Optional[str]:
        return _one_line(value, "a path or command")


class MacMachine(Strict):
    """The person's computer: `renderloop wake` and `renderloop local` (mflux)."""

    wake: Optional[WakeTarget] = None
    # The folder holding the mflux-generate programs (default: found on PATH).
    mflux_bin: Optional[str] = None
    cooldown: float = Field(default=15.0, ge=0, le=3600)  # pause between two mflux runs
    min_available_gb: float = Field(default=8.0, ge=0)  # wait for this much free memory...
    memory_wait: float = Field(default=600.0, ge=0, le=86400)  # ...for at most this long
    timeout: float = Field(default=1800.0, gt=0, le=86400)  # kill a run that takes longer

    @field_validator("mflux_bin")
    @classmethod
    def _folder(cls, value: Optional[str]) -> Optional[str]:
        return _one_line(value, "a folder")


class MachineSettings(Strict):
    version: Literal[1] = 1
    worker: WorkerMachine = Field(default_factory=WorkerMachine)
    mac: MacMachine = Field(default_factory=MacMachine)


Source = Literal["flag", "env", "file", "default"]


@dataclass
class Machine:
    """The effective settings of this machine, and where each came from."""

    settings: MachineSettings
    path: Path
    sources: dict[str, Source] = field(default_factory=dict)  # dotted setting -> where it came from

    @property
    def worker(self) -> WorkerMachine:
        return self.settings.worker

    @property
    def mac(self) -> MacMachine:
        return self.settings.mac

    def source(self, key: str) -> Source:
        return self.sources.get(key, "default")



def machine_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    """Where this machine's settings file is (it need not exist)."""
    environ = os.environ if environ is None else environ
    given = environ.get(MACHINE_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    return Path(platformdirs.user_config_dir("renderloop", appauthor=False)) / FILE_NAME


def leaves(model: type[BaseModel] = MachineSettings, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every setting, as a path (``("worker", "comfyui")``), sections and ``wake`` opened up."""
    out: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        if name == "version":
            continue
        sub = _model_of(info.annotation)
        out += leaves(sub, prefix + (name,)) if sub is not None else [prefix + (name,)]
    return out


def env_name(leaf: tuple[str, ...]) -> str:
    return ENV_PREFIX + "_".join(part.upper() for part in leaf)


def _model_of(annotation: Any) -> Optional[type[BaseModel]]:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _annotation(leaf: tuple[str, ...]) -> Any:
    model: type[BaseModel] = MachineSettings
    for part in leaf[:-1]:
        sub = _model_of(model.model_fields[part].annotation)
        assert sub is not None
        model = sub
    return model.model_fields[leaf[-1]].annotation


def load_machine(
    flags: Optional[Mapping[str, object]] = None, environ: Optional[Mapping[str, str]] = None
) -> Machine:
    """This machine's settings: flags over the environment over machine.yaml over the defaults.

    ``flags`` maps a dotted setting (``"worker.comfyui"``) to the flag's value,
    None (or an empty list) when the flag was not given.  A bad file raises
    :class:`InvalidFile` (``machine.yaml:LINE: message``); a bad environment
    variable or flag raises :class:`FatalError` naming it.
    """
    environ = os.environ if environ is None else environ
    path = machine_path(environ)
    data, doc = _read_file(path)
    try:
        MachineSettings.model_validate(data)
    except ValidationError as exc:
        raise InvalidFile(problems_from(exc, doc)) from None
    sources: dict[str, Source] = {}
    for leaf in leaves():
        if _get(data, leaf) is not _MISSING:
            sources[".".join(leaf)] = "file"
    for leaf in leaves():
        name = env_name(leaf)
        text = environ.get(name)
        if text is None or not text.strip():
            continue
        _put(data, leaf, _from_text(leaf, text, name))
        sources[".".join(leaf)] = "env"
    for key, value in (flags or {}).items():
        if value is None or value == []:
            continue
        _put(data, tuple(key.split(".")), value)
        sources[key] = "flag"
    try:
        settings = MachineSettings.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, sources, environ, doc) from None
    return Machine(settings, path, sources)


_MISSING = object()


def _read_file(path: Path) -> tuple[dict[str, Any], Document]:
    display = str(path)
    if not path.exists():
        return {}, Document(display, {})
    if not path.is_file():
        raise FatalError(f"{display}: not a file (this machine's settings: see `renderloop config --path`)")
    try:
        doc = load_file(path, display, max_bytes=256 * 1024)
    except InvalidFile as exc:
        if [p.message for p in exc.problems] == ["file is empty"]:
            return {}, Document(display, {})
        raise
    if doc.data is None:
        return {}, doc
    if not isinstance(doc.data, dict):
        raise InvalidFile([doc.problem((), "machine.yaml must be a mapping with the sections worker: and mac:")])
    return doc.data, doc


def _get(data: Any, leaf: tuple[str, ...]) -> Any:
    for part in leaf:
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _put(data: dict[str, Any], leaf: tuple[str, ...], value: object) -> None:
    for part in leaf[:-1]:
        inner = data.get(part)
        if not isinstance(inner, dict):
            inner = data[part] = {}
        data = inner
    data[leaf[-1]] = value


def _from_text(leaf: tuple[str, ...], text: str, name: str) -> object:
    """An environment variable's text as the setting's type (lists: comma-separated)."""
    annotation = _annotation(leaf)
    raw: Union[str, list[str]] = text.strip()
    if typing.get_origin(annotation) is list or list in typing.get_args(annotation) or any(
        typing.get_origin(a) is list for a in typing.get_args(annotation)
    ):
        raw = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return TypeAdapter(annotation).validate_python(raw, strict=False)
    except ValidationError as exc:
        message = exc.errors(include_url=False)[0]["msg"]
        raise FatalError(f"environment variable {name}={text!r}: {message}") from None


def _explain(
    exc: ValidationError, sources: Mapping[str, Source], environ: Mapping[str, str], doc: Document
) -> FatalError:
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        key = next((k for k in sources if loc[: len(k.split("."))] == tuple(k.split("."))), "")
        source = sources.get(key)
        if source == "flag":
            lines.append(f"{FLAGS.get(key, key)}: {describe_error(error, ())}")
        elif source == "env":
            name = env_name(tuple(key.split(".")))
            lines.append(f"environment variable {name}={environ.get(name, '')!r}: {describe_error(error, ())}")
        else:
            lines.append(str(doc.problem(tuple(error["loc"]), describe_error(error, tuple(error["loc"])))))
    return FatalError("\n".join(lines))


def flag_hint(key: str) -> str:
    """`` (or pass --comfyui)`` for a setting with a flag, else nothing."""
    flag = FLAGS.get(key)
    return f" (or pass {flag})" if flag else ""


def shown(key: str, value: object) -> str:
    """A setting's value as `renderloop config` prints it: no passwords, no webhook tokens."""
    if value is None:
        return f"(not set: {UNSET[key]})" if key in UNSET else "(not set)"
    if isinstance(value, list):
        return ", ".join(shown(key, v) for v in value)
    if isinstance(value, BaseModel):
        return ", ".join(f"{k}={shown(key, v)}" for k, v in value.model_dump().items())
    text = str(value)
    if isinstance(value, str) and "://" in text:
        parts = urlsplit(public_url(text))
        if key == "worker.notify":  # a webhook's path or query is often its secret
            return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/… (path hidden)"
        return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")
    return text


def effective(machine: Machine, environ: Optional[Mapping[str, str]] = None) -> list[tuple[str, str, str]]:
    """(setting, value as shown, source) for every setting, and whether each secret is set."""
    environ = os.environ if environ is None else environ
    rows: list[tuple[str, str, str]] = []
    for leaf in leaves():
        key = ".".join(leaf)
        value: object = machine.settings
        for part in leaf:
            value = getattr(value, part) if value is not None else None
        if key == "worker.name" and value is None:
            rows.append((key, f"{socket.gethostname()} (the host name)", machine.source(key)))
            continue
        rows.append((key, shown(key, value), machine.source(key)))
    for name in SECRET_ENV:
        rows.append((name, "set (hidden)" if environ.get(name, "").strip() else "(not set)", "env"))
    return rows

