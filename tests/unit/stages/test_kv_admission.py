"""KV admission of ensemble problems (pipeline.stages.kv_admission): the rule alone, then in the stage."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipeline.stages.kv_admission import KVAdmission, engine_kv_tokens


def test_admits_while_projected_contexts_fit() -> None:
    async def go() -> list[int]:
        adm = KVAdmission(capacity=1000, limit=10, ceiling=300, reserve=20)  # 320 a problem: 3 fit
        for k in range(3):
            await adm.acquire(k)
        fourth = asyncio.create_task(adm.acquire(3))
        await asyncio.sleep(0.01)
        waiting = [int(not fourth.done())]
        await adm.release(0)  # its final context (0: never updated) teaches nothing
        await asyncio.wait_for(fourth, 1)
        return waiting + [len(adm.held), adm.waits]

    assert asyncio.run(go()) == [1, 3, 1]


def test_projection_learns_from_finished_problems() -> None:
    """Before any problem finishes a new one is reserved at the ceiling; after, at the median final context."""
    adm = KVAdmission(capacity=1000, limit=10, ceiling=900, reserve=0)
    assert adm.projected(0) == 900
    adm.finals += [100, 120, 500]
    assert adm.projected(0) == 120
    assert adm.projected(400) == 400  # a problem past the typical size is reserved at its own
    assert adm.projected(5000) == 900  # never above the ceiling

    async def go() -> int:
        for k in range(8):  # 8 x 120 = 960 <= 1000
            await adm.acquire(k)
        return len(adm.held)

    assert asyncio.run(go()) == 8


def test_one_problem_always_runs_and_growth_is_tracked() -> None:
    async def go() -> tuple[int, int]:
        adm = KVAdmission(capacity=100, limit=4, ceiling=500, reserve=10)
        await adm.acquire("a")  # larger than the cache, admitted alone
        adm.update("a", 300)
        adm.update("a", 200)  # contexts only grow
        held = adm.held["a"]
        await adm.release("a")
        return held, adm.finals[0]

    assert asyncio.run(go()) == (300, 300)


def test_no_capacity_admits_by_count() -> None:
    async def go() -> int:
        adm = KVAdmission(capacity=None, limit=2, ceiling=10**6)
        await adm.acquire(1)
        await adm.acquire(2)
        t = asyncio.create_task(adm.acquire(3))
        await asyncio.sleep(0.01)
        assert not t.done()
        await adm.release(1)
        await asyncio.wait_for(t, 1)
        return adm.waits

    assert asyncio.run(go()) == 0  # waited on the count bound, never for KV room
    assert engine_kv_tokens({"kv_tokens": 4096}, replicas=2) == 8192
    assert engine_kv_tokens({"kv_tokens": None}) is None and engine_kv_tokens({}) is None


def test_stage_bounds_problems_in_flight_by_the_smallest_cache(tmp_path: Path) -> None:
    """With an evaluator cache that holds one problem's reservation, problems run one at a time, same rows."""
    from pipeline.engine.fake import FakePool
    from pipeline.stages.ensemble import EnsembleStage
    from pipeline.stages.runner import run_stream
    from pipeline.store.artifacts import read_table

    from tests.unit.stages.test_ensemble import LogPool, _cfg, _ctx

    def run(sub: str, kv: int | None) -> tuple[list[dict], int, int]:
        d = tmp_path / sub
        pool: FakePool = LogPool(_cfg(d))
        pool.engines["tiny-harmony"].kv_tokens = kv
        ctx = _ctx(d, pool)
        stage = EnsembleStage()
        [path] = run_stream(ctx, [stage])["ensemble"]
        # Most problems open at once: count calls of different problems between one problem's first and last.
        open_, most = set(), 0
        last = {}
        for i, (_, _, prompt, _) in enumerate(pool.log):
            last[prompt] = i
        for i, (_, _, prompt, _) in enumerate(pool.log):
            open_.add(prompt)
            most = max(most, len(open_))
            if last[prompt] == i:
                open_.discard(prompt)
        assert stage.admission is not None
        return read_table(path).to_pylist(), most, stage.admission_waits

    free_rows, free_most, free_waits = run("free", None)
    tight_rows, tight_most, tight_waits = run("tight", 1)
    assert free_most > 1 and free_waits == 0
    assert tight_most == 1 and tight_waits > 0
    assert tight_rows == free_rows  # admission orders problems, never changes them
