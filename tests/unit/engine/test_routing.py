"""Prefix-affinity routing across replicas: stable groups, least-loaded only when saturated."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from types import SimpleNamespace

from pipeline.engine.protocol import GREEDY, AnswerRequest, CompleteRequest, GenerateRequest
from pipeline.engine.routing import affinity_key, pick_replica, stable_index


class _Remote:
    """An actor method stand-in: ``.remote(...)`` returns an awaitable, like a Ray ObjectRef."""

    def __init__(self, log: list, k: int, gate: asyncio.Event):
        self.log, self.k, self.gate = log, k, gate

    def remote(self, req: AnswerRequest):
        async def run():
            self.log.append((self.k, req.affinity))
            await self.gate.wait()
            return self.k

        return run()


def _pool(replicas: int, max_num_seqs: int, gate: asyncio.Event, log: list):
    from pipeline.engine.ray_pool import EnginePool

    pool = EnginePool.__new__(EnginePool)
    pool.actors = {"T": [SimpleNamespace(op=_Remote(log, k, gate)) for k in range(replicas)]}
    pool._load = {"T": [0] * replicas}
    pool._models = {"T": SimpleNamespace(max_num_seqs=max_num_seqs, replicas=replicas)}
    return pool


def test_variants_of_one_cot_share_a_replica_through_the_pool():
    async def go():
        gate, log = asyncio.Event(), []
        pool = _pool(2, 64, gate, log)
        groups = [(f"p{i}", "S", 0) for i in range(12)]
        tasks = [
            asyncio.ensure_future(
                pool.op("T", AnswerRequest(prompt="x", cot=f"v{v}", sampling=GREEDY, answer_budget=4, affinity=g))
            )
            for g in groups
            for v in range(4)
        ]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)
        return log

    log = asyncio.run(go())
    by_group: dict = {}
    for k, g in log:
        by_group.setdefault(g, set()).add(k)
    assert all(len(ks) == 1 for ks in by_group.values()), by_group  # every variant on its group's replica
    assert {next(iter(ks)) for ks in by_group.values()} == {0, 1}  # and both replicas are used


def test_saturated_replica_falls_back_to_least_loaded():
    key = ("T", "affinity", ("p1", "S", 0))
    home = stable_index(key, 2)
    load = [0, 0]
    load[home] = 8
    assert pick_replica(load, key, limit=8) == 1 - home  # home holds a full batch, the other is idle
    assert pick_replica(load, key, limit=9) == home  # below its batch width it stays home
    both = [8, 8]
    assert pick_replica(both, key, limit=8) == home  # everyone saturated: no reason to move


def test_groups_and_stable_hash():
    gen = GenerateRequest(prompt="a", sampling=GREEDY, thought_budget=8, answer_budget=4, affinity=("p", "S", 0))
    assert affinity_key("T", gen) == ("T", "affinity", ("p", "S", 0))
    ans = AnswerRequest(prompt="a", cot="c", sampling=GREEDY, answer_budget=4, system="s")
    assert affinity_key("T", ans) == ("T", "prompt", "a", "s")
    assert affinity_key("T", CompleteRequest(max_tokens=1, text="a")) is None
    assert pick_replica([3, 1], None, 8) == 1  # no group: least loaded
    # The replica of a group is the same in another process (Python's hash() is salted per process).
    key = ("T", "affinity", ("p7", "S", 0))
    code = "from pipeline.engine.routing import stable_index; print(stable_index(('T', 'affinity', ('p7', 'S', 0)), 5))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(other) == stable_index(key, 5)
