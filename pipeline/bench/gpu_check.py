"""``make gpu-check``: the engine figures a GPU sweep depends on, measured on one GPU in minutes.

For whoever has a GPU (the CPU machines these were written on have none, so every GPU number
is unmeasured until this runs).  One in-process engine per determinism setting, real vLLM; each
figure prints ONE summary line starting ``gpu-check:``:

1. ``step`` — decode step time vs batch (1, 8, 32, ...) at a short and a long context;
2. ``prefill`` — prefill tokens/s of a batch of long prompts;
3. ``cache`` — prefix-cache hit of answers after a CoT (by token ids), as ``crosscot bench cache``;
4. ``determinism`` — the same sampled requests alone and batched with others: share of identical
   token sequences, under ``exact`` (GPU: vLLM's batch-invariant kernels) and ``batch_dependent``,
   and the decode-speed cost of ``exact``;
5. ``plan`` — the planner's step cost (node file + :mod:`pipeline.planning.kv`) vs the measured one.

``--dry-run`` runs every figure on CPU with a tiny random model and tiny sizes (the tests run it);
its numbers only show the check works.  A GPU run: ``make gpu-check ARGS="--model nrr --node h200x8"``
(≤ 12 minutes on one H100/H200 with a 1.5B model; the weights must be local or in the HF cache).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.engine.protocol import CompleteRequest


@dataclass(frozen=True)
class Sizes:
    batches: tuple[int, ...]
    contexts: tuple[int, ...]
    decode: int
    prefill_prompts: int
    prefill_len: int
    det_requests: int
    cache_problems: int


DRY = Sizes((1, 4), (16, 256), 8, 4, 256, 4, 3)
GPU = Sizes((1, 8, 32, 128), (512, 8192), 64, 64, 4096, 32, 32)


def _model(key: str, dry: bool):
    from pipeline.config import compose

    if dry:
        return compose(["experiment=demo_tiny"]).model("tiny-think")
    cfg = compose(["experiment=reference"])
    for k, m in cfg.models.items():
        if key in (k, m.name):
            return m
    from pipeline.errors import UserError

    raise UserError(f"no model {key!r} in experiment=reference; use one of {list(cfg.models)}")


def _ids(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(100, vocab - 1) for _ in range(length)] for _ in range(n)]


def _timed(e, reqs: list[CompleteRequest]) -> float:
    t = time.perf_counter()
    e.complete_blocking(reqs)
    return time.perf_counter() - t


def step_cost(e, s: Sizes, vocab: int, max_len: int) -> dict:
    """Seconds per decode step by (batch, context): (time(decode) - time(1 token)) / (decode - 1)."""
    out: dict[str, float] = {}
    seed = 10
    for ctx in s.contexts:
        ctx = min(ctx, max_len - s.decode - 1)
        for b in s.batches:
            seed += 1
            full = [CompleteRequest(ids=p, max_tokens=s.decode, ignore_eos=True) for p in _ids(b, ctx, vocab, seed)]
            one = [CompleteRequest(ids=p, max_tokens=1, ignore_eos=True) for p in _ids(b, ctx, vocab, seed + 1000)]
            out[f"b{b}_ctx{ctx}"] = max(0.0, (_timed(e, full) - _timed(e, one)) / max(1, s.decode - 1))
    return out


def prefill(e, s: Sizes, vocab: int, max_len: int) -> float:
    n = min(s.prefill_len, max_len - 2)
    reqs = [CompleteRequest(ids=p, max_tokens=1) for p in _ids(s.prefill_prompts, n, vocab, 99)]
    return s.prefill_prompts * n / max(1e-9, _timed(e, reqs))


def determinism(e, s: Sizes, vocab: int) -> tuple[float, float]:
    """(share of sampled requests whose tokens are the same alone and in a batch, decode seconds)."""
    from pipeline.engine.protocol import Sampling

    prompts = _ids(s.det_requests, 24, vocab, 7)
    noise = _ids(s.det_requests * 3, 40, vocab, 8)

    def req(p: list[int], i: int) -> CompleteRequest:
        return CompleteRequest(ids=p, max_tokens=s.decode, sampling=Sampling(0.8, 0.95, -1, seed=1000 + i))

    alone = [e.complete_blocking([req(p, i)])[0].token_ids[0] for i, p in enumerate(prompts)]
    t = time.perf_counter()
    mixed = e.complete_blocking(
        [req(p, i) for i, p in enumerate(prompts)] + [req(p, 500 + j) for j, p in enumerate(noise)]
    )
    secs = time.perf_counter() - t
    same = sum(a == m.token_ids[0] for a, m in zip(alone, mixed))
    return same / len(prompts), secs


def cache_hit(e, m, s: Sizes) -> float:
    from pipeline.bench.cache import answer_hit

    r = answer_hit(e, m, s.cache_problems, max(64, 2 * s.decode), 4)
    return r["ids"]["hit"]


def planned_step(m, node: str, batch: int, ctx: int) -> float | None:
    """The planner's decode step (s) for ``batch`` sequences at ``ctx`` context, or None (no row)."""
    from pipeline.planning.kv import KVCost, kv_spec
    from pipeline.planning.simulate import StepCost
    from pipeline.planning.throughput import load_node_type

    nt = load_node_type(node)
    t = nt.model_throughput(m.name, int(m.tensor_parallel_size), float(m.params_b or 0.5))
    step = StepCost.from_throughput(t, int(m.max_num_seqs))
    spec = kv_spec(m, nt.gpu_memory_gib, nt.gpus_per_node > 0)
    return KVCost.for_node(step, spec, nt.name, int(m.tensor_parallel_size)).decode(batch, batch * ctx)


def run(model: str = "nrr", node: str = "h200x8", dry: bool = False) -> dict:
    import gc

    from pipeline.engine.vllm_engine import ModelEngine

    s = DRY if dry else GPU
    node = "cpu2" if dry else node
    res: dict[str, Any] = {"dry_run": dry, "node": node}
    det: dict[str, dict] = {}
    e = None
    for setting in ("exact", "batch_dependent"):
        m = _model(model, dry)
        m.determinism = setting
        if dry:
            m.block_size = 32  # the CPU default (128) is longer than the dry run's CoTs
        if e is None or not dry:  # the CPU build has no determinism switch: one engine serves both
            print(f"gpu-check: loading {m.name} (determinism={setting})", flush=True)
            e = ModelEngine(m, seed=0)
        vocab = int(e.info()["vocab_size"])
        if setting == "exact":
            res["model"], res["device"] = m.name, "cpu" if e._cpu else "cuda"
            res["step_s"] = step_cost(e, s, vocab, m.max_model_len)
            res["prefill_tps"] = prefill(e, s, vocab, m.max_model_len)
            res["answer_hit"] = cache_hit(e, m, s)
            ctx = min(s.contexts[-1], m.max_model_len - s.decode - 1)
            b = s.batches[-1]
            res["plan_step_s"] = planned_step(m, node, b, ctx)
            res["plan_point"] = f"b{b}_ctx{ctx}"
        same, secs = determinism(e, s, vocab)
        det[setting] = {"identical": same, "seconds": secs, "effective": setting if dry else e.core_runtime.determinism}
        if not dry or setting == "batch_dependent":
            e.loop.close()
            e = None
            gc.collect()
    res["determinism"] = det
    return res


def lines(res: dict) -> list[str]:
    st = res["step_s"]
    out = [
        "gpu-check: step " + " ".join(f"{k}={v * 1e3:.1f}ms" for k, v in st.items()),
        f"gpu-check: prefill {res['prefill_tps']:.0f} tok/s",
        f"gpu-check: cache answer_hit={res['answer_hit']:.2f}",
    ]
    d = res["determinism"]
    cost = d["exact"]["seconds"] / max(1e-9, d["batch_dependent"]["seconds"])
    out.append(
        f"gpu-check: determinism exact_identical={d['exact']['identical']:.2f} "
        f"batch_dependent_identical={d['batch_dependent']['identical']:.2f} exact_cost={cost:.2f}x"
    )
    measured = st.get(res["plan_point"])
    planned = res.get("plan_step_s")
    out.append(
        f"gpu-check: plan {res['plan_point']} planned={planned * 1e3:.1f}ms measured={measured * 1e3:.1f}ms "
        f"ratio={planned / max(1e-12, measured):.2f}"
        if planned is not None and measured
        else "gpu-check: plan no throughput row for this model on this node"
    )
    if res["dry_run"]:
        out.append("gpu-check: DRY RUN on CPU (tiny model): the figures only show the check works")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny model, tiny sizes (what the tests run)")
    ap.add_argument("--model", default="nrr", help="a model of experiment=reference (key or short name)")
    ap.add_argument("--node", default="h200x8", help="node type whose plan to compare with (conf/node)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args(argv)
    res = run(a.model, a.node, a.dry_run)
    if a.json:
        from pipeline.store.atomic import write_text_atomic

        write_text_atomic(a.json, json.dumps(res, indent=2))
    for line in lines(res):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
