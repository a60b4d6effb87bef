"""Bench: ensemble scoring at 8k-token contexts under KV eviction: cached scoring, as the stage admits problems, vs naive rescoring.

    crosscot bench ensemble [--quick]        (last line: ``ensemble: cached/naive=X.X at 8192``)

One in-process :class:`pipeline.engine.vllm_engine.ModelEngine` (no Ray) on a tiny
random model served with a 8k+ context window at the engine's **default KV block size**.
``PROBLEMS`` problems, each with a CoT context of about ``CONTEXT`` tokens, step as the
ensemble stage steps them: per step a problem's context grows by one sentence and its
``CANDIDATES`` candidate sentences (2 generators x 3 samples) are scored.  The KV cache is
sized (``num_gpu_blocks_override``) to hold only about half of the problems' contexts, so
a run with every problem in flight **evicts**; nothing is reset or pre-warmed between steps.
Every mode scores the same problems, steps and candidates; the time of the whole run
(every step of every problem, cold first steps included) is compared:

* **naive** — every candidate scored as a whole ``context + candidate`` sequence with
  ``prompt_logprobs`` (vLLM's default: prompt-logprob requests never read the cache),
  ``score(mode="naive")``, all problems in flight in lockstep (its best case: the largest
  batches);
* **cached, all in flight** — ``score(mode="cached")`` (one request per context: a
  prefix-cache hit when its blocks survived, else a re-prefill; then each candidate
  prefills its own tokens plus the context's partial last block) with every problem in
  flight: round-robin contexts larger than the cache thrash it (LRU evicts each context
  before its next step);
* **cached, KV admission** — the stage's own rule
  (:class:`pipeline.stages.kv_admission.KVAdmission`, with the engine's real KV size):
  problems start while their contexts fit the cache, each steps on its own as soon as its
  last step is scored.

Reported per mode: wall time, CPU time and prefilled tokens of the whole run, their ratios to
naive, and the largest difference between the modes' candidate mean NLLs (they must agree).
The table is printed and written to ``OUT_DIR/ensemble_bench.md``; its last line is the
wall-time ratio naive / cached-with-admission.
"""

from __future__ import annotations

import dataclasses
import os
import random
import sys
import time
from pathlib import Path

CONTEXT = 8192
PROBLEMS = 6
CANDIDATES = 6  # 2 generators x 3 samples
CANDIDATE_TOKENS = 24  # a candidate sentence's tokens at most (8-12 corpus words and a number)
STEPS = 8  # per problem; the first is cold in every mode
MIN_STEPS = 3  # fewer and the cold first step is most of the run: the ratio would mean little
QUICK_TARGET_S = 180.0  # what --quick aims for on this machine (the engine's start-up not included)
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
    return dataclasses.replace(
        m,
        name=f"{name}-8k",
        path=str(Path(m.path).parent / f"{name}-8k"),
        tiny=spec,
        max_model_len=CONTEXT + 512,
        kv_cache_gib=1.0,
        block_size=None,
    )


def estimate_s(unit: float, steps: int) -> float:
    """The bench's time from one naive problem-step's, alone (measured: in lockstep a naive step costs about
    half of that; then cached-all about 0.4 and KV admission about 0.1 of the naive run)."""
    return 0.75 * PROBLEMS * steps * unit


def quick_steps(unit: float, target_s: float | None = None) -> int:
    """Steps per problem that finish ``--quick`` in about ``target_s`` (at least MIN_STEPS, at most STEPS)."""
    target = QUICK_TARGET_S if target_s is None else target_s
    return max(MIN_STEPS, min(STEPS, int(target / max(1e-9, estimate_s(unit, 1)))))


def workload(engine, n_tokens: int, steps: int, seed: int = 0) -> tuple[list[str], list[list[str]], list]:
    """The same problems for every mode: base contexts, per-step growth, per-step candidates."""
    rng = random.Random(seed + n_tokens)
    bases = [_context(engine, rng, n_tokens, p) for p in range(PROBLEMS)]
    growth = [[_sentence(rng) for _ in range(steps)] for _ in range(PROBLEMS)]
    cands = [[[_sentence(rng) for _ in range(CANDIDATES)] for _ in range(PROBLEMS)] for _ in range(steps)]
    return bases, growth, cands


def run_mode(engine, mode: str, work: tuple, steps: int, admission: bool = False) -> dict:
    """Every step of every problem in ``mode``: wall, CPU and prefilled tokens of the whole run, the scores.

    ``admission``: problems run as the ensemble stage runs them (each on its own, started by
    :class:`KVAdmission` on this engine's KV size); else all problems step in lockstep.
    """
    import asyncio

    from pipeline.stages.kv_admission import KVAdmission, step_reserve

    bases, growth, cands = work
    engine.llm.reset_prefix_cache()  # each mode starts cold; nothing is reset between its steps
    out: list[list] = [[None] * PROBLEMS for _ in range(steps)]
    done = [0]
    label = mode + (", KV admission" if admission else ", all in flight" if mode == "cached" else "")

    def ctx(p: int, s: int) -> str:
        return bases[p] + "".join(growth[p][: s + 1])

    def tick() -> None:
        done[0] += 1
        if done[0] % PROBLEMS == 0 or done[0] == steps * PROBLEMS:
            print(
                f"ensemble bench: {label}: {done[0]}/{steps * PROBLEMS} problem-steps, {time.perf_counter() - t0:.1f}s",
                flush=True,
            )

    async def lockstep() -> None:
        for s in range(steps):
            res = await asyncio.gather(*(engine.score(ctx(p, s), cands[s][p], mode) for p in range(PROBLEMS)))
            for p, r in enumerate(res):
                out[s][p] = r
                tick()

    async def admitted() -> dict:
        longest = max(len(engine.encode(ctx(p, steps - 1))) for p in range(PROBLEMS))
        adm = KVAdmission(
            capacity=engine.kv_tokens(),
            limit=PROBLEMS,
            ceiling=longest,
            reserve=step_reserve(CANDIDATES, CANDIDATE_TOKENS),
        )

        async def problem(p: int) -> None:
            try:
                for s in range(steps):
                    c = ctx(p, s)
                    out[s][p] = await engine.score(c, cands[s][p], mode)
                    adm.update(p, len(engine.encode(c)))
                    tick()
            finally:
                await adm.release(p)

        tasks = []
        for p in range(PROBLEMS):
            await adm.acquire(p)
            tasks.append(asyncio.create_task(problem(p)))
        await asyncio.gather(*tasks)
        return {"waits": adm.waits}

    before = engine.stats["prefill_tokens"]
    t0, c0 = time.perf_counter(), time.process_time()
    extra = asyncio.run(admitted()) if admission else (asyncio.run(lockstep()) or {})
    return {
        "label": label,
        "s": time.perf_counter() - t0,
        "cpu": time.process_time() - c0,
        "prefill": engine.stats["prefill_tokens"] - before,
        "out": out,
        **extra,
    }


def score(engine, contexts: list[str], continuations: list[list[str]], mode: str) -> list[list[dict]]:
    """Every context's candidates scored at once (all in flight together, as a step of many problems)."""
    return engine.run_batch([engine.score(c, k, mode) for c, k in zip(contexts, continuations)])


def table(runs: list[dict], block_size: int, blocks: int, steps: int) -> str:
    import torch

    naive, best = runs[0], runs[-1]

    def diff(a: dict, b: dict) -> float:
        return max(
            (
                abs(x["mean_nll"] - y["mean_nll"])
                for sa, sb in zip(a["out"], b["out"])
                for pa, pb in zip(sa, sb)
                for x, y in zip(pa, pb)
            ),
            default=0.0,
        )

    ratio = naive["s"] / max(1e-9, best["s"])
    lines = [
        f"Ensemble scoring: {PROBLEMS} problems x {steps} steps x {CANDIDATES} candidates at ~{CONTEXT}-token "
        f"contexts, whole runs (cold first steps included; in-process vLLM CPU engine, tiny model, float32, "
        f"default KV block size {block_size}, KV cache of {blocks} blocks = {blocks * block_size} tokens for "
        f"{PROBLEMS * (CONTEXT + 64)} tokens of contexts, {torch.get_num_threads()} compute thread(s)).",
        "",
        "| mode | wall s | CPU s | prefilled tokens | naive/mode (wall) | naive/mode (prefill) |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['label']} | {r['s']:.1f} | {r['cpu']:.1f} | {r['prefill']} | "
            f"{naive['s'] / max(1e-9, r['s']):.1f}x | {naive['prefill'] / max(1, r['prefill']):.1f}x |"
        )
    lines += [
        "",
        f"Max abs difference of candidate mean NLL between modes: "
        f"{max(diff(naive, r) for r in runs[1:]):.1e}. KV admission waited {best.get('waits', 0)} time(s) "
        "for room: problems it holds back start when one finishes, and their contexts then stay cached "
        "between steps; with every problem in flight the contexts evict each other. The machine's other "
        "load is in the wall times (CPU time is this process's).",
        "",
        f"ensemble: cached/naive={ratio:.1f} at {CONTEXT}",
    ]
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
    # Size from this machine's speed: one naive problem-step (a fresh 8k context, CANDIDATES
    # candidates) timed alone (estimate_s).
    rng = random.Random(1)
    t0 = time.perf_counter()
    score(engine, [_context(engine, rng, CONTEXT, 99)], [[_sentence(rng) for _ in range(CANDIDATES)]], "naive")
    unit = time.perf_counter() - t0
    steps = quick_steps(unit) if quick else STEPS
    print(
        f"ensemble bench: {PROBLEMS} problems x {steps} steps at ~{CONTEXT} tokens, 3 modes; one naive "
        f"problem-step took {unit:.1f}s here, so about {estimate_s(unit, steps) / 60:.0f} min"
        + (f" (--quick: sized to about {QUICK_TARGET_S / 60:.0f} min, at least {MIN_STEPS} steps)" if quick else ""),
        flush=True,
    )
    work = workload(engine, CONTEXT, steps)
    runs = [
        run_mode(engine, "naive", work, steps),
        run_mode(engine, "cached", work, steps),
        run_mode(engine, "cached", work, steps, admission=True),
    ]
    md = table(runs, block_size, blocks, steps)
    print(md)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ensemble_bench.md").write_text(md)
    return md


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/bench", quick="--quick" in sys.argv)
