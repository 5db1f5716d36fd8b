"""How the worker turns a backend's answer into a render record (issue 11: timestamps, cached answers)."""
from __future__ import annotations

from datetime import datetime, timezone

from tests.test_comfyui_backend import request
from win_side.backends.base import RenderResult
from win_side.reconcile import render_record

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
       b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\r\xefF\xb8\x00\x00\x00\x00IEND\xaeB`\x82")


def at(seconds: int) -> datetime:
    return datetime(2026, 1, 5, 12, 0, seconds, tzinfo=timezone.utc)


def test_started_is_never_before_queued() -> None:
    """Seconds-precision timestamps: a render computed back from its finish can land before its queueing."""
    result = RenderResult(png=PNG, started_at=at(0), finished_at=at(6), render_seconds=5.6)
    record, png = render_record(request("early"), result, queued_at=at(1), backend="comfyui", worker="w")
    assert record.queued_at == at(1) and record.started_at == at(1) and record.finished_at == at(6)
    assert record.render_seconds == 5.6 and record.cached is None and png == PNG


def test_a_cached_answer_is_recorded_as_cached_not_as_a_zero_second_render() -> None:
    result = RenderResult(png=PNG, started_at=at(3), finished_at=at(3), render_seconds=0.0, cached=True)
    record, _ = render_record(request("again"), result, queued_at=at(3), backend="comfyui", worker="w")
    assert record.status == "done" and record.cached is True and record.render_seconds is None
