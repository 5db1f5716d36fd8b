"""Run the ComfyUI test server by hand: ``python -m tests.comfyui_server --port 8188``."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.comfyui_server.server import DEFAULT_MODELS, ComfyServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.comfyui_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--render-seconds", type=float, default=1.0, help="time each prompt takes")
    parser.add_argument("--load-seconds", type=float, default=0.0,
                        help="time a prompt waits when its model differs from the one loaded (a switch)")
    parser.add_argument("--root", type=Path, help="folder for output/ and temp/ (default: a temporary folder)")
    parser.add_argument("--model", action="append", dest="models",
                        help="an installed model file name (repeat; default: the built-in graphs' files)")
    parser.add_argument("--no-previews", action="store_true", help="send no binary preview frames")
    args = parser.parse_args(argv)
    # Hand the GIL over sooner: the executor thread (the "GPU") then waits less behind HTTP handlers.
    sys.setswitchinterval(0.0005)
    root = args.root or Path(tempfile.mkdtemp(prefix="comfyui-test-"))
    server = ComfyServer(root, models=args.models or DEFAULT_MODELS, render_seconds=args.render_seconds,
                         load_seconds=args.load_seconds,
                         host=args.host, port=args.port, previews=not args.no_previews).start()
    print(f"ComfyUI test server at {server.url} (files in {root}); Ctrl+C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
