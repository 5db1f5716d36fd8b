"""Render records (``renders/<batch>/<slug>.json``) and batch error records."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from studio.errors import InvalidFile
from studio.fsutil import read_bounded
from studio.limits import MAX_RECORD_BYTES
from studio.spec import Spec

ErrorKind = Literal["invalid-spec", "missing-model", "backend-error", "out-of-memory", "timeout"]
Status = Literal["done", "failed"]


class RenderError(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    kind: ErrorKind
    message: str
    detail: Any = None


class RenderRecord(BaseModel):
    """What the worker rendered for one (batch, slug), and how."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    batch: str
    slug: str
    status: Status
    spec: Spec
    spec_hash: str
    backend: str
    backend_ids: dict[str, Union[str, int, float, None]] = Field(default_factory=dict)
    worker: str
    queued_at: Optional[datetime] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    render_seconds: Optional[float] = None  # None when cached
    cached: Optional[bool] = None  # true: the backend answered from its cache (nothing executed)
    png_sha256: Optional[str] = None
    cost_usd: Optional[float] = None
    error: Optional[RenderError] = None

    def to_json(self) -> str:
        return dump_json(self, omit_none=("cached",))


class StudioProblem(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    path: str
    line: int
    message: str


class StudioErrorRecord(BaseModel):
    """``renders/studio-error.json``: what stops the worker from rendering the studio, or some batch at all.

    An invalid ``renderloop.yaml`` (nothing can be planned), or a batch file
    whose name is not a batch id (it has no folder of its own for a
    batch-error record).  Committed, so the person sees it on their next
    pull; removed once fixed.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)

    status: Literal["invalid"] = "invalid"
    problems: list[StudioProblem]
    worker: str
    at: datetime

    def to_json(self) -> str:
        return dump_json(self)


class BatchProblem(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    line: int
    message: str


class BatchErrorRecord(BaseModel):
    """``renders/<batch>/batch-error.json``: the batch file could not be read."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    batch: str
    path: str
    status: Literal["invalid"] = "invalid"
    problems: list[BatchProblem]
    worker: str
    at: datetime
    file_sha: str  # git blob id of the bad file, so a fixed file clears the error

    def to_json(self) -> str:
        return dump_json(self)


def dump_json(model: BaseModel, omit_none: tuple[str, ...] = ()) -> str:
    """Records as files: two-space indent, fields in schema order, LF at the end.

    ``omit_none``: optional fields left out while unset (added later; older records stay byte-identical).
    """
    data = model.model_dump(mode="json")
    for name in omit_none:
        if data.get(name) is None:
            data.pop(name, None)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def try_read_record(path: Path) -> RenderRecord | None:
    """A record, or None when it is absent or unreadable (a worker will redo it).

    Unreadable includes a link, a device, a FIFO and a file over MAX_RECORD_BYTES:
    read with :func:`studio.fsutil.read_bounded`, never followed, never waited on.
    """
    try:
        return RenderRecord.model_validate_json(read_bounded(path, MAX_RECORD_BYTES))
    except (OSError, ValueError, ValidationError, InvalidFile):
        return None
