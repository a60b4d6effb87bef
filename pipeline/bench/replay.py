"""``crosscot bench replay``: the streaming pipeline against the engine's ceiling and against synchronous shards.

Reasoning CoTs are long-tailed (in the study's released MedCalc generations the
longest CoT is 2-5x the mean), so an engine fed synchronous shards idles at
every shard's tail.  This bench replays those lengths on a real engine:

* request lengths are drawn from the released CoT lengths of one model
  (``LLM Thinking``, about 4 characters per token), scaled to a CPU-sized mean,
  and decoded with ``ignore_eos`` so every request writes exactly its length;
* **pipeline** — the product path: a :class:`pipeline.stages.runner.Flow`-style
  driver hands items one by one to the engine actor through the pool, within
  the default in-flight bound, each returning as it finishes;
* **ceiling** — the best the engine can do: every request handed to it at once;
* **chunked** — the execution we replaced: synchronous shards of ``--shard``
  requests, each returning when its longest request is done.

All three run on the same engine (one Ray actor) in one run, in rotating order
after a warm-up, each timed run printing a line.  ``--quick`` sizes itself from this machine's
calibrated speed (:mod:`pipeline.planning.calibrate`; the shipped cpu2 table when uncalibrated) to
finish in about five minutes, and says so in its first line: at most 96 requests and two rounds, at
least two shards of requests, the same requests for every mode.  The last line is exactly
``replay: pipeline/ceiling=X.XX pipeline/chunked=Y.YY`` (ratios of tokens/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pipeline.engine.protocol import CompleteRequest, Completion, InfoQuery, in_flight_bound
from pipeline.planning.lengths import DATA
from pipeline.planning.lengths import released_lengths as _released


def released_lengths(data_dir: Path = DATA, model: str = "Qwen_QwQ-32B") -> list[int]:
    """CoT lengths (approximate tokens: characters / 4) of one model's released Default run."""
    out = _released(model, data_dir)
    if not out:
        raise FileNotFoundError(
            f"{Path(data_dir) / f'{model}_zero_shot_original.jsonl'} not found: the replay "
            "bench reads the study's released generations "
            "(../shared/data/genex-medcalc-outputs); pass --data DIR"
        )
    return out


def draw(lengths: list[int], n: int, mean: float, seed: int = 0) -> list[int]:
    """``n`` lengths drawn from ``lengths`` and scaled so their source mean becomes ``mean``."""
    rng = random.Random(seed)
    scale = mean / statistics.fmean(lengths)
    return [max(1, round(rng.choice(lengths) * scale)) for _ in range(n)]


def _prompts(n: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed + 1)
    return [[rng.randrange(100, vocab - 1) for _ in range(rng.randint(24, 48))] for _ in range(n)]


@dataclass(frozen=True)
class BlockingBatch:
    """A whole batch at once on a ModelEngine (its ``complete_blocking``): the synchronous baselines."""

    reqs: list[CompleteRequest]

    async def run(self, engine: Any) -> list[Completion]:
        return engine.complete_blocking(self.reqs)


QUICK_TARGET_S = 300.0  # what --quick promises: about five minutes, engine start-up included
QUICK_MAX_N = 96
# A round runs the three modes over the same requests; synchronous shards wait for their tails,
# so a round costs about this many times the ceiling's time.
ROUND_COST = 3.5


@dataclass(frozen=True)
class QuickSize:
    """How much work ``--quick`` does here, and the speed it was sized from."""

    n: int
    rounds: int
    decode_tps: float
    source: str
    estimate_s: float

    def sized(self) -> str:
        """The ``--quick`` first line's tail: what the size came from and how long it should take."""
        return (
            f"sized from {self.decode_tps:.0f} tok/s ({self.source}) to finish in about "
            f"{self.estimate_s / 60:.1f} min on this machine"
        )


def quick_size(
    model_name: str,
    mean: float,
    shard: int,
    target_s: float = QUICK_TARGET_S,
    round_cost: float = ROUND_COST,
    min_n: int | None = None,
    max_n: int = QUICK_MAX_N,
    engines: int = 1,
    rounds_options: tuple[int, ...] = (2, 1),
) -> QuickSize:
    """Requests and rounds that finish in about ``target_s`` at this machine's calibrated speed.

    ``round_cost``: a round's time in units of the ceiling's (one engine decoding the ``n``
    requests at its calibrated batch speed); ``engines``: engines each bench run starts (their
    load time is paid once each); ``rounds_options``: the round counts to try, most first.  At least ``min_n`` requests (default two shards, so the
    synchronous baseline has a tail to wait for at every shard), the same requests for every
    mode, so the ratios keep their meaning at any size.  Also sizes ``bench server`` and ``bench
    cache`` (their own ``round_cost``).
    """
    from pipeline.planning.throughput import load_node_type

    node = load_node_type("cpu2")  # this machine's calibration when there is one
    t = node.throughput.get(model_name)
    decode = t.decode_tps if t else node.fallback_decode_tps_1b
    fixed = engines * float(node.load_s.get(model_name, node.load_fixed_s)) + node.run_overhead_s
    floor_n = 2 * shard if min_n is None else min_n

    def cost(n: int, rounds: int) -> float:
        return fixed + (rounds * round_cost + 0.2) * n * mean / max(decode, 1e-6)

    for rounds in rounds_options:
        n = int((target_s - fixed) * decode / ((rounds * round_cost + 0.2) * mean))
        if n >= floor_n:
            n = min(n, max_n)
            return QuickSize(n, rounds, decode, t.source if t else "fallback", cost(n, rounds))
    least = min(rounds_options)
    return QuickSize(floor_n, least, decode, t.source if t else "fallback", cost(floor_n, least))


def demo_model_name(key: str) -> str:
    """The demo model's name (the calibration's key) for a config key or short name."""
    from pipeline.config import compose

    cfg = compose(["experiment=demo", "progress=false"])
    return next((m.name for k, m in cfg.models.items() if key in (k, m.name)), key)


def _say(msg: str) -> None:
    print(msg, flush=True)


def run(
    model_key: str = "smollm2",
    n: int = 96,
    mean: float = 48.0,
    shard: int = 32,
    rounds: int = 1,
    data_dir: Path = DATA,
    source: str = "Qwen_QwQ-32B",
    max_in_flight: Optional[int] = None,
    progress: Callable[[str], None] = _say,
) -> dict:
    from pipeline.config import compose
    from pipeline.engine.ray_pool import EnginePool, init_ray

    cfg = compose(["experiment=demo", "progress=false"])
    key = next(k for k, m in cfg.models.items() if k == model_key or m.name == model_key)
    m = cfg.models[key]
    lengths = draw(released_lengths(data_dir, source), n, mean)
    t_start = time.perf_counter()
    progress(f"replay: starting Ray and the {m.name} engine")
    init_ray(cfg.ray)
    pool = EnginePool(cfg)
    try:
        pool.ensure([m.name])
        info = pool.call(m.name, InfoQuery())
        vocab = info["vocab_size"]
        rt = info.get("runtime") or {}
        progress(
            f"replay: engine ready after {time.perf_counter() - t_start:.0f} s (dtype {rt.get('dtype', '?')}, "
            f"{rt.get('torch_threads', '?')} threads); warm-up"
        )
        limit = in_flight_bound(max_in_flight or 0, m.max_num_seqs)
        runs = iter(range(1, 10_000))

        def fresh() -> list[CompleteRequest]:
            # New prompts for every timed run (same lengths): no run reads another's prefix cache.
            return [
                CompleteRequest(ids=p, max_tokens=L, ignore_eos=True)
                for p, L in zip(_prompts(n, vocab, next(runs)), lengths)
            ]

        pool.call(m.name, BlockingBatch(fresh()[: min(16, n)]))  # warm-up (allocations, kernels)

        def ceiling() -> float:
            reqs = fresh()
            t = time.perf_counter()
            pool.call(m.name, BlockingBatch(reqs))
            return time.perf_counter() - t

        def chunked() -> float:
            reqs = fresh()
            t = time.perf_counter()
            for i in range(0, n, shard):
                pool.call(m.name, BlockingBatch(reqs[i : i + shard]))
            return time.perf_counter() - t

        def pipeline() -> float:
            reqs = fresh()

            async def go() -> None:
                sem = asyncio.Semaphore(limit)

                async def one(r: CompleteRequest) -> None:
                    async with sem:
                        await pool.op(m.name, r)

                await asyncio.gather(*(one(r) for r in reqs))

            t = time.perf_counter()
            asyncio.run(go())
            return time.perf_counter() - t

        modes = {"pipeline": pipeline, "ceiling": ceiling, "chunked": chunked}
        secs: dict[str, list[float]] = {k: [] for k in modes}
        order = list(modes)
        tokens = sum(lengths)
        for r in range(rounds):
            for name in order[r % 3 :] + order[: r % 3]:
                secs[name].append(modes[name]())
                progress(
                    f"replay: round {r + 1}/{rounds} {name}: {secs[name][-1]:.1f} s "
                    f"({tokens / secs[name][-1]:.0f} tok/s; {time.perf_counter() - t_start:.0f} s so far)"
                )
    finally:
        pool.stop()
    best = {k: min(v) for k, v in secs.items()}
    tps = {k: tokens / s for k, s in best.items()}
    return {
        "model": m.name,
        "n": n,
        "mean_len": statistics.fmean(lengths),
        "max_len": max(lengths),
        "tokens": tokens,
        "shard": shard,
        "max_in_flight": limit,
        "seconds": best,
        "tokens_per_s": tps,
        "pipeline_over_ceiling": tps["pipeline"] / tps["ceiling"],
        "pipeline_over_chunked": tps["pipeline"] / tps["chunked"],
        "rounds": rounds,
        "source": source,
    }


def markdown(res: dict) -> str:
    lines = [
        "# Replay of released CoT lengths: streaming pipeline vs ceiling vs synchronous shards",
        "",
        f"Model {res['model']}, {res['n']} requests, lengths from the study's {res['source']} CoTs scaled to a "
        f"mean of {res['mean_len']:.1f} tokens (max {res['max_len']}), `ignore_eos`; shards of {res['shard']}; "
        f"pipeline in-flight bound {res['max_in_flight']}; best of {res['rounds']} round(s).",
        "",
        "| mode | seconds | tokens/s |",
        "|---|---:|---:|",
    ]
    for k in ("pipeline", "ceiling", "chunked"):
        lines.append(f"| {k} | {res['seconds'][k]:.2f} | {res['tokens_per_s'][k]:.0f} |")
    lines += [
        "",
        f"replay: pipeline/ceiling={res['pipeline_over_ceiling']:.2f} "
        f"pipeline/chunked={res['pipeline_over_chunked']:.2f}",
    ]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> str:
    ap = argparse.ArgumentParser(prog="crosscot bench replay", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="sized from this machine's calibrated speed to finish in about 5 minutes (at most "
        "96 requests, two rounds)",
    )
    ap.add_argument("--model", default="smollm2", help="model config key (conf/model) or short name")
    ap.add_argument("-n", type=int, default=None, help="requests (default 96 quick, 192 full)")
    ap.add_argument("--mean", type=float, default=48.0, help="mean CoT length after scaling (tokens)")
    ap.add_argument("--shard", type=int, default=32, help="shard size of the synchronous baseline")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per mode (best kept; default 2 quick, 3 full)")
    ap.add_argument("--source", default="Qwen_QwQ-32B", help="whose released CoT lengths to replay")
    ap.add_argument("--data", type=Path, default=DATA, help="folder of the released MedCalc generations")
    ap.add_argument("--out", type=Path, default=None, help="write replay.md and replay.json here")
    a = ap.parse_args(argv)
    n, rounds = a.n or 192, a.rounds or 3
    if a.quick:
        name = demo_model_name(a.model)
        q = quick_size(name, a.mean, a.shard)
        n, rounds = a.n or q.n, a.rounds or q.rounds
        print(
            f"replay --quick: {n} requests x 3 modes x {rounds} round(s) of {name}, {q.sized()}",
            flush=True,
        )
    else:
        print(f"replay: {n} requests x 3 modes x {rounds} round(s)", flush=True)
    res = run(a.model, n, a.mean, a.shard, rounds, a.data, a.source)
    md = markdown(res)
    if a.out:
        from pipeline.store.atomic import write_text_atomic

        write_text_atomic(Path(a.out) / "replay.md", md + "\n")
        write_text_atomic(Path(a.out) / "replay.json", json.dumps(res, indent=2))
    print(md)
    return md
