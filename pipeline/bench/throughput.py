"""Bench ``throughput``: pipeline generation (every item in flight on one engine) vs a naive loop.

The same prompts sent one request at a time (each awaited before the next) to the same engine;
generated tokens/s and the ratio.
"""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.report.telemetry import tokens_per_s


def section(out: Path, quick: bool = False) -> str:
    from pipeline.config import compose
    from pipeline.engine.vllm_engine import ModelEngine, Sampling

    cfg = compose(["experiment=demo_tiny"])
    m = cfg.model("tiny-think")
    e = ModelEngine(m)
    n = 16 if quick else 48
    toks = 64
    prompts = [f"What is {i} + {2 * i}? Think step by step." for i in range(n)]
    reqs = [{"prompt": p, "sampling": Sampling(0.0, 1.0, -1), "max_tokens": toks} for p in prompts]
    e.run_batch("think", reqs[:4])  # warm-up
    rows = []
    for label, batches in (("naive loop (1 request per call)", [[r] for r in reqs]),
                           ("pipeline (every request in flight)", [reqs])):
        g0 = e.stats["generated_tokens"]
        t0 = time.perf_counter()
        for b in batches:
            e.run_batch("think", b)
        dt = time.perf_counter() - t0
        gen = e.stats["generated_tokens"] - g0
        rows.append((label, gen, dt, tokens_per_s(gen, dt)))
    ratio = rows[1][3] / rows[0][3]
    md = ["| mode | generated tokens | seconds | tokens/s |", "|---|---|---|---|"]
    md += [f"| {a} | {b} | {c:.2f} | {d:.0f} |" for a, b, c, d in rows]
    md.append(f"\n**Ratio (pipeline / naive): {ratio:.1f}x** — model {m.name}, {n} prompts, {toks} new tokens each, "
              "greedy, same engine, same prompts.")
    return "\n".join(md)
