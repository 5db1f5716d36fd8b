"""Scaffold a batch file (``renderloop new BATCH [--rerolls]``).

Without ``--rerolls`` it writes a commented example for the studio's first
model (or ``--model``).  With ``--rerolls`` it gathers every slug whose
latest verdict in the ledger is ``reroll``: each keeps its prompt and
settings, gets a new seed, and carries its cues (the batch resolver appends
them to the prompt).  The file written always validates.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from studio.batch import Job, LoadedBatch, PromptEntry, batch_id_of, load_batch_bytes
from studio.clock import iso, utcnow
from studio.config import StudioConfig, load_config
from studio.errors import FatalError, InvalidFile
from studio.fsutil import write_text_atomic
from studio.inventory import Inventory, load_batches, records
from studio.layout import Studio, batch_id_problem, checked_batch_id, open_studio
from studio.ledger import Ledger, LedgerLine, latest_by_slug
from studio.spec import SEED_MAX, derive_seed

# Settings a reroll carries when its source set them (the model's defaults apply otherwise).
CARRIED = ("negative", "steps", "cfg", "sampler", "scheduler", "backend")
HOISTED = ("model", "width", "height")  # written once for the batch when most prompts share them


@dataclass
class Written:
    """The batch file :func:`new_batch` wrote: the example, or the rerolls gathered."""

    rel: str
    loaded: LoadedBatch
    gathered: Optional["Gathered"] = None  # None for the example


def new_batch(
    repo: Path, batch: str, *, rerolls: bool, model: Optional[str], force: bool,
    compare: Optional[list[str]] = None, source: Optional[str] = None,
) -> Written:
    studio = open_studio(repo)
    checked_batch_id(batch)
    config = load_config(studio)
    if model is not None and model not in config.models:
        raise FatalError(f"unknown model {model!r}; renderloop.yaml has {', '.join(sorted(config.models))}")
    path = studio.inside(studio.batches_dir) / f"{batch}.yaml"
    rel = f"batches/{batch}.yaml"
    _check_free(studio, batch, path, force)
    if compare is not None:
        gathered = None
        text = compare_text(batch, _source_batch(studio, config, source, batch), compare, config)
    elif rerolls:
        gathered = gather_rerolls(studio, config, batch)
        text = rerolls_text(batch, gathered, model, config)
    else:
        gathered = None
        text = scaffold_text(batch, model or next(iter(config.models)), config)
    loaded = _validated(text, rel, config)
    write_text_atomic(path, text)
    return Written(rel, loaded, gathered)


def _check_free(studio: Studio, batch: str, path: Path, force: bool) -> None:
    for other in studio.batch_files():
        if batch_id_of(other) == batch and other.name != path.name:
            raise FatalError(f"{studio.rel(other)} already defines batch {batch!r}: choose another name")
    if path.exists() and not force:
        raise FatalError(f"{studio.rel(path)} already exists: use --force to overwrite it")


def _validated(text: str, rel: str, config: StudioConfig) -> LoadedBatch:
    try:
        return load_batch_bytes(text.encode("utf-8"), rel, config)
    except InvalidFile as exc:
        # Only a carried size the chosen --model does not allow can get here.
        raise FatalError(f"the batch would not be valid, nothing written:\n{exc}") from None


# --- the example -----------------------------------------------------------------------------


def scaffold_text(batch: str, model: str, config: StudioConfig) -> str:
    settings = config.models[model]
    others = ", ".join(name for name in config.models if name != model) or "none"
    steps = f"{settings.steps}" if settings.steps is not None else "the backend's"
    return f"""\
# Batch {batch!r}: commit and push this file to render it; each prompt becomes
# renders/{batch}/<slug>.png. Every key is explained in the README ("Batch files").
version: 1
model: {model}  # for every prompt unless it names another: {others}
width: {settings.width}  # the default size: multiples of 8, {settings.min_side}-{settings.max_side} per side
height: {settings.height}  # and at most {settings.max_pixels} pixels for {model}
# steps: {steps}  # optional: {model}'s own default otherwise
# negative: ""  # optional negative prompt
prompts:
  - slug: first-image  # names the image: lowercase letters, digits, single hyphens
    prompt: "A lighthouse on a cliff at dusk, editorial illustration"
    archetype: hero  # optional free tag: `renderloop stats` gives the keep rate by archetype
    # seed: 1234  # optional: derived from the batch and slug when absent, never random
  - slug: second-image
    prompt: "A stack of index cards on a wooden desk, soft morning light"
    # model, width, height, steps, negative, cfg, sampler, scheduler: any may be set per prompt
"""


# --- rerolls -----------------------------------------------------------------------------------


@dataclass
class Reroll:
    slug: str
    source: str  # the batch the verdict was given in
    verdict: LedgerLine
    entry: dict[str, Any]  # the prompt entry to write
    old_seed: Optional[int]


@dataclass
class Gathered:
    rerolls: list[Reroll]
    skipped: list[str]  # "slug (batch): why"


def gather_rerolls(studio: Studio, config: StudioConfig, batch: str) -> Gathered:
    """Every slug whose latest verdict is reroll, as prompt entries for ``batch``."""
    ledger = Ledger.read(studio.ledger_path)
    last = latest_by_slug(ledger.in_force().values())
    inventory = load_batches(studio, config)
    sent = _already_gathered(inventory, batch)
    gathered = Gathered([], [])
    for slug, verdict in last.items():
        if verdict.verdict != "reroll":
            continue
        into = sent.get(f"{verdict.batch}/{slug}")
        if into is not None:
            gathered.skipped.append(f"{slug} ({verdict.batch}): already gathered into batches/{into} (from: {verdict.batch}/{slug})")
            continue
        used = {l.seed for l in ledger.lines if l.slug == slug and l.seed is not None}
        reroll, why = _reroll(studio, inventory.batches.get(verdict.batch), verdict, batch, used)
        if reroll is None:
            gathered.skipped.append(f"{slug} ({verdict.batch}): {why}")
        else:
            gathered.rerolls.append(reroll)
    order = {name: i for i, name in enumerate(sorted(inventory.paths))}
    gathered.rerolls.sort(key=lambda r: (order.get(r.source, len(order)), r.source, _position(inventory, r)))
    return gathered


def _already_gathered(inventory: Inventory, batch: str) -> dict[str, str]:
    """``<batch>/<slug>`` -> the batch file a reroll of it was gathered into (``from:``), but ``batch`` itself."""
    sent: dict[str, str] = {}
    for name, loaded in inventory.batches.items():
        if name == batch:
            continue  # rewriting it (--force) gathers its rerolls again
        for entry in loaded.model.prompts:
            if entry.source is not None:
                sent.setdefault(entry.source, Path(loaded.path).name)
    return sent


def _position(inventory: Inventory, reroll: Reroll) -> int:
    loaded = inventory.batches.get(reroll.source)
    slugs = [j.slug for j in loaded.jobs] if loaded else []
    return slugs.index(reroll.slug) if reroll.slug in slugs else len(slugs)


def _reroll(
    studio: Studio, loaded: Optional[LoadedBatch], verdict: LedgerLine, batch: str, used: set[int]
) -> tuple[Optional[Reroll], str]:
    job = loaded.job(verdict.slug) if loaded else None
    if loaded is not None and job is not None:
        if verdict.spec_hash and job.spec_hash != verdict.spec_hash and verdict.batch != batch:
            return None, "its batch file was changed since the verdict, so it is being re-rendered there"
        entry = _entry_from_batch(loaded, job)
        old_seed = verdict.seed if verdict.seed is not None else job.spec.seed
        resolved = job.spec
        cues = list(entry.pop("cues", []))
    else:
        record = records(studio, verdict.batch).get(verdict.slug) if _safe_batch(verdict.batch) else None
        if record is None:
            return None, "neither its batch file nor its render record is left to take the prompt from"
        resolved = record.spec  # its prompt has the cues of that time applied; apply_cues adds none twice
        entry = {"prompt": resolved.prompt}
        entry.update({k: getattr(resolved, k) for k in CARRIED if getattr(resolved, k) not in (None, "")})
        old_seed = verdict.seed if verdict.seed is not None else resolved.seed
        cues = []
    entry = {
        "slug": verdict.slug,
        "from": f"{verdict.batch}/{verdict.slug}",
        "prompt": entry.pop("prompt"),
        "seed": _new_seed(batch, verdict.slug, used | ({old_seed} if old_seed is not None else set())),
        "model": resolved.model,
        "width": resolved.width,
        "height": resolved.height,
        **entry,
    }
    archetype = entry.pop("archetype", None) or verdict.archetype
    if archetype:
        entry["archetype"] = archetype
    cues = _merge_cues(cues, verdict.cues)
    if cues:
        entry["cues"] = cues
    return Reroll(verdict.slug, verdict.batch, verdict, entry, old_seed), ""


def _entry_from_batch(loaded: LoadedBatch, job: Job) -> dict[str, Any]:
    """The prompt as written (cues kept apart) with the batch-level settings it inherits (and its sweep set)."""
    entry: PromptEntry = next(p for p in loaded.model.prompts if p.slug == (job.prompt_slug or job.slug))
    out: dict[str, Any] = {"prompt": job.written_prompt or entry.prompt}
    for key in CARRIED:
        value = getattr(entry, key) if getattr(entry, key) is not None else getattr(loaded.model, key)
        if value is not None:
            out[key] = value
    for axis in job.axes:  # a swept image: the settings its combination gave it
        if axis.name in CARRIED:
            out[axis.name] = getattr(job.spec, axis.name)
    if entry.archetype:
        out["archetype"] = entry.archetype
    out["cues"] = list(entry.cues)
    return out


def _safe_batch(batch: str) -> bool:
    return batch_id_problem(batch) is None


def _new_seed(batch: str, slug: str, avoid: set[int]) -> int:
    """A seed from (new batch, slug), never one this slug was already rendered with."""
    seed = derive_seed(batch, slug)
    attempt = 0
    while seed in avoid:
        attempt += 1
        seed = derive_seed(batch, slug, f"reroll-{attempt}")
    assert 0 <= seed <= SEED_MAX
    return seed


def _merge_cues(earlier: list[str], new: list[str]) -> list[str]:
    """The cues of the source prompt then the reviewer's new ones, each once (case-insensitive)."""
    merged: list[str] = []
    seen: set[str] = set()
    for cue in [*earlier, *new]:
        key = cue.strip().lower()
        if key and key not in seen:
            seen.add(key)
            merged.append(cue.strip())
    return merged


def rerolls_text(batch: str, gathered: Gathered, model: Optional[str], config: StudioConfig) -> str:
    if not gathered.rerolls:
        why = "".join(f"\n  skipped {s}" for s in gathered.skipped)
        raise FatalError(f"no reroll left to gather, none or each already gathered into a batch: nothing to write{why}")
    entries = [dict(r.entry) for r in gathered.rerolls]
    if model is not None:  # --model: every reroll tries this model
        for entry in entries:
            entry["model"] = model
    top: dict[str, Any] = {"version": 1}
    for key in HOISTED:
        value, _ = Counter(e[key] for e in entries).most_common(1)[0]
        top[key] = value
        for entry in entries:
            if entry[key] == value:
                del entry[key]
    sources = Counter(r.source for r in gathered.rerolls)
    head = [
        f"# Rerolls gathered by `renderloop new {batch} --rerolls` on {iso(utcnow())}:",
        f"# {len(entries)} slugs whose latest verdict is reroll, from " + ", ".join(f"{b} ({n})" for b, n in sources.items()) + ".",
        "# Each keeps its prompt and settings, gets a new seed and carries its cues",
        "# (appended to the prompt when rendered). Edit freely, then commit and push.",
    ]
    body = _dump(top) + "prompts:\n"
    for reroll, entry in zip(gathered.rerolls, entries):
        was = f"seed {reroll.old_seed}" if reroll.old_seed is not None else "derived seed"
        who = f" by {reroll.verdict.reviewer}" if reroll.verdict.reviewer else ""
        body += f"  # from {reroll.source} ({was}): reroll{who} on {iso(reroll.verdict.at)}\n"
        body += _indent(_dump([entry]), "  ")
    return "\n".join(head) + "\n" + body


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100_000, default_flow_style=False)


def _indent(text: str, prefix: str) -> str:
    return "".join(prefix + line for line in text.splitlines(keepends=True))



# --- a comparison ----------------------------------------------------------------------------


def _source_batch(studio: Studio, config: StudioConfig, source: Optional[str], batch: str) -> LoadedBatch:
    if source is None:
        raise FatalError("--compare needs --from BATCH: the batch whose prompts to compare")
    checked_batch_id(source)
    if source == batch:
        raise FatalError(f"--from {source} is the batch being written: name a new batch")
    inventory = load_batches(studio, config)
    if source in inventory.invalid:
        raise FatalError(f"batch {source!r} is not valid: {inventory.invalid[source].problems[0]}")
    loaded = inventory.batches.get(source)
    if loaded is None:
        raise FatalError(f"no batch file batches/{source}.yaml")
    return loaded


def compare_text(batch: str, source: LoadedBatch, models: list[str], config: StudioConfig) -> str:
    """A batch rendering each prompt of ``source`` once per model: a ``model`` sweep over its prompts.

    Each prompt keeps its text, cues, archetype, size, negative and seed (the
    seed its first image was rendered with), so the models are compared on
    the same seed; steps, cfg, sampler and scheduler are each model's own.
    """
    for name in models:
        if name not in config.models:
            raise FatalError(f"unknown model {name!r}; renderloop.yaml has {', '.join(sorted(config.models))}")
    if len(set(models)) < 2:
        raise FatalError("--compare names two or more models, separated by commas: --compare flux-schnell,z-image-turbo")
    entries = []
    for prompt_slug, jobs in source.groups():
        job = jobs[0]
        entry: dict[str, Any] = {"slug": prompt_slug, "prompt": job.written_prompt or job.spec.prompt,
                                 "seed": job.spec.seed, "width": job.spec.width, "height": job.spec.height}
        if job.spec.negative:
            entry["negative"] = job.spec.negative
        if job.archetype:
            entry["archetype"] = job.archetype
        if job.cues:
            entry["cues"] = list(job.cues)
        entries.append(entry)
    head = [
        f"# Comparison written by `renderloop new {batch} --compare {','.join(models)} --from {source.batch}`:",
        f"# the {len(entries)} prompts of {source.batch}, each rendered by every model of the sweep, on the seed",
        "# and size it had there. Review the grids, then `renderloop stats --compare`.",
    ]
    body = _dump({"version": 1, "sweep": {"model": list(dict.fromkeys(models))}}) + "prompts:\n"
    body += _indent(_dump(entries), "  ")
    return "\n".join(head) + "\n" + body
