"""The viewer's local HTTP server (standard library ``ThreadingHTTPServer``), read-only.

Routes: ``/`` and ``/static/<file>`` (the page, from this package), ``/api/<name>`` (JSON from
:class:`pipeline.view.data.RunData`) and ``/run/<path>`` (a file of the run, e.g. a plot).  Only
GET/HEAD; a path that resolves outside the run directory (``..``, a symlink out) is refused.
Every answer carries a Content-Security-Policy that allows no inline script, and the page renders
all model output with ``textContent``: a reply holding ``<script>`` is shown, never run.
It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import mimetypes
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from pipeline.view.data import Filters, RunData

STATIC = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def api_routes(rd: RunData) -> dict[str, Callable[[dict[str, str]], Any]]:
    """name -> handler(query) -> JSON-able; shared with the static export."""
    from pipeline.view.overview import curves, overview

    return {
        "facets": lambda q: rd.facets(),
        "overview": lambda q: overview(rd.run_dir),
        "curves": lambda q: curves(rd.run_dir),
        "items": lambda q: rd.items(Filters.from_query(q)),
        "item": lambda q: rd.item(q.get("key", "")),
    }


def jsonable(obj: Any) -> Any:
    """``obj`` with NaN/inf floats as None (JSON has no NaN), recursively."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def safe_join(root: Path, rel: str) -> Path | None:
    """``root/rel`` when it resolves inside ``root`` and is a file; else None."""
    try:
        p = (root / unquote(rel).lstrip("/")).resolve()
    except (OSError, ValueError):
        return None
    if not p.is_relative_to(root) or not p.is_file():
        return None
    return p


def make_handler(rd: RunData) -> type[BaseHTTPRequestHandler]:
    routes = api_routes(rd)
    static_root = STATIC.resolve()

    class Handler(BaseHTTPRequestHandler):
        server_version = "crosscot-view"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: one line per error only
            pass

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, code: int, obj: Any) -> None:
            self._send(
                code,
                json.dumps(jsonable(obj), default=str, allow_nan=False).encode(),
                "application/json; charset=utf-8",
            )

        def _file(self, path: Path | None) -> None:
            if path is None:
                return self._send(404, b"not found", "text/plain; charset=utf-8")
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
                ctype += "; charset=utf-8"
            if ctype.startswith("text/html") and not path.is_relative_to(static_root):
                ctype = "text/plain; charset=utf-8"  # a run's HTML file is shown as text, never as a page
            self._send(200, path.read_bytes(), ctype)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            path = url.path
            try:
                if path in ("/", "/index.html"):
                    return self._file(STATIC / "index.html")
                if path.startswith("/static/"):
                    return self._file(safe_join(static_root, path[len("/static/") :]))
                if path.startswith("/run/"):
                    return self._file(safe_join(rd.run_dir, path[len("/run/") :]))
                if path.startswith("/api/"):
                    fn = routes.get(path[len("/api/") :])
                    if fn is None:
                        return self._json(404, {"error": f"no such API {path}"})
                    q = dict(parse_qsl(url.query, keep_blank_values=False))
                    return self._json(200, fn(q))
                return self._send(404, b"not found", "text/plain; charset=utf-8")
            except KeyError as e:
                return self._json(404, {"error": f"not found: {e}"})
            except (ValueError, TypeError) as e:
                return self._json(400, {"error": str(e)})
            except Exception as e:  # a bug must not kill the server; say it once on stderr
                traceback.print_exc(file=sys.stderr)
                return self._json(500, {"error": f"{type(e).__name__}: {e}"})

        do_HEAD = do_GET

        def _refuse(self) -> None:
            self._send(405, b"read-only viewer", "text/plain; charset=utf-8")

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    return Handler


class Viewer:
    """A running viewer: ``url``, ``close()``; serve in a background thread with ``start()``."""

    def __init__(self, run_dir: Path, host: str = "127.0.0.1", port: int = 0):
        self.data = RunData(run_dir)
        self.httpd = ThreadingHTTPServer((host, port), make_handler(self.data))
        self.httpd.daemon_threads = True
        h, p = self.httpd.server_address[:2]
        self.url = f"http://{'[' + h + ']' if ':' in str(h) else h}:{p}/"
        self._thread: threading.Thread | None = None

    def start(self) -> "Viewer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="crosscot-view", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
