"""``crosscot bench server``: a served model (managed ``vllm serve``, over HTTP) against the in-process engine.

The same model is loaded twice on one pool: as an in-process engine (a Ray actor with vLLM's
step loop) and as ``engine: openai`` (a managed ``vllm serve`` with the same settings, reached
through :class:`pipeline.engine.openai_engine.OpenAIEngine`). Both get the same requests: lengths
drawn from the study's released CoT lengths (as in ``bench replay``), decoded with ``ignore_eos``,
fresh random prompts per timed run (no run reads another's prefix cache), within the pipeline's
default in-flight bound, best of the rounds, the two in alternating order. The last line is exactly
``server: served/inprocess=X.XX`` (ratio of generated tokens/s).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import time
from pathlib import Path

from pipeline.bench.replay import DATA, _prompts, demo_model_name, draw, quick_size, released_lengths
from pipeline.engine.protocol import CompleteRequest, Completion, InfoQuery, in_flight_bound


def run(
    model_key: str = "smollm2",
    n: int = 96,
    mean: float = 48.0,
    rounds: int = 2,
    data_dir: Path = DATA,
    source: str = "Qwen_QwQ-32B",
    out: Path | None = None,
) -> dict:
    from pipeline.config import compose
    from pipeline.config.served import ServedConfig
    from pipeline.engine.ray_pool import EnginePool, init_ray

    cfg = compose(["experiment=demo", "progress=false"])
    key = next(k for k, m in cfg.models.items() if k == model_key or m.name == model_key)
    m = cfg.models[key]
    served = dataclasses.replace(
        m, name=m.name + "-served", engine="openai", served=ServedConfig(log_dir=str(out or Path.cwd()))
    )
    cfg.models = {"inproc": m, "served": served}
    lengths = draw(released_lengths(data_dir, source), n, mean)
    init_ray(cfg.ray)
    pool = EnginePool(cfg)
    try:
        names = {"inprocess": m.name, "served": served.name}
        for name in names.values():
            pool.ensure([name])
        vocab = pool.call(m.name, InfoQuery())["vocab_size"]
        limit = in_flight_bound(0, m.max_num_seqs)
        runs = iter(range(1, 10_000))

        def timed(name: str) -> float:
            reqs = [
                CompleteRequest(ids=p, max_tokens=L, ignore_eos=True)
                for p, L in zip(_prompts(n, vocab, next(runs)), lengths)
            ]

            async def go() -> list:
                sem = asyncio.Semaphore(limit)

                async def one(r: CompleteRequest) -> Completion:
                    async with sem:
                        return await pool.op(name, r)

                return await asyncio.gather(*(one(r) for r in reqs))

            t = time.perf_counter()
            outs = asyncio.run(go())
            dt = time.perf_counter() - t
            got = sum(len(o.token_ids[0]) for o in outs)
            if got != sum(lengths):
                raise RuntimeError(f"{name}: generated {got} tokens, asked for {sum(lengths)} (ignore_eos)")
            return dt

        for name in names.values():  # warm-up (allocations, kernels, connections)
            timed(name)
        secs: dict[str, list[float]] = {k: [] for k in names}
        order = list(names)
        for r in range(rounds):
            for k in order if r % 2 == 0 else order[::-1]:
                secs[k].append(timed(names[k]))
                print(f"  round {r + 1}/{rounds} {k}: {secs[k][-1]:.2f}s", flush=True)
    finally:
        pool.stop()
    tokens = sum(lengths)
    best = {k: min(v) for k, v in secs.items()}
    tps = {k: tokens / s for k, s in best.items()}
    return {
        "model": m.name,
        "n": n,
        "mean_len": statistics.fmean(lengths),
        "max_len": max(lengths),
        "tokens": tokens,
        "max_in_flight": limit,
        "rounds": rounds,
        "source": source,
        "seconds": best,
        "all_seconds": secs,
        "tokens_per_s": tps,
        "served_over_inprocess": tps["served"] / tps["inprocess"],
    }


def markdown(res: dict) -> str:
    lines = [
        "# Served model (managed vllm serve over HTTP) vs the in-process engine",
        "",
        (
            f"Model {res['model']}, {res['n']} requests, lengths from the study's {res['source']} CoTs scaled to a "
            f"mean of {res['mean_len']:.1f} tokens (max {res['max_len']}), `ignore_eos`, fresh prompts per run; "
            f"in-flight bound {res['max_in_flight']}; best of {res['rounds']} round(s), alternating order."
        ),
        "",
        "| path | seconds | tokens/s |",
        "|---|---:|---:|",
    ]
    for k in ("inprocess", "served"):
        lines.append(f"| {k} | {res['seconds'][k]:.2f} | {res['tokens_per_s'][k]:.0f} |")
    lines += ["", f"server: served/inprocess={res['served_over_inprocess']:.2f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="crosscot bench server", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="sized from this machine's calibrated speed to finish in about 5 minutes (at most 48 requests, two rounds)",
    )
    ap.add_argument("--model", default="smollm2", help="model config key (conf/model) or short name")
    ap.add_argument("-n", type=int, default=None, help="requests (default: sized by --quick, else 96)")
    ap.add_argument("--mean", type=float, default=48.0, help="mean CoT length after scaling (tokens)")
    ap.add_argument(
        "--rounds", type=int, default=None, help="rounds per path (best kept; default: sized by --quick, else 3)"
    )
    ap.add_argument("--source", default="Qwen_QwQ-32B", help="whose released CoT lengths to replay")
    ap.add_argument("--data", type=Path, default=DATA, help="folder of the released MedCalc generations")
    ap.add_argument("--out", type=Path, default=None, help="write server.md, server.json and the server log here")
    a = ap.parse_args(argv)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
    n, rounds = a.n or 96, a.rounds or 3
    if a.quick:
        name = demo_model_name(a.model)
        # A round is the two paths; the warm-up runs both once more; two engines start.
        q = quick_size(name, a.mean, shard=8, round_cost=3.0, min_n=16, max_n=48, engines=2)
        n, rounds = a.n or q.n, a.rounds or q.rounds
        print(
            f"server --quick: {n} requests x 2 paths x {rounds} round(s) of {name}, {q.sized()}",
            flush=True,
        )
    else:
        print(f"server: {n} requests x 2 paths x {rounds} round(s)", flush=True)
    res = run(a.model, n, a.mean, rounds, a.data, a.source, a.out)
    md = markdown(res)
    if a.out:
        from pipeline.store.atomic import write_text_atomic

        write_text_atomic(Path(a.out) / "server.md", md + "\n")
        write_text_atomic(Path(a.out) / "server.json", json.dumps(res, indent=2))
    print(md)
    return md
