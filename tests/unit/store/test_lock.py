"""Concurrent jobs on one store: two processes fill the same artifact's sink; nothing torn or lost, no
row duplicated, the artifact published once unless the second adds rows (real processes)."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pyarrow as pa

SCHEMA = pa.schema([("problem_id", pa.string()), ("x", pa.int64())])


def _job(root: str, start, out, rows: list[int]) -> None:
    from pipeline.store.artifacts import Store
    from pipeline.store.sink import RowSink

    store = Store(root)
    art = store.path("generate", "m", {"k": 1})
    start.wait()
    sink = RowSink(art, SCHEMA, ["problem_id"], flush_rows=4)
    for i in rows:
        if not sink.done((f"p{i:02d}",)):
            sink.add({"problem_id": f"p{i:02d}", "x": i})
    sink.finish({"stage": "generate"})
    out.put(json.dumps({"wrote": sink.wrote}))


def test_two_processes_share_a_store_without_losing_or_doubling_rows(tmp_path):
    from pipeline.store.artifacts import read_table

    ctx = mp.get_context("spawn")
    for _round in range(3):  # several races, each on a fresh store
        root = tmp_path / f"store{_round}"
        start, out = ctx.Event(), ctx.Queue()
        # overlapping halves: 0-29 and 10-39, so each job has rows the other lacks
        procs = [ctx.Process(target=_job, args=(str(root), start, out, list(r))) for r in (range(0, 30), range(10, 40))]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0], "a job crashed (e.g. read shards the other deleted)"
        res = [json.loads(out.get(timeout=5)) for _ in procs]
        assert any(r["wrote"] for r in res)
        [art] = list(Path(root).glob("generate-*.arrow"))
        t = read_table(art)
        assert t.column("x").to_pylist() == list(range(40)), "every row of both jobs, once, sorted by key"
        assert not list(Path(root).glob("*.parts"))


def test_a_sink_with_nothing_new_does_not_rewrite_the_artifact(tmp_path):
    from pipeline.store.artifacts import Store
    from pipeline.store.sink import RowSink

    art = Store(tmp_path).path("generate", "m", {"k": 1})
    a, b = RowSink(art, SCHEMA, ["problem_id"]), RowSink(art, SCHEMA, ["problem_id"])
    for i in range(5):
        a.add({"problem_id": f"p{i}", "x": i})
        b.add({"problem_id": f"p{i}", "x": i})
    a.finish({"stage": "generate"})
    mtime = art.stat().st_mtime_ns
    b.finish({"stage": "generate"})
    assert (a.wrote, b.wrote) == (True, False) and art.stat().st_mtime_ns == mtime
