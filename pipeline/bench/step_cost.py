"""Calibrate the planner's per-step cost model on this machine: decode step time vs batch size, prefill rate.

    python -m pipeline.bench.step_cost [--models smollm2 gemma3] [--batches 1 8 32] [--json PATH]

The planner's simulation (:mod:`pipeline.planning.simulate`) needs, per model,
the decode step time at batch 1 and at full batch, and the prefill rate; on a
GPU node they come from the node table, here they are measured.  Each model
runs in its own subprocess (one engine alive at a time) as the product runs it:
:class:`pipeline.engine.vllm_engine.ModelEngine` in-process, with the thread
count and preloaded runtime an engine actor gets from the pool (the cores split between
the engines alive together, :mod:`pipeline.engine.cpu_runtime`).  Per batch size ``b``: ``b`` requests of ``T1`` and of ``T2``
tokens (``ignore_eos``, short distinct prompts); step time = (wall(T2) -
wall(T1)) / (T2 - T1), which cancels prefill and call overhead.  Prefill:
``--prefill-batch`` prompts of ``--prefill-tokens`` tokens, one output token.

``--concurrent`` runs every model's engine at the same time (each measuring once all
have loaded), as ``make demo`` runs them on the 2 cores.  Start-up is timed from the
worker process's spawn (imports included, as for an engine actor) to engine ready.

Prints ``load_s:`` and ``throughput:`` blocks for ``conf/node/cpu2.yaml`` (decode_tps at the
largest batch, single_decode_tps at batch 1, prefill_tps, batch) and the
measured step times, so the linear step model can be checked at the middle batch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Optional

from pipeline.engine.protocol import CompleteRequest


def _barrier(folder: Optional[str], key: str, keys: list[str], timeout_s: float = 900.0) -> None:
    """Wait until every concurrent worker has loaded its engine (a file per worker)."""
    if not folder:
        return
    open(os.path.join(folder, f"{key}.ready"), "w").close()
    t = time.time()
    while not all(os.path.exists(os.path.join(folder, f"{k}.ready")) for k in keys):
        if time.time() - t > timeout_s:
            raise TimeoutError(f"step_cost: other engines not ready after {timeout_s:.0f} s")
        time.sleep(0.2)


def _worker(
    key: str,
    batches: list[int],
    t1: int,
    t2: int,
    pre_b: int,
    pre_t: int,
    barrier: Optional[str] = None,
    keys: Optional[list[str]] = None,
) -> dict:
    import random

    from pipeline.config import compose
    from pipeline.engine.vllm_engine import ModelEngine

    cfg = compose(["experiment=demo", "progress=false"])
    m = next(mc for k, mc in cfg.models.items() if k == key or mc.name == key)
    eng = ModelEngine(m, seed=0)
    ready_at = time.time()  # start-up = process spawn (imports included, as for an actor) -> engine ready
    vocab = eng.info()["vocab_size"]
    rng = random.Random(0)

    def reqs(b: int, tokens: int, plen: int) -> list[CompleteRequest]:
        return [
            CompleteRequest(
                ids=[rng.randrange(100, vocab - 1) for _ in range(plen)], max_tokens=tokens, ignore_eos=True
            )
            for _ in range(b)
        ]

    def wall(rs: list[CompleteRequest]) -> float:
        t = time.perf_counter()
        eng.complete_blocking(rs)
        return time.perf_counter() - t

    wall(reqs(4, 8, 32))  # warm-up
    _barrier(barrier, key, keys or [key])
    steps = {}
    for b in batches:
        w1, w2 = wall(reqs(b, t1, 32)), wall(reqs(b, t2, 32))
        steps[b] = max(1e-6, (w2 - w1) / (t2 - t1))
    w_pre = wall(reqs(pre_b, 1, pre_t))
    prefill_tps = pre_b * pre_t / max(1e-6, w_pre - steps[min(batches)])
    return {
        "model": m.name,
        "key": key,
        "max_num_seqs": int(m.max_num_seqs),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "step_s": steps,
        "prefill_tps": prefill_tps,
        "load_s": eng.load_seconds,
        "ready_at": ready_at,
    }


def table_row(r: dict) -> dict:
    """The node-table row (planning/throughput.py) the measurement gives."""
    steps = {int(b): s for b, s in r["step_s"].items()}
    bmax = max(steps)
    return {
        "decode_tps": round(bmax / steps[bmax], 1),
        "prefill_tps": round(r["prefill_tps"], 1),
        "single_decode_tps": round(1.0 / steps[min(steps)], 1),
        "tp": 1,
        "batch": bmax,
    }


def pool_startup(keys: list[str]) -> dict[str, float]:
    """Seconds from Ray start to every engine of ``keys`` ready in the product's engine pool (the
    start-up a run sees before its first request), and the Ray start alone."""
    from pipeline.config import compose
    from pipeline.engine.ray_pool import EnginePool, init_ray

    cfg = compose(["experiment=demo", "progress=false"])
    names = [next(mc.name for k, mc in cfg.models.items() if k == key or mc.name == key) for key in keys]
    t0 = time.time()
    init_ray(cfg.ray)
    t_ray = time.time() - t0
    pool = EnginePool(cfg)
    try:
        pool.start(names)
        return {"ray_s": t_ray, "startup_s": time.time() - t0}
    finally:
        pool.stop()


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["smollm2", "gemma3"], help="model config keys (experiment=demo)")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--t1", type=int, default=8)
    ap.add_argument("--t2", type=int, default=40)
    ap.add_argument("--prefill-batch", type=int, default=8)
    ap.add_argument("--prefill-tokens", type=int, default=256)
    ap.add_argument(
        "--concurrent",
        action="store_true",
        help="run every model's engine at the same time, as `make demo` does (after all loaded)",
    )
    ap.add_argument(
        "--pool-startup",
        action="store_true",
        help="only time the engine pool's start-up (Ray + every engine ready, in Ray actors)",
    )
    ap.add_argument("--json", default=None)
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_barrier", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._worker:
        res = _worker(a._worker, a.batches, a.t1, a.t2, a.prefill_batch, a.prefill_tokens, a._barrier, a.models)
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    if a.pool_startup:
        r = pool_startup(a.models)
        print(
            f"pool start-up of {' + '.join(a.models)}: {r['startup_s']:.1f} s (Ray start {r['ray_s']:.1f} s); "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        return 0
    import tempfile

    barrier = tempfile.mkdtemp(prefix="step_cost-") if a.concurrent else None
    from pipeline.engine import cpu_runtime

    results, procs = [], []
    spawn_at: dict[str, float] = {}
    # The threads and preloaded runtime the engine pool gives each engine (cores split between
    # the engines alive together).
    threads = cpu_runtime.threads_per_engine(os.cpu_count() or 1, len(a.models) if a.concurrent else 1)
    rt = cpu_runtime.engine_process_env(threads, cpu_runtime.find_libs(), cpu_runtime.wanted_pieces())
    cpu_runtime.warn_missing(rt)
    for key in a.models:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **rt.env}
        cmd = [
            sys.executable,
            "-m",
            "pipeline.bench.step_cost",
            "--_worker",
            key,
            "--t1",
            str(a.t1),
            "--t2",
            str(a.t2),
            "--prefill-batch",
            str(a.prefill_batch),
            "--prefill-tokens",
            str(a.prefill_tokens),
            "--batches",
            *map(str, a.batches),
            "--models",
            *a.models,
        ]
        if barrier:
            cmd += ["--_barrier", barrier]
        spawned = time.time()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        procs.append((key, p))
        spawn_at[key] = spawned
        if not barrier:  # one engine alive at a time
            procs[-1] = (key, p, *p.communicate())
    for entry in procs:
        key, p = entry[0], entry[1]
        out, err = entry[2:] if len(entry) > 2 else p.communicate()
        line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
        if p.returncode or line is None:
            print(f"{key}: engine failed (exit {p.returncode}):\n{err[-3000:]}", file=sys.stderr)
            return 1
        r = json.loads(line[len("RESULT ") :])
        r["startup_s"] = r.pop("ready_at") - spawn_at[key]
        results.append(r)
        print(
            f"{r['model']}: step ms by batch "
            + ", ".join(f"{b}: {s * 1e3:.1f}" for b, s in r["step_s"].items())
            + f"; prefill {r['prefill_tps']:.0f} tok/s; load {r['load_s']:.1f} s, start-up {r['startup_s']:.1f} s",
            flush=True,
        )
    print("load_s: {" + ", ".join(f"{r['model']}: {r['startup_s']:.1f}" for r in results) + "}")
    print("throughput:")
    for r in results:
        print(f"  {r['model']}: " + json.dumps(table_row(r)).replace('"', ""))
    load = os.getloadavg()
    summary = {
        "results": results,
        "rows": {r["model"]: table_row(r) for r in results},
        "concurrent": a.concurrent,
        "loadavg": load,
        "cpus": os.cpu_count(),
    }
    print(f"load average during calibration: {load[0]:.1f} (1 min) on {os.cpu_count()} CPUs")
    if a.json:
        from pipeline.store.atomic import write_text_atomic

        write_text_atomic(a.json, json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
