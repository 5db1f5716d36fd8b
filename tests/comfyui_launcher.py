"""A stand-in for a ComfyUI launcher (Pinokio's start.bat, run_nvidia_gpu.bat): starts the ComfyUI test
server as its child and waits for it. ``python tests/comfyui_launcher.py PORT ROOT [--pid-file PATH]``.

ROOT is the server's folder (output/, temp/): the test's own, so a server killed outright leaves nothing behind."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    port, root = sys.argv[1], sys.argv[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    server = subprocess.Popen([sys.executable, "-m", "tests.comfyui_server", "--port", port, "--root", root,
                               "--render-seconds", "0.05", "--no-previews"], env=env, cwd=ROOT)
    if len(sys.argv) > 4 and sys.argv[3] == "--pid-file":
        Path(sys.argv[4]).write_text(str(server.pid))
    return server.wait()


if __name__ == "__main__":
    raise SystemExit(main())
