"""``crosscot bench view``: the viewer's latency on a synthetic run of 200,000 answer rows.

A synthetic finished run (:mod:`pipeline.view.synthetic`: 5 models, Empty/Default/Sampled and a
Transfer setting per model, full and without-answer variants; tables written by the scoring
library) is served by the real viewer (``ThreadingHTTPServer`` on 127.0.0.1, port 0) and queried
over HTTP as the page does:

* **first page** — from opening the run (reading ``scored.arrow``, building the item index) to
  the first Items page answered;
* **filter change** — each of a list of filter changes (every filter of the Items page, each
  metric's flags cold on first use), the slowest reported;
* **baseline** — the same "disagreements over every setting" answer computed the way one would
  without the viewer: the tables' own matrices (``group_matrices`` + ``pair_flags``) per setting.

Last line: ``view: first_page_ms=X filter_ms=Y rows=N`` (both must stay under 1000).
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

FILTERS: list[dict[str, str]] = [
    {"agree": "disagree"},
    {"setting": "Transfer A", "variant": "full", "pair": "B|C", "agree": "disagree"},
    {"target": "C", "correct": "incorrect"},
    {"setting": "Transfer A", "variant": "full", "flip_from": "Default"},
    {"setting": "Transfer B", "variant": "full", "flip_from": "Default", "target": "D"},
    {"agree": "disagree", "metric": "strict"},
    {"pair": "A|source", "agree": "agree"},
    {"leak": "yes", "sort": "n_correct", "desc": "1"},
    {"dataset": "toy_arith", "method": "transfer", "source": "C", "variant": "without_answer", "page": "7"},
]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def measure(run_dir: Path) -> dict:
    from pipeline.view.server import Viewer

    t0 = time.perf_counter()
    v = Viewer(run_dir).start()
    try:
        first = _get(v.url + "api/items")
        first_ms = (time.perf_counter() - t0) * 1000
        per = []
        for f in FILTERS:
            t = time.perf_counter()
            res = _get(v.url + "api/items?" + urlencode(f))
            per.append({"filter": f, "ms": (time.perf_counter() - t) * 1000, "total": res["total"]})
        t = time.perf_counter()
        item = _get(v.url + "api/item?" + urlencode({"key": first["rows"][0]["key"]}))
        item_ms = (time.perf_counter() - t) * 1000
        assert item["targets"], "item page without targets"
        rows = v.data.scored.height
    finally:
        v.close()
    return {
        "first_page_ms": first_ms,
        "filters": per,
        "filter_ms": max(p["ms"] for p in per),
        "item_ms": item_ms,
        "rows": rows,
        "items": first["total"],
    }


def baseline(run_dir: Path) -> float:
    """ms to list the disagreeing items of every setting with the tables' matrix code."""
    import polars as pl

    from pipeline.scoring.consistency import group_matrices, pair_flags

    t = time.perf_counter()
    scored = pl.read_ipc(Path(run_dir) / "scored.arrow")
    n = 0
    for m in group_matrices(scored):
        _, agree, valid = pair_flags(m, "paper")
        n += int((valid & ~agree).any(axis=0).sum())
    return (time.perf_counter() - t) * 1000


def section(out: Path, quick: bool = False) -> str:
    from pipeline.view.synthetic import synthetic_run

    rows = 200_000
    with tempfile.TemporaryDirectory(prefix="crosscot-bench-view-") as tmp:
        print(f"view: writing a synthetic run of {rows} answer rows", flush=True)
        run = synthetic_run(Path(tmp) / "run", rows=rows, n_boot=0)
        res = measure(run)
        base = baseline(run)
    lines = [
        f"Viewer latency on a synthetic run of {res['rows']} answer rows ({res['items']} items), over HTTP "
        "(127.0.0.1), one process; the machine may be loaded.",
        "",
        "| query | ms | items |",
        "|---|---|---|",
        f"| first page (open the run + page 1) | {res['first_page_ms']:.0f} | {res['items']} |",
    ]
    for p in res["filters"]:
        lines.append(f"| {', '.join(f'{k}={v}' for k, v in p['filter'].items())} | {p['ms']:.0f} | {p['total']} |")
    lines += [
        f"| one item page | {res['item_ms']:.0f} | 1 |",
        "",
        f"Baseline (the tables' matrices, `agree=disagree` over every setting): {base:.0f} ms; "
        f"viewer's slowest filter change {res['filter_ms']:.0f} ms "
        f"({base / max(res['filter_ms'], 1e-9):.1f}x).",
        "",
        f"view: first_page_ms={res['first_page_ms']:.0f} filter_ms={res['filter_ms']:.0f} rows={res['rows']}",
    ]
    (Path(out) / "view.json").write_text(json.dumps({**res, "baseline_ms": base}, indent=2, default=str))
    return "\n".join(lines)
