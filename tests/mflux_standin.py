"""Stand-in ``mflux-generate*`` executables for tests, and readers of what they did.

``install(bin_dir, log)`` writes ``mflux-generate``, ``mflux-generate-z-image-turbo``
and ``mflux-generate-qwen`` into ``bin_dir``: small Python programs whose
argument parser follows mflux 0.24's (``--prompt --seed --width --height
--steps --output -q/--quantize --low-ram --guidance --negative-prompt``,
``-m/--model`` for mflux-generate), that write a real PNG of the asked size
and, like mflux, never overwrite (``name_1.png``).  Each appends a JSON line
per event (start, end, child) to the log, with wall-clock times.

What a run does is chosen by the environment variable ``STANDIN_MODE``, or
by a word ``standin:MODE`` inside the prompt (so one batch can mix them):

- ``ok``: write the image (after ``STANDIN_SECONDS``, default 0);
- ``nowrite``: print a message and exit 0 without writing, as mflux does
  when it stops early;
- ``oom``: print a Metal out-of-memory error and exit 1;
- ``hang``: start a child process, then sleep for ever (both obey SIGTERM);
- ``stubborn``: like hang, but both ignore SIGTERM.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

COMMANDS = ("mflux-generate", "mflux-generate-z-image-turbo", "mflux-generate-qwen")

STANDIN = r'''
import argparse, json, os, signal, subprocess, sys, time
from pathlib import Path

LOG = os.environ.get("STANDIN_LOG")
NAME = Path(sys.argv[0]).name.removesuffix(".py")


def record(event, **more):
    if LOG:
        line = json.dumps({"event": event, "pid": os.getpid(), "ppid": os.getppid(), "t": time.time(),
                           "command": NAME, **more})
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


parser = argparse.ArgumentParser(prog=NAME)
if NAME == "mflux-generate":
    parser.add_argument("--model", "-m", required=True, choices=["schnell", "dev"])
else:
    parser.add_argument("--model", "-m")
parser.add_argument("--prompt", required=True)
parser.add_argument("--negative-prompt", default="")
parser.add_argument("--seed", type=int, nargs="+")
parser.add_argument("--width", type=int, default=1024)
parser.add_argument("--height", type=int, default=1024)
parser.add_argument("--steps", type=int)
parser.add_argument("--guidance", type=float)
parser.add_argument("--quantize", "-q", type=int, choices=[3, 4, 5, 6, 8])
parser.add_argument("--low-ram", action="store_true")
parser.add_argument("--output", default="image.png")
args = parser.parse_args()

mode = os.environ.get("STANDIN_MODE", "ok")
for word in args.prompt.split():
    if word.startswith("standin:"):
        mode = word.split(":", 1)[1]
record("start", argv=sys.argv[1:], mode=mode)
print(f"{NAME}: {args.prompt!r} seed {args.seed} {args.width}x{args.height}", flush=True)

if mode in ("hang", "stubborn"):
    code = "import signal, time\n"
    if mode == "stubborn":
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code += "time.sleep(600)\n"
    child = subprocess.Popen([sys.executable, "-c", code])
    record("child", child=child.pid)
    print("  0%|          | 0/4 [00:00<?, ?it/s]", flush=True)
    time.sleep(600)
    sys.exit(0)

time.sleep(float(os.environ.get("STANDIN_SECONDS", "0")))
if mode == "oom":
    print("RuntimeError: [METAL] Command buffer execution failed: Insufficient Memory", flush=True)
    record("end", code=1)
    sys.exit(1)
if mode == "nowrite":
    print("Battery percentage is below the limit: stopping image generation.", flush=True)
    record("end", code=0)
    sys.exit(0)

from PIL import Image, PngImagePlugin

output = Path(args.output)
counter = 1
while output.exists():  # mflux never overwrites
    output = output.with_name(f"{Path(args.output).stem}_{counter}{output.suffix}")
    counter += 1
steps = args.steps or 4
for step in range(1, steps + 1):
    print(f" {step * 100 // steps}%| | {step}/{steps} [00:01<00:00, 1.0it/s]", flush=True)
info = PngImagePlugin.PngInfo()
info.add_text("mflux-standin", json.dumps({"prompt": args.prompt, "seed": args.seed}))
Image.new("RGB", (args.width, args.height), (40, 120, 200)).save(output, pnginfo=info)
record("end", code=0, output=str(output))
'''


def install(bin_dir: Path, log: Path) -> Path:
    """Write the stand-ins into ``bin_dir`` (created); returns it."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    source = bin_dir / "mflux_standin_program.py"
    source.write_text(STANDIN, encoding="utf-8")
    for name in COMMANDS:
        if os.name == "nt":  # pragma: no cover - Windows only
            (bin_dir / f"{name}.py").write_text(STANDIN, encoding="utf-8")
            (bin_dir / f"{name}.cmd").write_text(f'@"{sys.executable}" "%~dp0{name}.py" %*\r\n', encoding="utf-8")
            continue
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{STANDIN}", encoding="utf-8")
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


@pytest.fixture
def standin_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-ins first on PATH; returns the log they write."""
    log = tmp_path / "standin.jsonl"
    bin_dir = install(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("STANDIN_LOG", str(log))
    monkeypatch.delenv("STANDIN_MODE", raising=False)
    monkeypatch.delenv("STANDIN_SECONDS", raising=False)
    return log


def events(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def runs(log: Path) -> list[tuple[float, float]]:
    """(start, end) of every finished run, by start time."""
    starts: dict[int, float] = {}
    spans = []
    for event in events(log):
        if event["event"] == "start":
            starts[event["pid"]] = event["t"]
        elif event["event"] == "end" and event["pid"] in starts:
            spans.append((starts.pop(event["pid"]), event["t"]))
    return sorted(spans)


def max_concurrency(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    return peak


def gaps(spans: list[tuple[float, float]]) -> list[float]:
    """Time from the end of each run to the start of the next."""
    return [b[0] - a[1] for a, b in zip(spans, spans[1:])]
