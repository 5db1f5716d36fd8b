"""``renderloop demo``: the whole loop in a temporary sandbox, narrated.

A bare remote, the person's clone and the worker's clone, all on this disk;
the placeholder backend renders; real git runs every step and fires the
real hooks.  Nothing outside the sandbox is touched.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, ParamSpec, TypeVar

from renderloop.commands.new import new
from renderloop.commands.status import status
from renderloop.options import add_command
from studio import git
from studio.errors import FatalError

if TYPE_CHECKING:
    from renderloop.options import Subcommands

P = ParamSpec("P")
T = TypeVar("T")

DEMO_PROMPTS = [
    ("harbor-at-dawn", "A harbor at dawn, fishing boats, editorial illustration", "essay"),
    ("mac-to-windows-gpu-pipeline", "A laptop and a tower PC linked by a glowing cable, flat illustration", "diagram"),
    ("feedback-ledger-taxonomy", "Index cards pinned on a cork board, top view, gouache", "diagram"),
    ("night-train", "A night train crossing a viaduct under the stars, poster art", "essay"),
    ("quiet-reading-room", "A reading room with green lamps, late afternoon light", "essay"),
    ("orchard-in-fog", "An apple orchard in morning fog, muted palette", "essay"),
]
VERDICTS = [("keep", []), ("reroll", ["warmer palette", "no text"]), ("reject", []), ("keep", [])]


def add_parser(sub: Subcommands) -> None:
    p = add_command(sub, "demo", "the whole loop in a temporary sandbox, in seconds", run)
    p.add_argument("--keep", type=Path, default=None, metavar="DIR", help="build the sandbox in DIR and keep it")
    p.add_argument("--images", type=int, default=4, metavar="N", help="prompts in the demo batch (2-6)")


def run(args: argparse.Namespace) -> int:
    return demo(keep=args.keep, images=args.images)


class Narrator:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.step = 0

    def say(self, title: str) -> None:
        self.step += 1
        print(f"\n==> {self.step}. {title}   [{time.monotonic() - self.started:4.1f} s]", flush=True)

    def show(self, text: str, indent: str = "    ") -> None:
        for line in text.rstrip().splitlines():
            print(f"{indent}{line}")
        sys.stdout.flush()


def demo(keep: Optional[Path] = None, images: int = 4) -> int:
    images = max(2, min(images, len(DEMO_PROMPTS)))  # the second prompt is the one rerolled
    if keep is not None:
        keep = Path(keep).resolve()
        if keep.exists() and not keep.is_dir():
            raise FatalError(f"{keep} is not a folder: give --keep a new or empty folder")
        if keep.exists() and any(keep.iterdir()):
            raise FatalError(f"{keep} is not empty: give --keep a new or empty folder")
        keep.mkdir(parents=True, exist_ok=True)
        return _run(keep, images, kept=True)
    root = Path(tempfile.mkdtemp(prefix="renderloop-demo-"))
    try:
        return _run(root, images, kept=False)
    finally:
        _rmtree(root)


def _run(root: Path, images: int, kept: bool) -> int:
    from mac_side.init import init

    say = Narrator()
    print(f"renderloop demo: the whole loop in a sandbox at {root}")

    say.say("A studio: `renderloop init`, a bare remote, the person's clone and the worker's clone")
    seed, remote, mac, worker = root / "seed", root / "studio.git", root / "mac", root / "worker"
    seed.mkdir()
    git.run(seed, "init", "--quiet", "--initial-branch=main")
    _identity(seed, "Ana", "ana@example.com")
    init(seed)
    git.run(root, "clone", "--quiet", "--bare", str(seed), str(remote))
    git.run(root, "clone", "--quiet", str(remote), str(mac))
    git.run(root, "clone", "--quiet", str(remote), str(worker))
    _identity(mac, "Ana", "ana@example.com")
    _identity(worker, "studio-pc", "worker@example.com")
    init(mac)  # a fresh clone: `renderloop init .` only enables the hooks
    say.show(f"remote  {remote}\nmac     {mac}   (the person: writes prompts, reviews)\n"
             f"worker  {worker}   (the GPU box: renders with the placeholder backend)")

    say.say(f"The person writes batches/hero.yaml ({images} prompts) and commits: the pre-commit hook validates it")
    batch = mac / "batches" / "hero.yaml"
    batch.write_text(_batch_yaml(images), encoding="utf-8", newline="\n")
    say.show(batch.read_text(encoding="utf-8"), "    | ")
    bad = mac / "batches" / "typo.yaml"
    bad.write_text("version: 1\nmodel: z-image-turbo\nwidth: 1000\nprompts:\n  - slug: Hero Shot\n    prompt: x\n",
                   encoding="utf-8", newline="\n")
    git.add(mac, "batches/typo.yaml")
    code, out, err = git.run(mac, "commit", "-m", "typo batch", check=False)
    say.show("a batch with mistakes is stopped before the commit exists:\n" + (err + out).strip())
    if code == 0:
        raise FatalError("the pre-commit hook let an invalid batch through")
    git.run(mac, "rm", "--quiet", "--cached", "batches/typo.yaml")
    bad.unlink()
    git.add(mac, "batches/hero.yaml")
    _, out, err = git.run(mac, "commit", "--quiet", "-m", "batch: hero")
    git.run(mac, "push", "--quiet")
    say.show("committed and pushed batches/hero.yaml")

    say.say("The worker notices the commit, renders each image and commits it with its record, then pushes")
    _worker(worker)
    say.show(git.out(worker, "log", "-1", "--format=%B"))

    say.say("The person pulls: the post-merge hook writes renders/hero/review.md and stages it")
    _, out, err = git.run(mac, "pull", "--quiet")
    say.show((out + err).strip() or "(no output)")
    review = mac / "renders" / "hero" / "review.md"
    if not review.exists():
        raise FatalError("the hooks did not write the review")
    first = review.read_text(encoding="utf-8").split("\n## ")
    say.show("## " + first[1].strip() if len(first) > 1 else first[0], "    | ")

    say.say("The person types verdicts and commits: the pre-commit hook appends them to ledger.jsonl")
    text = review.read_text(encoding="utf-8")
    for (slug, _, _), (verdict, cues) in zip(DEMO_PROMPTS[:images], VERDICTS):
        text = _set_verdict(text, slug, verdict, cues)
        say.show(f"{slug}: {verdict}" + (f" (cues: {', '.join(cues)})" if cues else ""))
    review.write_text(text, encoding="utf-8", newline="\n")
    _, out, err = git.run(mac, "commit", "-am", "review: hero")
    say.show((out + err).strip())
    say.show(git.out(mac, "show", "--stat", "--format=%s", "HEAD"))
    say.show((mac / "ledger.jsonl").read_text(encoding="utf-8"), "    | ")

    say.say("`renderloop new hero-2 --rerolls` carries every reroll, with its cues, into a new batch")
    _in(mac, new, mac, "hero-2", rerolls=True, model=None, force=False)
    say.show((mac / "batches" / "hero-2.yaml").read_text(encoding="utf-8"), "    | ")
    git.add(mac, "batches/hero-2.yaml")
    git.run(mac, "commit", "--quiet", "-m", "batch: hero-2 (rerolls)")
    git.run(mac, "push", "--quiet")
    _worker(worker)
    _, out, err = git.run(mac, "pull", "--quiet", "--rebase")
    say.show((out + err).strip() or "(pulled)")

    say.say("`renderloop status`")
    _in(mac, status, mac)

    say.say("The audit trail: `git log --oneline` in the person's clone")
    say.show(git.out(mac, "log", "--oneline"))
    print(f"\nDone in {time.monotonic() - say.started:.1f} s.", end=" ")
    print(f"The sandbox is kept in {root}" if kept
          else "Run `renderloop demo --keep DIR` to keep the sandbox and look around.")
    return 0


def _worker(clone: Path) -> None:
    """The worker, as its own process (as on the GPU box): render, commit, push.

    Started in the sandbox, never with a folder on Python's path (studio.shims.renderloop_argv): a folder
    the person ran the demo from that holds ``studio/`` or ``renderloop/`` is not imported instead of
    renderloop (``PYTHONPATH`` still counts).
    """
    from studio.shims import renderloop_argv

    command = [*renderloop_argv(), "worker", "--repo", str(clone), "--backend", "placeholder",
               "--placeholder-seconds", "0.2", "--name", "studio-pc", "--once"]
    print("    $ renderloop worker --repo worker --backend placeholder --once", flush=True)
    code = subprocess.run(command, cwd=clone.parent).returncode
    if code:
        raise FatalError(f"the worker failed (exit code {code})")


def _batch_yaml(images: int) -> str:
    lines = [
        "version: 1",
        "model: z-image-turbo      # a key of renderloop.yaml `models`",
        "width: 768",
        "height: 512",
        "prompts:",
    ]
    for index, (slug, prompt, archetype) in enumerate(DEMO_PROMPTS[:images]):
        lines += [f"  - slug: {slug}", f'    prompt: "{prompt}"', f"    archetype: {archetype}"]
        if index == 0:
            lines.append("    seed: 1234")
        if index == 3:
            lines.append("    model: flux-schnell   # a per-prompt override")
    return "\n".join(lines) + "\n"


def _set_verdict(text: str, slug: str, verdict: str, cues: list[str]) -> str:
    """Fill in the verdict and cues of one section, as the person would in an editor."""
    start = text.find(f"\n## {slug}\n")
    if start < 0:
        raise FatalError(f"review has no section for {slug}")
    end = text.find("\n## ", start + 1)
    end = len(text) if end < 0 else end
    section = text[start:end]
    section = re.sub(r"(?m)^verdict:.*$", f"verdict: {verdict}", section, count=1)
    if cues:
        bullets = "".join(f"\n- {cue}" for cue in cues)
        section = re.sub(r"(?m)^cues:[ \t]*$", lambda m: "cues:" + bullets, section, count=1)
    return text[:start] + section + text[end:]


def _identity(repo: Path, name: str, email: str) -> None:
    git.config_set(repo, "user.name", name)
    git.config_set(repo, "user.email", email)


def _in(folder: Path, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    previous = Path.cwd()
    os.chdir(folder)
    try:
        return function(*args, **kwargs)
    finally:
        os.chdir(previous)


def _rmtree(root: Path) -> None:
    # git marks its objects read-only on Windows
    def make_writable(func: Callable[[str], object], path: str, *_: object) -> None:
        os.chmod(path, stat.S_IWRITE)
        func(path)

    if sys.version_info >= (3, 12):
        shutil.rmtree(root, onexc=make_writable)
    else:
        shutil.rmtree(root, onerror=make_writable)
