"""A stand-in for a ComfyUI launcher (Pinokio's start.bat, run_nvidia_gpu.bat): starts the ComfyUI test
server as its child and waits for it. ``python tests/comfyui_launcher.py PORT [--pid-file PATH]``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    port = sys.argv[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    server = subprocess.Popen([sys.executable, "-m", "tests.comfyui_server", "--port", port,
                               "--render-seconds", "0.05", "--no-previews"], env=env, cwd=ROOT)
    if len(sys.argv) > 3 and sys.argv[2] == "--pid-file":
        Path(sys.argv[3]).write_text(str(server.pid))
    return server.wait()


if __name__ == "__main__":
    raise SystemExit(main())
