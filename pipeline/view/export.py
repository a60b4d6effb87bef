"""``crosscot view RUN_DIR --export DIR``: the viewer as static files that open from disk.

Browsers refuse ``fetch`` on ``file://``, so the data is written as small scripts
(``data/<name>.js``, each calling ``window.__crosscotData(name, payload)``) that the page loads
with ``<script>`` tags.  The item index is split into chunks of :data:`CHUNK` items and the item
details into buckets of :data:`BUCKET` items, so no file holds the whole run.  Filters run in the
page over the index; the agreement flags they use are the server's (the tables' own code).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.store.atomic import write_text_atomic
from pipeline.view.data import ITEM, Filters, RunData, item_key, parse_key
from pipeline.view.item import ProblemFrames, item_detail
from pipeline.view.server import STATIC, api_routes, jsonable

CHUNK = 2000
BUCKET = 100


def _script(name: str, payload: Any) -> str:
    # "</" inside a JSON string would end nothing here (a separate file), but keep it inert anyway.
    body = json.dumps(jsonable(payload), default=str, allow_nan=False).replace("</", "<\\/")
    return f"window.__crosscotData({json.dumps(name)}, {body});\n"


def export(run_dir: Path, out: Path) -> Path:
    """Write the static viewer of ``run_dir`` into ``out`` (created; files in it are replaced)."""
    rd = RunData(run_dir)
    out = Path(out)
    data = out / "data"
    (out / "static").mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    for f in ("app.js", "style.css"):
        shutil.copyfile(STATIC / f, out / "static" / f)
    routes = api_routes(rd)
    for name in ("facets", "overview", "curves"):
        write_text_atomic(data / f"{name}.js", _script(name, routes[name]({})))

    idx = rd.filtered(Filters()).sort(["setting", "variant", "dataset", "problem_id", "sample"])
    flags: dict[str, dict[str, dict[str, bool]]] = {}
    for metric in rd.metrics():
        fl = rd._flags_for(idx, metric).filter(pl.col("valid")).join(idx.select(*ITEM, "iid"), on="iid")
        for r in fl.iter_rows(named=True):
            flags.setdefault(item_key(r), {}).setdefault(metric, {})[f"{r['a']}|{r['b']}"] = bool(r["agree"])
    page = rd.items(Filters(per_page=max(1, idx.height), sort="setting"))
    rows = page["rows"]
    for i, r in enumerate(rows):
        r["flags"] = flags.get(r["key"], {})
        r["bucket"] = i // BUCKET
    for c in range(0, max(1, len(rows)), CHUNK):
        write_text_atomic(data / f"index-{c // CHUNK}.js", _script(f"index-{c // CHUNK}", rows[c : c + CHUNK]))
    # Item details: one pass per problem over frames partitioned once (not a scan of the run per item).
    frames = _partitions(rd)
    details: dict[str, dict] = {}
    print(
        f"view export: {len(rows)} items, index in {-(-len(rows) // CHUNK)} file(s), details in "
        f"{-(-len(rows) // BUCKET)}",
        flush=True,
    )
    step = max(1, len(rows) // 10)
    for n, r in enumerate(rows, 1):
        if n % step == 0:
            print(f"view export: item pages {n}/{len(rows)}", flush=True)
        k = (r["dataset"], r["problem_id"], r["sample"])
        details[r["key"]] = item_detail(rd, parse_key(r["key"]), frames(k))
        if len(details) == BUCKET or r is rows[-1]:
            b = r["bucket"]
            write_text_atomic(data / f"item-{b}.js", _script(f"item-{b}", details))
            details = {}
    manifest = {
        "chunks": max(1, -(-len(rows) // CHUNK)),
        "buckets": -(-len(rows) // BUCKET),
        "targets": rd.targets,
        "items": len(rows),
    }
    write_text_atomic(data / "manifest.js", f"window.CROSSCOT_STATIC = {json.dumps(manifest)};\n")
    html = (STATIC / "index.html").read_text().replace("<!--DATA-->", '<script src="data/manifest.js"></script>')
    write_text_atomic(out / "index.html", html)
    for p in out.rglob("*"):  # readable by whoever it is shared with (atomic writes create 0600 files)
        p.chmod(0o755 if p.is_dir() else 0o644)
    return out


def _partitions(rd: RunData):
    """(dataset, problem_id, sample) -> ProblemFrames, from frames partitioned once."""
    from pipeline.scoring.consistency import with_setting

    full = pl.read_ipc(rd.run_dir / "scored.arrow") if (rd.run_dir / "scored.arrow").is_file() else rd._full
    full = with_setting(full)
    key3, key2 = ["dataset", "problem_id", "sample"], ["dataset", "problem_id"]

    def part(df: pl.DataFrame, key: list[str]) -> dict:
        return df.partition_by(key, as_dict=True) if df.height and all(c in df.columns for c in key) else {}

    parts = {
        "answers": part(full, key3),
        "cots": part(rd.cots, key3),
        "index": part(rd.index, key3),
        "problems": part(rd.problems, key2),
        "candidates": part(rd.candidates, key2),
    }
    empty = {n: (full if n == "answers" else getattr(rd, n)).clear() for n in parts}

    def get(k: tuple) -> ProblemFrames:
        return ProblemFrames(
            **{n: parts[n].get(k if n in ("answers", "cots", "index") else k[:2], empty[n]) for n in parts}
        )

    return get
