"""Concurrent jobs on one store: shards and the artifact are each written once, nothing torn (real processes)."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pyarrow as pa

SCHEMA = pa.schema([("problem_id", pa.string()), ("x", pa.int64())])


def _job(root: str, start, out) -> None:
    from pipeline.store.artifacts import Store

    store = Store(root)
    art = store.path("generate", "m", {"k": 1})
    shards = store.shards(art, ["problem_id"])
    start.wait()
    wrote_shards = 0
    for i in range(0, 40, 4):
        key = [[f"p{j:02d}"] for j in range(i, i + 4)]
        if not shards.done(key):
            wrote_shards += shards.write(key, pa.table({"problem_id": [k[0] for k in key],
                                                        "x": list(range(i, i + 4))}, schema=SCHEMA))
    t = shards.finish(SCHEMA, {"stage": "generate"})
    out.put(json.dumps({"rows": t.num_rows, "wrote": shards.wrote, "shards": wrote_shards}))


def test_two_processes_share_a_store_without_double_writes(tmp_path):
    ctx = mp.get_context("spawn")
    for _round in range(3):  # several races, each on a fresh store
        root = tmp_path / f"store{_round}"
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_job, args=(str(root), start, out)) for _ in range(2)]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0], "a job crashed (e.g. read shards the other deleted)"
        res = [json.loads(out.get(timeout=5)) for _ in procs]
        assert [r["rows"] for r in res] == [40, 40]
        assert sorted(r["wrote"] for r in res) == [False, True], "the artifact must be published exactly once"
        assert sum(r["shards"] for r in res) == 10, "each of the 10 shards written exactly once"
        from pipeline.store.artifacts import read_table

        [art] = list(Path(root).glob("generate-*.arrow"))
        assert read_table(art).column("x").to_pylist() == list(range(40))
        assert not list(Path(root).glob("*.parts"))
