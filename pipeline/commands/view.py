"""``crosscot view RUN_DIR``: a local, read-only viewer over a finished or running run.

``--port``/``--host`` (127.0.0.1 unless told otherwise) serve it; ``--export DIR`` writes the
same viewer as static files that open from disk with no server.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "look at every item of a run in a browser (a local server that only reads, or --export DIR for static files)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run directory (finished: scored.arrow; running: store/)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (0: any free port; default 8765)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the viewer as static files into DIR (open DIR/index.html from disk) and exit",
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.errors import UserError

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"view: {run_dir} is not a directory; pass a run directory (the run_dir of `crosscot run`)")
    if not (run_dir / "scored.arrow").is_file() and not (run_dir / "store").is_dir():
        raise UserError(
            f"view: {run_dir} holds neither scored.arrow nor store/; pass the run_dir of `crosscot run` "
            "(or `crosscot score` it first)"
        )
    if not 0 <= args.port <= 65535:
        raise UserError(f"view: --port {args.port} is out of range; use 0..65535 (0: any free port)")
    if args.export is not None:
        from pipeline.view.export import export

        out = export(run_dir, Path(args.export))
        print(f"wrote the viewer to {out}; open {out / 'index.html'} in a browser")
        return 0
    from pipeline.view.server import Viewer

    try:
        v = Viewer(run_dir, host=args.host, port=args.port)
    except OSError as e:
        raise UserError(
            f"view: cannot listen on {args.host}:{args.port} ({e.strerror}); pick another --port (0: any free port)"
        ) from e
    print(f"crosscot view: serving {run_dir} at {v.url}  (read-only; Ctrl-C stops)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"crosscot view: note: --host {args.host} lets other machines read this run (no authentication)", flush=True
        )
    try:
        v.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        v.httpd.server_close()
    return 0
