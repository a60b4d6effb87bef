"""The Item page's data: removed sentences struck, leak hits marked, ensemble candidates per step."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from pipeline.schema import SCORED
from pipeline.stages.ensemble import CANDIDATES
from pipeline.store.artifacts import read_table, write_table
from pipeline.view.data import Filters, RunData
from pipeline.view.item import cot_segments
from pipeline.view.synthetic import synthetic_run


def test_cot_segments_strike_removed_and_mark_leaks():
    full = "First add 3 and 4. So the answer is 7. Then check it twice. Again 7 appears."
    shown = "First add 3 and 4. Then check it twice. Again 7 appears."
    segs = cot_segments(full, shown, "7")
    assert "".join(s["text"] for s in segs) == full
    assert [s["text"] for s in segs if s["removed"]] == ["So the answer is 7. "]
    assert [s["text"] for s in segs if s["leak"]] == ["7"]  # the hit in the text the targets saw
    assert cot_segments(full, full, None) == [{"text": full, "removed": False, "leak": False}]


def test_ensemble_item_shows_each_steps_candidates(tmp_path):
    run = synthetic_run(tmp_path / "run", rows=700, tables=False)
    s = pl.from_arrow(read_table(run / "scored.arrow"))
    ens = s.filter((pl.col("method") == "transfer") & (pl.col("source") == "A")).with_columns(
        pl.lit("ensemble").alias("method"), pl.lit("A+B/C").alias("source")
    )
    write_table(run / "scored.arrow", pa.Table.from_pylist(pl.concat([s, ens]).to_dicts(), schema=SCORED))
    pid = ens["problem_id"][0]
    cands = [
        {
            "dataset": "toy_arith",
            "problem_id": pid,
            "source": "A+B/C",
            "step": st,
            "generator": g,
            "candidate": 0,
            "text": f"step {st} by {g}.",
            "closes": st == 1,
            "valid": True,
            "duplicate": False,
            "scores": [("C", 1.0 + i + st)],
            "mean_score": 1.0 + i + st,
            "winner": g == "A",
        }
        for st in (0, 1)
        for i, g in enumerate(("A", "B"))
    ]
    write_table(run / "ensemble_candidates.arrow", pa.Table.from_pylist(cands, schema=CANDIDATES))
    rd = RunData(run)
    row = rd.items(Filters(setting="Ensemble A+B/C", variant="full"))["rows"][0]
    d = rd.item(row["key"])
    assert [st["step"] for st in d["ensemble"]] == [0, 1]
    won = [(c["generator"], c["scores"]) for st in d["ensemble"] for c in st["candidates"] if c["winner"]]
    assert won == [("A", {"C": 1.0}), ("A", {"C": 2.0})]
