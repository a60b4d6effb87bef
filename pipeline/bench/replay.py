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
after a warm-up.  The last line is exactly
``replay: pipeline/ceiling=X.XX pipeline/chunked=Y.YY`` (ratios of tokens/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Optional

from pipeline.engine.protocol import CompleteRequest, Completion, InfoQuery, in_flight_bound
from pipeline.planning.lengths import DATA
from pipeline.planning.lengths import released_lengths as _released


def released_lengths(data_dir: Path = DATA, model: str = "Qwen_QwQ-32B") -> list[int]:
    """CoT lengths (approximate tokens: characters / 4) of one model's released Default run."""
    out = _released(model, data_dir)
    if not out:
        raise FileNotFoundError(f"{Path(data_dir) / f'{model}_zero_shot_original.jsonl'} not found: the replay "
                                "bench reads the study's released generations "
                                "(../shared/data/genex-medcalc-outputs); pass --data DIR")
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


def run(model_key: str = "smollm2", n: int = 96, mean: float = 48.0, shard: int = 32, rounds: int = 1,
        data_dir: Path = DATA, source: str = "Qwen_QwQ-32B", max_in_flight: Optional[int] = None) -> dict:
    from pipeline.config import compose
    from pipeline.engine.ray_pool import EnginePool, init_ray

    cfg = compose(["experiment=demo", "progress=false"])
    key = next(k for k, m in cfg.models.items() if k == model_key or m.name == model_key)
    m = cfg.models[key]
    lengths = draw(released_lengths(data_dir, source), n, mean)
    init_ray(cfg.ray)
    pool = EnginePool(cfg)
    try:
        pool.ensure([m.name])
        vocab = pool.call(m.name, InfoQuery())["vocab_size"]
        limit = in_flight_bound(max_in_flight or 0, m.max_num_seqs)
        runs = iter(range(1, 10_000))

        def fresh() -> list[CompleteRequest]:
            # New prompts for every timed run (same lengths): no run reads another's prefix cache.
            return [CompleteRequest(ids=p, max_tokens=L, ignore_eos=True)
                    for p, L in zip(_prompts(n, vocab, next(runs)), lengths)]

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
                pool.call(m.name, BlockingBatch(reqs[i:i + shard]))
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
        for r in range(rounds):
            for name in order[r % 3:] + order[:r % 3]:
                secs[name].append(modes[name]())
    finally:
        pool.stop()
    tokens = sum(lengths)
    best = {k: min(v) for k, v in secs.items()}
    tps = {k: tokens / s for k, s in best.items()}
    return {"model": m.name, "n": n, "mean_len": statistics.fmean(lengths), "max_len": max(lengths),
            "tokens": tokens, "shard": shard, "max_in_flight": limit, "seconds": best, "tokens_per_s": tps,
            "pipeline_over_ceiling": tps["pipeline"] / tps["ceiling"],
            "pipeline_over_chunked": tps["pipeline"] / tps["chunked"], "rounds": rounds, "source": source}


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
    lines += ["", f"replay: pipeline/ceiling={res['pipeline_over_ceiling']:.2f} "
                  f"pipeline/chunked={res['pipeline_over_chunked']:.2f}"]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> str:
    ap = argparse.ArgumentParser(prog="crosscot bench replay", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="96 requests, two rounds (under 5 minutes on 2 cores)")
    ap.add_argument("--model", default="smollm2", help="model config key (conf/model) or short name")
    ap.add_argument("-n", type=int, default=None, help="requests (default 96 quick, 192 full)")
    ap.add_argument("--mean", type=float, default=48.0, help="mean CoT length after scaling (tokens)")
    ap.add_argument("--shard", type=int, default=32, help="shard size of the synchronous baseline")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per mode (best kept; default 2 quick, 3 full)")
    ap.add_argument("--source", default="Qwen_QwQ-32B", help="whose released CoT lengths to replay")
    ap.add_argument("--data", type=Path, default=DATA, help="folder of the released MedCalc generations")
    ap.add_argument("--out", type=Path, default=None, help="write replay.md and replay.json here")
    a = ap.parse_args(argv)
    res = run(a.model, a.n or (96 if a.quick else 192), a.mean, a.shard, a.rounds or (2 if a.quick else 3),
              a.data, a.source)
    md = markdown(res)
    if a.out:
        from pipeline.store.atomic import write_text_atomic

        write_text_atomic(Path(a.out) / "replay.md", md + "\n")
        write_text_atomic(Path(a.out) / "replay.json", json.dumps(res, indent=2))
    print(md)
    return md
