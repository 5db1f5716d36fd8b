"""``renders/<batch>/review.html``: a static contact sheet of a batch (``renderloop review --html``).

Every image with its spec line and the verdict typed in ``review.md``; the
verdicts are typed in the review, the sheet only shows them.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Optional

from mac_side.grid import layout
from mac_side.review import spec_line
from mac_side.review_update import Outcome
from studio.fsutil import write_text_atomic
from studio.layout import REVIEW_HTML_NAME, Studio
from studio.record import RenderRecord

def write_contact_sheet(studio: Studio, outcome: Outcome) -> Path:
    """``renders/<batch>/review.html``: a static grid of every image with its spec and verdict."""
    assert outcome.loaded is not None
    path = studio.batch_dir(outcome.batch) / REVIEW_HTML_NAME
    write_text_atomic(path, contact_sheet(outcome))
    return path


def contact_sheet(outcome: Outcome) -> str:
    """Plain images as a grid of cards; each swept prompt as a table, rows and columns named by its axes."""
    assert outcome.loaded is not None and outcome.facts is not None
    esc = html.escape
    blocks: list[str] = []
    cards: list[str] = []

    def card(slug: str) -> str:
        section = outcome.review.section(slug) if outcome.review is not None else None
        return _card(slug, outcome.records.get(slug), section.verdict if section else None, section.cues if section else [])

    for prompt_slug, jobs in outcome.loaded.groups():
        if not jobs[0].axes:
            cards.append(card(jobs[0].slug))
            continue
        if cards:
            blocks.append('<div class="grid">\n' + "\n".join(cards) + "\n</div>")
            cards = []
        grid = layout(prompt_slug, jobs)
        corner = f"{grid.row_axis} ↓ {grid.column_axis} →" if grid.row_axis else grid.column_axis
        head = f"<tr><th>{esc(corner)}</th>" + "".join(f"<th>{esc(label)}</th>" for label in grid.columns) + "</tr>"
        rows = [
            f"<tr><th>{esc(label)}</th>" + "".join(f"<td>{card(job.slug) if job else ''}</td>" for job in cells) + "</tr>"
            for label, cells in grid.rows
        ]
        blocks.append(f'<section class="compare" id="{esc(prompt_slug)}"><h2>{esc(prompt_slug)}</h2>'
                      f"<table>{head}{''.join(rows)}</table></section>")
    if cards:
        blocks.append('<div class="grid">\n' + "\n".join(cards) + "\n</div>")
    title = esc(f"Review: {outcome.batch}")
    return _PAGE.format(title=title, summary=esc(outcome.facts.summary()), cards="\n".join(blocks))


def _card(slug: str, record: Optional[RenderRecord], verdict: Optional[str], cues: list[str]) -> str:
    esc = html.escape
    if record is None:
        picture = '<div class="missing">waiting for the worker</div>'
        spec = ""
    elif record.status == "failed":
        kind, message = (record.error.kind, record.error.message) if record.error else ("backend-error", "")
        picture = f'<div class="missing failed">render failed<br>{esc(kind)}: {esc(message)}</div>'
        spec = spec_line(record).replace("\\", "")
    else:
        picture = f'<a href="{esc(slug)}.png"><img src="{esc(slug)}.png" alt="{esc(slug)}" loading="lazy"></a>'
        spec = spec_line(record).replace("\\", "")
    badge = f'<span class="verdict {esc(verdict)}">{esc(verdict)}</span>' if verdict else '<span class="verdict none">to judge</span>'
    cue_list = "".join(f"<li>{esc(cue)}</li>" for cue in cues)
    asked = ""
    if record is not None:  # what was asked, as rendered: the prompt with its cues, and the negative
        asked = f'<div class="prompt"><b>prompt:</b> {esc(record.spec.prompt)}</div>'
        if record.spec.negative.strip():
            asked += f'<div class="prompt"><b>negative:</b> {esc(record.spec.negative)}</div>'
    return (
        f'<figure id="{esc(slug)}">{picture}<figcaption><b>{esc(slug)}</b> {badge}'
        f'<div class="spec">{esc(spec)}</div>{asked}{f"<ul>{cue_list}</ul>" if cue_list else ""}</figcaption></figure>'
    )


_PAGE = """\
<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; background: #f4f4f2; color: #222; }}
h1 {{ font-size: 1.3rem; margin: 0 0 .2rem; }}
.summary {{ color: #555; margin-bottom: 1rem; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 1rem; }}
figure {{ margin: 0; background: #fff; border-radius: 6px; overflow: hidden; box-shadow: 0 1px 3px #0002; }}
img {{ width: 100%; display: block; }}
.missing {{ aspect-ratio: 4 / 3; display: grid; place-items: center; text-align: center; padding: 1rem; color: #777; background: #e8e8e4; }}
.failed {{ color: #a00; background: #fbeaea; }}
figcaption {{ padding: .5rem .7rem .7rem; }}
.spec {{ color: #666; font-size: 12px; }}
.prompt {{ font-size: 12px; margin-top: .2rem; }}
.verdict {{ float: right; font-size: 12px; padding: 0 .4rem; border-radius: 3px; background: #ddd; }}
.keep {{ background: #cdebd0; }} .reroll {{ background: #fbe7b5; }} .reject {{ background: #f4c7c7; }}
ul {{ margin: .3rem 0 0; padding-left: 1.1rem; }}
.compare {{ margin: 1.5rem 0; overflow-x: auto; }}
.compare h2 {{ font-size: 1.1rem; margin: 0 0 .5rem; }}
.compare table {{ border-spacing: .6rem; }}
.compare th {{ font-weight: 600; color: #444; text-align: center; white-space: nowrap; }}
.compare td {{ vertical-align: top; width: 260px; }}
</style>
<h1>{title}</h1>
<div class="summary">{summary} · written by <code>renderloop review --html</code>; verdicts are typed in review.md</div>
{cards}
</html>
"""
