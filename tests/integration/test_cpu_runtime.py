"""Integration: the CPU runtime reaches real vLLM engines in real Ray actors.

The actor process itself reports what it runs with: tcmalloc mapped into it
(read from ``/proc/self/maps``, so ``LD_PRELOAD`` took effect at exec), its ``LD_PRELOAD``, torch's
OpenMP thread count (all cores for one engine, half each for two), and the dtype it resolved.
"""

from __future__ import annotations

import os

import pytest

from pipeline.engine.protocol import InfoQuery

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool():
    import ray

    from pipeline.config import compose
    from pipeline.engine.ray_pool import EnginePool, init_ray

    cfg = compose(["experiment=demo_tiny", "progress=false"])
    init_ray(cfg.ray)
    p = EnginePool(cfg)
    yield p
    p.stop()
    ray.shutdown()


def _runtime(pool, name: str) -> dict:
    return pool.call(name, InfoQuery())["runtime"]


def test_preload_and_threads_reach_the_engine_process(pool):
    cores = os.cpu_count() or 1
    pool.start(["tiny-think"])  # one engine: every core
    rt = _runtime(pool, "tiny-think")
    # The default runtime (cpu_runtime.DEFAULT_PIECES): tcmalloc preloaded, GNU OpenMP kept.
    assert rt["tcmalloc_loaded"] and not rt["iomp_loaded"], rt
    assert "libtcmalloc" in rt["ld_preload"], rt
    assert rt["torch_threads"] == cores and rt["omp_num_threads"] == str(cores), rt
    assert rt["dtype"] == "float32" and rt["model_dtype"] == "float32"  # the tiny models' explicit dtype
    pool.stop()
    pool.start(["tiny-think", "tiny-thought"])  # two engines side by side split the cores
    for n in ("tiny-think", "tiny-thought"):
        rt = _runtime(pool, n)
        assert rt["torch_threads"] == max(1, cores // 2) and rt["tcmalloc_loaded"], (n, rt)
