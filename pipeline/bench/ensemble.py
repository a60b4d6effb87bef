"""Bench: ensemble scoring steps at 8k-token contexts, cached (prefix-cache) scoring vs naive rescoring.

    crosscot bench ensemble [--quick]        (last line: ``ensemble: cached/naive=X.X at 8192``)

One in-process :class:`pipeline.engine.vllm_engine.ModelEngine` (no Ray) on a tiny
random model served with a 8k+ context window at the engine's **default KV block size**.
``PROBLEMS`` problems, each with a CoT context of about ``CONTEXT`` tokens, step as the
ensemble stage steps them: per step every problem's context grows by one sentence and its
``CANDIDATES`` candidate sentences (2 generators x 3 samples) are scored, all problems in
flight together.  The KV cache is sized (``num_gpu_blocks_override``) to hold only about
half of the problems' contexts, so contexts are **evicted** between steps, as in a run with
many problems in flight; nothing is reset or pre-warmed between steps.

* **naive** — every candidate scored as a whole ``context + candidate`` sequence with
  ``prompt_logprobs`` (vLLM's default: prompt-logprob requests never read the cache),
  ``score(mode="naive")``;
* **cached** — ``score(mode="cached")``: one request per context (a prefix-cache hit when
  its blocks survived, else a re-prefill), then each candidate prefills its own tokens plus
  the context's partial last block.

Reported per mode: median wall time, CPU time and prefilled tokens per step (steps after
the first, which is cold for both), their ratios, and the largest difference between the
two modes' candidate mean NLLs (they must agree).  The table is printed and written to
``OUT_DIR/ensemble_bench.md``; its last line is the wall-time ratio naive/cached.
"""

from __future__ import annotations

import dataclasses
import os
import random
import statistics
import sys
import time
from pathlib import Path

CONTEXT = 8192
PROBLEMS = 6
CANDIDATES = 6  # 2 generators x 3 samples
STEPS = 4  # the first is cold (not in the medians)
CACHE_SHARE = 0.5  # the KV cache holds about this share of all problems' contexts
# Engine compute threads. 1: on a small shared machine, OpenMP threads of a multi-threaded engine
# spin at barriers whenever another process holds a core, which swamps the small cached steps.
THREADS = 1


def _sentence(rng: random.Random) -> str:
    from pipeline.provision.tiny import _CORPUS_WORDS

    words = [rng.choice(_CORPUS_WORDS) for _ in range(rng.randint(8, 12))]
    return " " + " ".join(words) + f" {rng.randint(0, 400)}."


def _context(engine, rng: random.Random, n_tokens: int, problem: int) -> str:
    """Thinking prompt + a CoT of random corpus sentences, about ``n_tokens`` tokens in total."""
    text = engine.thinking_prompt(f"What is {problem} + {problem * 7}?")
    while len(engine.encode(text)) < n_tokens:
        text += _sentence(rng)
    return text


def bench_model(name: str = "tiny-harmony"):
    """The demo's tiny model family, rebuilt with positions for 8k contexts, at the default block size."""
    from pipeline.config import compose

    m = compose(["experiment=demo_tiny", "run_dir=runs/bench"]).model(name)
    spec = {**dataclasses.asdict(m.tiny), "max_position": 2 * CONTEXT}  # a dict recipe: its own folder
    return dataclasses.replace(m, name=f"{name}-8k", path=str(Path(m.path).parent / f"{name}-8k"), tiny=spec,
                               max_model_len=CONTEXT + 512, kv_cache_gib=1.0, block_size=None)


def run_steps(engine, mode: str, n_tokens: int, steps: int, seed: int = 0) -> dict:
    """``steps`` ensemble steps of every problem in ``mode``; per step wall, CPU and prefilled tokens."""
    rng = random.Random(seed + n_tokens)
    bases = [_context(engine, rng, n_tokens, p) for p in range(PROBLEMS)]
    growth = [[_sentence(rng) for _ in range(steps)] for _ in range(PROBLEMS)]
    cands = [[[_sentence(rng) for _ in range(CANDIDATES)] for _ in range(PROBLEMS)] for _ in range(steps)]
    engine.llm.reset_prefix_cache()  # each mode starts cold; nothing is reset between its steps
    res: dict = {"s": [], "cpu": [], "prefill": [], "tokens": [], "out": []}
    for s in range(steps):
        ctx = [b + "".join(g[:s + 1]) for b, g in zip(bases, growth)]
        before = engine.stats["prefill_tokens"]
        t0, c0 = time.perf_counter(), time.process_time()
        res["out"].append(score(engine, ctx, cands[s], mode))
        res["s"].append(time.perf_counter() - t0)
        res["cpu"].append(time.process_time() - c0)
        res["prefill"].append(engine.stats["prefill_tokens"] - before)
        res["tokens"].append(statistics.mean(len(engine.encode(c)) for c in ctx))
        print(f"ensemble bench: {mode} step {s + 1}/{steps}: {res['s'][-1]:.1f}s, "
              f"{res['prefill'][-1]} tokens prefilled", flush=True)
    return res


def score(engine, contexts: list[str], continuations: list[list[str]], mode: str) -> list[list[dict]]:
    """Every context's candidates scored at once (all in flight together, as a step of many problems)."""
    return engine.run_batch([engine.score(c, k, mode) for c, k in zip(contexts, continuations)])


def table(naive: dict, cached: dict, block_size: int, blocks: int) -> str:
    import torch

    def med(r: dict, k: str) -> float:
        return statistics.median(r[k][1:] or r[k])

    diff = max((abs(x["mean_nll"] - y["mean_nll"]) for a, b in zip(naive["out"], cached["out"])
                for pa, pb in zip(a, b) for x, y in zip(pa, pb)), default=0.0)
    ns, cs = med(naive, "s"), med(cached, "s")
    ratio = ns / max(1e-9, cs)
    lines = [f"Ensemble scoring steps: {PROBLEMS} problems x {CANDIDATES} candidates at ~{CONTEXT}-token contexts, "
             f"median over {len(naive['s']) - 1} warm step(s) (in-process vLLM CPU engine, tiny model, float32, "
             f"default KV block size {block_size}, KV cache of {blocks} blocks = {blocks * block_size} tokens for "
             f"{PROBLEMS * (CONTEXT + 64)} tokens of contexts, {torch.get_num_threads()} compute thread(s)).", "",
             "| mode | ms/step | CPU s/step | prefilled tok/step |", "|---|---|---|---|",
             f"| naive | {ns * 1e3:.0f} | {med(naive, 'cpu'):.2f} | {med(naive, 'prefill'):.0f} |",
             f"| cached | {cs * 1e3:.0f} | {med(cached, 'cpu'):.2f} | {med(cached, 'prefill'):.0f} |", "",
             f"Wall-time ratio naive/cached {ratio:.1f}x, CPU-time ratio "
             f"{med(naive, 'cpu') / max(1e-9, med(cached, 'cpu')):.1f}x, prefill ratio "
             f"{med(naive, 'prefill') / max(1, med(cached, 'prefill')):.1f}x; max abs diff of candidate mean NLL "
             f"{diff:.1e}. The cache holds about {CACHE_SHARE:.0%} of the contexts, so a context evicted since its "
             "last step is re-prefilled once (not once per candidate); the machine's other load is in the "
             "wall times (CPU time is this process's).", "",
             f"ensemble: cached/naive={ratio:.1f} at {CONTEXT}"]
    return "\n".join(lines) + "\n"


def main(out_dir: str | os.PathLike = "runs/bench", quick: bool = False, threads: int = THREADS) -> str:
    if threads:
        # Before the engine exists (vLLM's CPU worker disables torch.set_num_threads afterwards).
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        import torch

        torch.set_num_threads(threads)
    from pipeline.engine.vllm_engine import ModelEngine

    m = bench_model()
    probe = ModelEngine(m)  # the default block size of this engine, then a cache sized from it
    block_size = probe.llm.vllm_config.cache_config.block_size
    del probe
    blocks = max(2 * (CONTEXT + 512) // block_size, int(CACHE_SHARE * PROBLEMS * (CONTEXT + 64) / block_size))
    engine = ModelEngine(m, engine_overrides={"num_gpu_blocks_override": blocks})
    score(engine, [engine.thinking_prompt("warm up")], [[" a b c."]], "naive")  # one-off kernel/compile costs
    steps = 2 if quick else STEPS
    naive = run_steps(engine, "naive", CONTEXT, steps)
    cached = run_steps(engine, "cached", CONTEXT, steps)
    md = table(naive, cached, block_size, blocks)
    print(md)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ensemble_bench.md").write_text(md)
    return md


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/bench", quick="--quick" in sys.argv)
