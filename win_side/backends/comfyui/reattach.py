"""Re-attach, never repeat: which prompts on a ComfyUI server are ours, and what to do with each.

Every prompt the worker submits carries ``extra_data.extra_pnginfo.renderloop``
(batch, slug, spec_hash, spec: the PNG's text chunk).  ComfyUI keeps
``extra_data`` in its queue items and history entries (both
``[number, prompt_id, prompt, extra_data, outputs]``, see
``shared/comfyui/captures/queue_busy_delete_interrupt.json``), so a worker
that starts again (or finds a server again) can tell its own prompts from
anyone else's:

* queued or running and still wanted (same batch, slug and spec hash): wait
  for it and take its image: *held*;
* finished with success while nobody waited, still wanted: take its image
  from the history: *held* too;
* queued and no longer wanted (the spec changed, the image is committed):
  delete it from the queue; running and no longer wanted: interrupt it.

Pure functions over ComfyUI's answers; the lane does the HTTP.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

Key = tuple[str, str]


@dataclass(frozen=True)
class Tag:
    key: Key
    spec_hash: str


@dataclass
class Holdings:
    """What a ComfyUI server holds of ours: the prompts to take over, withdraw or stop."""

    held: dict[Key, str] = field(default_factory=dict)  # wanted image -> the prompt id that renders (rendered) it
    delete: list[str] = field(default_factory=list)  # queued, no longer wanted
    interrupt: list[str] = field(default_factory=list)  # running, no longer wanted


def tag_of(item: Any) -> Optional[Tag]:
    """The renderloop tag of a queue item or a history entry's ``prompt``, None when it is not ours."""
    if not isinstance(item, (list, tuple)) or len(item) < 4 or not isinstance(item[3], dict):
        return None
    info = item[3].get("extra_pnginfo")
    ours = info.get("renderloop") if isinstance(info, dict) else None
    if not isinstance(ours, dict):
        return None
    batch, slug, spec_hash = ours.get("batch"), ours.get("slug"), ours.get("spec_hash")
    if not all(isinstance(value, str) and value for value in (batch, slug, spec_hash)):
        return None
    return Tag((str(batch), str(slug)), str(spec_hash))


def survey(queue: Mapping[str, Any], history: Mapping[str, Any], wanted: Mapping[Key, str],
           inflight: set[str]) -> Holdings:
    """What to do with our prompts on a server (``inflight``: prompt ids this process is waiting on already)."""
    found = Holdings()
    for section, unwanted in (("queue_running", found.interrupt), ("queue_pending", found.delete)):
        for item in queue.get(section) or []:
            tag = tag_of(item)
            if tag is None or str(item[1]) in inflight:
                continue
            if wanted.get(tag.key) == tag.spec_hash and tag.key not in found.held:
                found.held[tag.key] = str(item[1])
            else:
                unwanted.append(str(item[1]))
    for prompt_id, entry in history.items():
        if not isinstance(entry, dict) or prompt_id in inflight:
            continue
        tag = tag_of(entry.get("prompt"))
        status = entry.get("status")
        status = status if isinstance(status, dict) else {}
        if (tag is not None and wanted.get(tag.key) == tag.spec_hash and tag.key not in found.held
                and status.get("status_str") == "success"):
            found.held[tag.key] = str(prompt_id)
    return found
