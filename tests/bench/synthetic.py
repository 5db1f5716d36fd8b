"""A synthetic studio at the size of a year's work, built in seconds with ``git fast-import``.

:func:`build` makes a bare remote holding ``renders`` images of realistic size
(1344 x 768 PNGs of about 1.3 MB that do not compress or delta against each
other, as real renders do not) and a ledger of ``ledger_lines`` verdicts, in
exactly the formats the worker and the pre-commit hook write: the batch files
are loaded by :func:`studio.batch.load_batch_bytes`, each render is a
:class:`~studio.record.RenderRecord` committed with the worker's own
:func:`~win_side.commits.render_message` (one commit per image, as the worker
commits), and every ledger line is what :meth:`LedgerLine.to_line` writes,
appended over several commits so that ``ledger verify`` has a history to walk.

Speed: the image rows are fresh random bytes stored uncompressed (deflate's
stored blocks) followed by flat rows compressed once and reused; fast-import
writes with ``pack.compression=0``, so nothing spends time compressing noise.
Ledger lines are formatted from one validated template (checked against
pydantic in the smoke test).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import random
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Iterator

from mac_side.init import init
from studio import git
from studio.batch import Job, load_batch_bytes
from studio.config import load_config
from studio.layout import LEDGER_NAME, Studio
from studio.ledger import LedgerLine
from studio.record import RenderRecord, sha256_hex
from win_side.commits import render_message

WIDTH, HEIGHT = 1344, 768
NOISE_ROWS = 320  # rows of random pixels: 320 * (1 + 1344 * 3) bytes, about 1.29 MB stored as is
MODEL = "z-image-turbo"
PER_BATCH = 20
FORMAT = 3  # bump when what build() writes changes (3: renderloop.yaml without machine settings): cached studios are rebuilt
LEDGER_COMMITS = 10  # the ledger grows over this many review commits
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


class PngMaker:
    """1344 x 768 RGB PNGs, each different in every byte of its noise: no compression or delta helps."""

    def __init__(self) -> None:
        row = 1 + WIDTH * 3
        self.noise_size = NOISE_ROWS * row
        flat = bytes(row * (HEIGHT - NOISE_ROWS))  # filter 0, black pixels
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        self.flat = flat
        self.flat_deflated = packer.compress(flat) + packer.flush()  # the final block
        header = b"\x89PNG\r\n\x1a\n"
        self.head = header + _chunk(b"IHDR", struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0))
        self.tail = _chunk(b"IEND", b"")

    def make(self, rng: random.Random) -> bytes:
        noise = bytearray(rng.randbytes(self.noise_size))
        noise[:: 1 + WIDTH * 3] = bytes(NOISE_ROWS)  # each row starts with filter type 0
        stored = zlib.compressobj(0, zlib.DEFLATED, -15)
        blocks = stored.compress(bytes(noise)) + stored.flush(zlib.Z_FULL_FLUSH)  # not final: the flat rows follow
        adler = zlib.adler32(self.flat, zlib.adler32(noise))
        idat = b"\x78\x01" + blocks + self.flat_deflated + struct.pack(">I", adler)
        return self.head + _chunk(b"IDAT", idat) + self.tail


def ulid(at: datetime, rng: random.Random) -> str:
    value = (int(at.timestamp() * 1000) << 80) | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def batch_yaml(name: str, count: int) -> str:
    lines = ["version: 1", f"model: {MODEL}", f"width: {WIDTH}", f"height: {HEIGHT}", "prompts:"]
    for index in range(count):
        lines += [
            f"  - slug: {name}-{index:03d}",
            f'    prompt: "{name} image {index}, editorial illustration, gouache"',
            f"    archetype: {('essay', 'diagram', 'portrait')[index % 3]}",
        ]
    return "\n".join(lines) + "\n"


def record_of(job: Job, png: bytes, at: datetime) -> RenderRecord:
    return RenderRecord(
        batch=job.batch, slug=job.slug, status="done", spec=job.spec, spec_hash=job.spec_hash,
        backend="comfyui", backend_ids={"prompt_id": f"{job.batch}-{job.slug}"}, worker="bench",
        queued_at=at, started_at=at, finished_at=at + timedelta(seconds=18), render_seconds=18.0,
        png_sha256=sha256_hex(png),
    )


class LedgerWriter:
    """Ledger lines exactly as :meth:`LedgerLine.to_line` writes them, formatted without pydantic."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def line(self, index: int, job: Job | None, png_sha256: str | None) -> bytes:
        at = START + timedelta(seconds=30 * index)
        # with no renders: 2,000 images of batches whose files are gone, judged again and again
        batch, slug = (job.batch, job.slug) if job else (f"old-{index % 2000 // 20:03d}", f"gone-{index % 20:03d}")
        verdict = ("keep", "reroll", "keep", "reject")[index % 4]
        data = {
            "id": ulid(at, self.rng),
            "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "batch": batch,
            "slug": slug,
            "verdict": verdict,
            "cues": ["warmer light"] if verdict == "reroll" else [],
            "model": job.spec.model if job else MODEL,
            "seed": job.spec.seed if job else index,
            "spec_hash": job.spec_hash if job else None,
            "png_sha256": png_sha256,
            "archetype": job.archetype if job else None,
            "reviewer": "bench",
        }
        return (json.dumps(data, ensure_ascii=False, separators=(", ", ": ")) + "\n").encode("utf-8")


@dataclass
class Synthetic:
    """What :func:`build` made: the bare remote and the facts a benchmark checks against."""

    remote: Path
    batches: list[str] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    png_sha: dict[tuple[str, str], str] = field(default_factory=dict)
    ledger_lines: int = 0
    branch: str = "main"


def build(root: Path, renders: int, ledger_lines: int, *, per_batch: int = PER_BATCH, seed: int = 13) -> Synthetic:
    """A bare remote at ``root/remote.git``: ``renders`` rendered images in batches of ``per_batch``, and
    ``ledger_lines`` verdicts on them (rerolls included) appended over :data:`LEDGER_COMMITS` commits."""
    rng = random.Random(seed)
    work = root / "seed"
    with contextlib.redirect_stdout(io.StringIO()):
        init(work)
    branch = "main"  # whatever init.defaultBranch says: the benchmark rig pushes to main
    git.run(work, "branch", "-M", branch)
    studio = Studio.at(work)
    config = load_config(studio)
    result = Synthetic(root / "remote.git", branch=branch)
    batch_count = -(-renders // per_batch) if renders else 0
    person = "Person <person@example.com>"
    worker = "renderloop worker <worker@example.com>"
    pngs = PngMaker()
    made = 0
    with FastImport(work, branch, "1m") as stream:  # images: streamed, never compared for a delta
        for number in range(batch_count):
            name = f"b{number:04d}"
            count = min(per_batch, renders - made)
            text = batch_yaml(name, count).encode("utf-8")
            rel = f"batches/{name}.yaml"
            loaded = load_batch_bytes(text, rel, config)
            stream.commit(f"batch {name}", [(rel, stream.blob(text))], person)
            result.batches.append(name)
            for job in loaded.jobs:
                png = pngs.make(rng)
                record = record_of(job, png, stream.clock)
                files = [(f"renders/{name}/{job.slug}.png", stream.blob(png)),
                         (f"renders/{name}/{job.slug}.json", stream.blob(record.to_json().encode("utf-8")))]
                stream.commit(render_message(record), files, worker)
                result.jobs.append(job)
                result.png_sha[(job.batch, job.slug)] = record.png_sha256 or ""
            made += count
    git.run(root, "clone", "--quiet", "--bare", str(work), str(result.remote))  # hard links: no copy
    serve(result.remote)
    shutil.rmtree(work, ignore_errors=True)
    add_ledger(result, ledger_lines, seed=seed)
    return result


def add_ledger(made: Synthetic, lines: int, *, seed: int = 13) -> None:
    """Append ``lines`` verdicts on ``made``'s renders to its ledger, over :data:`LEDGER_COMMITS` commits."""
    if lines:
        with FastImport(made.remote, made.branch, "2g") as stream:  # each version a delta of the one before
            _write_ledger(stream, made, lines, random.Random(seed + 1), "Person <person@example.com>")
    made.ledger_lines += lines


def with_ledger(made: Synthetic, root: Path, lines: int) -> Synthetic:
    """A copy of ``made`` (hard-linked, instant) at ``root/remote.git`` with ``lines`` more verdicts."""
    copy = Synthetic(root / "remote.git", list(made.batches), list(made.jobs), dict(made.png_sha),
                     made.ledger_lines, made.branch)
    root.mkdir(parents=True, exist_ok=True)
    git.run(root, "clone", "--quiet", "--bare", str(made.remote), str(copy.remote))
    serve(copy.remote)
    add_ledger(copy, lines)
    return copy


def serve(remote: Path) -> None:
    """Serve partial clones (``--filter=blob:none``), as hosted remotes do; never compress noise."""
    for key, value in (("pack.compression", "0"), ("uploadpack.allowFilter", "true"),
                       ("uploadpack.allowAnySHA1InWant", "true")):
        git.run(remote, "config", key, value)


class FastImport:
    """One ``git fast-import`` run appending commits to ``branch``."""

    def __init__(self, work: Path, branch: str, big_file_threshold: str) -> None:
        self.branch = branch
        self.work = work
        self.parent = git.rev_parse(work, f"refs/heads/{branch}") or ""
        self.clock = START + timedelta(seconds=20 * int(git.out(work, "rev-list", "--count", self.parent)))
        self.mark = 0
        self.proc = subprocess.Popen(
            ["git", "-c", "pack.compression=0", "-c", "core.compression=0", "-c", "fastimport.unpackLimit=0", "fast-import", "--quiet",
             f"--big-file-threshold={big_file_threshold}", "--depth=50"],
            cwd=work, stdin=subprocess.PIPE,
        )
        assert self.proc.stdin is not None
        self.out: IO[bytes] = self.proc.stdin

    def blob(self, data: bytes) -> int:
        self.mark += 1
        self.out.write(b"blob\nmark :%d\ndata %d\n" % (self.mark, len(data)))
        self.out.write(data)
        self.out.write(b"\n")
        return self.mark

    def commit(self, message: str, files: list[tuple[str, int]], who: str) -> None:
        self.clock += timedelta(seconds=20)
        stamp = f"{int(self.clock.timestamp())} +0000"
        self.mark += 1
        data = message.encode("utf-8") + b"\n"
        self.out.write(f"commit refs/heads/{self.branch}\nmark :{self.mark}\n".encode())
        self.out.write(f"author {who} {stamp}\ncommitter {who} {stamp}\ndata {len(data)}\n".encode() + data)
        self.out.write(f"from {self.parent}\n".encode())
        for path, blob in files:
            self.out.write(f"M 100644 :{blob} {path}\n".encode())
        self.out.write(b"\n")
        self.parent = f":{self.mark}"

    def __enter__(self) -> "FastImport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.out.close()
        if self.proc.wait() != 0:
            raise RuntimeError(f"git fast-import exited with {self.proc.returncode}")


def _write_ledger(stream: FastImport, result: Synthetic, total: int, rng: random.Random, person: str) -> None:
    writer = LedgerWriter(rng)
    ledger = io.BytesIO()
    ledger.write(git.show(stream.work, f"{stream.parent}:{LEDGER_NAME}") or b"")
    steps = min(LEDGER_COMMITS, total)
    for step in range(steps):
        end = result.ledger_lines + total * (step + 1) // steps
        start = result.ledger_lines + total * step // steps
        for index in range(start, end):
            job = result.jobs[index % len(result.jobs)] if result.jobs else None
            sha = result.png_sha.get((job.batch, job.slug)) if job else None
            ledger.write(writer.line(index, job, sha))
        stream.commit(f"review: {end - start} verdicts", [(LEDGER_NAME, stream.blob(ledger.getvalue()))], person)


def lines_of(ledger: bytes) -> Iterator[LedgerLine]:
    for chunk in ledger.splitlines():
        yield LedgerLine.model_validate_json(chunk)


def clone(remote: Path, dest: Path, *extra: str) -> Path:
    """A clone of the synthetic remote, with the worker's identity set."""
    git.run(dest.parent, "clone", "--quiet", *extra, str(remote), str(dest))
    git.run(dest, "config", "user.name", "renderloop worker")
    git.run(dest, "config", "user.email", "worker@example.com")
    return dest


def noise_png_for_tests() -> bytes:
    return PngMaker().make(random.Random(os.getpid()))


def cached(renders: int, ledger_lines: int, *, cache: Path | None = None) -> Synthetic:
    """The studio of that size, built once and kept in ``RENDERLOOP_BENCH_CACHE`` (default: the temp folder).

    Benchmarks clone it (``git clone`` of a local path hard-links the objects), never change it.
    """
    base = cache or Path(os.environ.get("RENDERLOOP_BENCH_CACHE") or Path(tempfile.gettempdir()) / "renderloop-bench")
    folder = base / f"v{FORMAT}-r{renders}-l{ledger_lines}"
    facts = folder / "synthetic.pickle"
    if facts.is_file():
        made: Synthetic = pickle.loads(facts.read_bytes())
        return made
    shutil.rmtree(folder, ignore_errors=True)
    if ledger_lines and renders:
        made = with_ledger(cached(renders, 0, cache=base), folder, ledger_lines)  # the images once per size
    else:
        folder.mkdir(parents=True)
        made = build(folder, renders, ledger_lines)
    facts.write_bytes(pickle.dumps(made))
    return made
