"""A run still going (no scored.arrow yet): the viewer reads published artifacts and streaming shards."""

from __future__ import annotations

import polars as pl

from pipeline.schema import ANSWERS, conform
from pipeline.store.artifacts import read_table, write_table
from pipeline.view.data import Filters, RunData
from pipeline.view.synthetic import synthetic_run


def test_running_run_shows_answers_so_far(tmp_path):
    run = synthetic_run(tmp_path / "run", rows=1400, tables=False)
    scored = pl.from_arrow(read_table(run / "scored.arrow"))
    (run / "scored.arrow").unlink()
    gen = scored.filter(pl.col("method") != "transfer")
    tr = scored.filter(pl.col("method") == "transfer")
    write_table(run / "store" / "generate-all-0.arrow", conform(gen.to_arrow(), ANSWERS))
    half = tr.height // 2
    # A transfer artifact still streaming: only its shards exist, one of them twice (a resumed run).
    write_table(run / "store" / "transfer-all-0.parts" / "000-a.arrow", conform(tr.head(half).to_arrow(), ANSWERS))
    write_table(run / "store" / "transfer-all-0.parts" / "001-b.arrow", conform(tr.head(10).to_arrow(), ANSWERS))
    rd = RunData(run)
    assert rd.live and rd.scored.height == gen.height + half
    res = rd.items(Filters(per_page=5))
    assert res["live"] and res["total"] == rd.index.height
    assert rd.items(Filters(target="A", correct="correct"))["total"] > 0  # judged on the fly
    assert rd.item(res["rows"][0]["key"])["targets"]
    # More rows arrive: the next query sees them.
    write_table(
        run / "store" / "transfer-all-0.parts" / "002-c.arrow", conform(tr.tail(tr.height - half).to_arrow(), ANSWERS)
    )
    rd.reload_if_changed()
    assert rd.scored.height == scored.height
