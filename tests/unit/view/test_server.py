"""The viewer's server: read-only, localhost by default, only the run's files, errors as one line."""

from __future__ import annotations

import http.client
import json
import os
import urllib.request

import pytest

from pipeline.cli import main
from pipeline.view.server import Viewer
from pipeline.view.synthetic import synthetic_run


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    root = tmp_path_factory.mktemp("srv")
    (root / "secret.txt").write_text("outside the run")
    run = synthetic_run(root / "run", rows=700, n_boot=0)
    (run / "report.html").write_text("<script>alert(1)</script>")
    os.symlink(root / "secret.txt", run / "link-out.txt")
    v = Viewer(run).start()
    yield v
    v.close()


def _req(v: Viewer, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
    host, port = v.httpd.server_address[:2]
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request(method, path)
    r = c.getresponse()
    return r.status, dict(r.getheaders()), r.read()


def test_binds_localhost_by_default(viewer):
    assert viewer.httpd.server_address[0] == "127.0.0.1" and viewer.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize(
    "path",
    [
        "/run/../secret.txt",
        "/run/%2e%2e/secret.txt",
        "/run/..%2fsecret.txt",
        "/run/link-out.txt",
        "/run//etc/passwd",
        "/static/../data.py",
        "/etc/passwd",
        "/run/store/../../secret.txt",
    ],
)
def test_refuses_paths_outside_the_run(viewer, path):
    status, _, body = _req(viewer, path)
    assert status == 404 and b"outside the run" not in body


def test_serves_run_files_as_inert_content(viewer):
    status, h, body = _req(viewer, "/run/tables/accuracy.csv")
    assert status == 200 and body.startswith(b"setting,variant,target")
    status, h, _ = _req(viewer, "/run/report.html")
    assert status == 200 and h["Content-Type"].startswith("text/plain")  # a run's HTML is never a page here
    status, h, _ = _req(viewer, "/")
    assert "script-src 'self'" in h["Content-Security-Policy"] and h["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_read_only(viewer, method):
    assert _req(viewer, "/api/items", method)[0] == 405


def test_api_answers_and_bad_requests(viewer):
    items = json.loads(urllib.request.urlopen(viewer.url + "api/items?per_page=5&agree=disagree").read())
    assert items["total"] > 0 and len(items["rows"]) == 5
    item = json.loads(urllib.request.urlopen(viewer.url + "api/item?key=" + items["rows"][0]["key"]).read())
    assert item["targets"] and item["problem"]["prompt"]
    assert _req(viewer, "/api/item?key=nope")[0] == 404
    assert _req(viewer, "/api/items?page=x")[0] == 400
    assert _req(viewer, "/api/nope")[0] == 404


def test_cli_user_errors(tmp_path, capsys):
    assert main(["view", str(tmp_path / "none")]) == 2
    assert "crosscot: error: view:" in capsys.readouterr().err
    assert main(["view", str(tmp_path)]) == 2  # neither scored.arrow nor store/


def test_cli_serves_and_prints_the_url(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    run = synthetic_run(tmp_path / "run", rows=700, n_boot=0)
    repo = Path(__file__).resolve().parents[3]
    p = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "view", str(run), "--port", "0"], cwd=repo, stdout=subprocess.PIPE, text=True
    )
    try:
        line = p.stdout.readline()
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        assert b"crosscot view" in urllib.request.urlopen(url, timeout=10).read()
    finally:
        p.terminate()
        p.wait(timeout=10)
