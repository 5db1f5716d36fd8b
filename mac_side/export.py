"""The latest kept image of each slug, as ``DIR/<slug>.png`` (``renderloop export DIR``).

An image is kept when the verdict in force for its (batch, slug) is
``keep``.  When one slug was kept in several batches, the latest keep is
``DIR/<slug>.png`` and each other one ``DIR/<batch>--<slug>.png``: no kept
image is ever dropped.  The image copied is the one the person saw when they kept it (the PNG
whose sha256 the ledger line records, found in the checkout or in git
history), else the current render.  Nothing is written anywhere but DIR,
and each file is written atomically.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from studio import git, thin
from studio.errors import FatalError, InvalidFile
from studio.fsutil import read_or_none, write_atomic
from studio.layout import Studio, open_studio
from studio.ledger import Ledger, LedgerLine, latest_by_slug
from studio.limits import MAX_PNG_BYTES
from studio.record import sha256_hex

HISTORY_LIMIT = 200  # versions of one PNG searched for the kept one


@dataclass
class Exported:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    current_instead: list[str] = field(default_factory=list)  # kept image not found: the current render
    skipped: list[str] = field(default_factory=list)  # "slug (batch): why"
    also: dict[str, list[str]] = field(default_factory=dict)  # slug kept in several batches -> the other files written
    brought_in: list[str] = field(default_factory=list)  # batches whose images a thin clone had left out

    @property
    def total(self) -> int:
        return len(self.written) + len(self.unchanged)


def export(repo: Path, dest: Path) -> Optional[Exported]:
    """Copy each slug's kept image into ``dest``; None when nothing is kept yet."""
    studio = open_studio(repo)
    target = Path(dest).resolve()
    if target.exists() and not target.is_dir():
        raise FatalError(f"{dest}: not a folder")
    ledger = Ledger.read(studio.ledger_path)
    kept = latest_kept(ledger)
    if not kept:
        return None
    target.mkdir(parents=True, exist_ok=True)
    result = Exported()
    others = [line for line in ledger.in_force().values() if line.verdict == "keep" and kept[line.slug] is not line]
    files = [(slug, slug, line) for slug, line in sorted(kept.items())]
    files += [(f"{line.batch}--{line.slug}", line.slug, line) for line in sorted(others, key=lambda l: (l.slug, l.batch))]
    wanted = {line.batch for _, _, line in files} & thin.left_out(studio.root)
    result.brought_in = thin.open_batches(studio.root, sorted(wanted))  # a thin clone: one fetch for them all
    for name, slug, line in files:
        png, how = kept_png(studio, line)
        if png is None:
            result.skipped.append(f"{slug} ({line.batch}): {how}")
            continue
        if how == "current":
            result.current_instead.append(f"{slug} ({line.batch})")
        _write(target, name, png, result)
        if name != slug:
            result.also.setdefault(slug, []).append(f"{name}.png")
    return result


def latest_kept(ledger: Ledger) -> dict[str, LedgerLine]:
    """Per slug, the latest keep verdict still in force for its (batch, slug)."""
    return latest_by_slug(line for line in ledger.in_force().values() if line.verdict == "keep")


def kept_png(studio: Studio, line: LedgerLine) -> tuple[Optional[bytes], str]:
    """The PNG kept by ``line`` and how it was found ("kept" or "current"), or None and why not."""
    try:
        path = studio.png_path(line.batch, line.slug)
    except FatalError as exc:
        return None, str(exc)
    try:
        current = read_or_none(path, MAX_PNG_BYTES, studio.root)
    except InvalidFile:  # a link (which could lead to any file of this machine), a device, too large
        current = None
    if current is not None and (line.png_sha256 is None or sha256_hex(current) == line.png_sha256):
        return current, "kept"
    if line.png_sha256 is not None:
        older = _from_history(studio, studio.rel(path), line.png_sha256)
        if older is not None:
            return older, "kept"
    if current is not None:
        return current, "current"
    return None, "kept, but the image is missing"


def _from_history(studio: Studio, rel: str, sha256: str) -> Optional[bytes]:
    """The version of ``rel`` in this branch's history whose sha256 is ``sha256``."""
    code, out, _ = git.run(
        studio.root, "log", f"--max-count={HISTORY_LIMIT}", "--format=%H", "--", rel, check=False
    )
    if code != 0:
        return None
    seen: set[str] = set()
    with git.ObjectReader(studio.root) as reader:
        for commit in out.split():
            header = reader.blob_header(f"{commit}:{rel}")
            if header is None or header[0] in seen:
                continue
            blob = header[0]
            seen.add(blob)
            data = reader.blob(blob)
            if sha256_hex(data) == sha256:
                return data
    return None


def _write(target: Path, name: str, png: bytes, result: Exported) -> None:
    path = target / f"{name}.png"
    if path.parent != target:  # a slug is never a path; the ledger's schema already ensures it
        raise FatalError(f"refusing to write {path} outside {target}")
    if path.is_file() and not path.is_symlink() and path.read_bytes() == png:
        result.unchanged.append(name)
        return
    write_atomic(path, png)  # replaces a symbolic link itself, never the file it points to
    result.written.append(name)

