"""KV-cache capacity, preemption and context-dependent step cost: what a batch of long CoTs really costs.

The simulation in :mod:`pipeline.planning.simulate` treats ``max_num_seqs`` slots as free.  A
32B model on one GPU holds ~240k KV tokens: 64 sequences at 4-5k tokens of context do not fit,
and vLLM then preempts (frees a running sequence's blocks and recomputes it later).  This module
models that:

* :func:`kv_spec` — KV bytes per token from the model's architecture (its local ``config.json``
  when present, else a table of the reference models, else an estimate from ``params_b``) and the
  KV capacity of one engine on a node (GPU memory x utilisation x TP - weights - overhead; on CPU
  ``kv_cache_gib``).
* :class:`KVCost` — a decode step costs the table's batch-dependent step
  (:class:`pipeline.planning.simulate.StepCost`) plus reading every running sequence's context
  (bytes of KV / memory bandwidth), plus prefill of the tokens admitted in the step.
* :func:`simulate_kv` — an event-driven engine: sequences grow by a token per step and hold
  ``ceil(context / block)`` blocks; when the next step would not fit, the newest running
  sequence is preempted (recompute: it waits again and re-prefills its whole context), as vLLM
  does.  A request may have a second phase (the answer after its CoT): it continues on the same
  blocks at priority, prefilling only what the prefix cache misses (``answer_hit``).
* :func:`headroom` — per engine: KV tokens, sequences that fit at the mean and p90 context, and a
  warning where ``max_num_seqs`` would preempt (``crosscot plan`` prints it).

Estimates; ``make gpu-check`` measures step cost vs batch and context on a real GPU.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.planning.simulate import StepCost

GIB = 1024**3

# (layers holding a full-length KV, KV heads, head dim, weights GiB) of the reference models. gpt-oss
# alternates full and 128-token sliding-window layers: only its 12 full layers grow with context.
ARCH: dict[str, tuple[int, int, int, float]] = {
    "QwQ-32B": (64, 8, 128, 61.0),
    "DAPO-Qwen-32B": (64, 8, 128, 61.0),
    "OpenThinker-7B": (28, 4, 128, 14.2),
    "Nemotron-Research-Reasoning-Qwen-1.5B": (28, 2, 128, 3.3),
    "gpt-oss-20b": (12, 8, 64, 12.8),
}
OVERHEAD_GIB = 4.0  # activations, CUDA graphs, allocator slack per GPU (vLLM profiles it at start)
# Effective bytes/s at which a decode step reads KV, by the node's GPU (HBM bandwidth x ~0.7).
KV_READ_BPS = {"h200": 3.4e12, "h100": 2.3e12, "a100": 1.4e12, "cpu": 2.0e10}


@dataclass(frozen=True)
class KVSpec:
    """One engine's KV cache: bytes per token, capacity, block size, where the numbers came from."""

    bytes_per_token: float
    capacity_tokens: int
    block: int
    source: str

    @property
    def blocks(self) -> int:
        return max(1, self.capacity_tokens // self.block)


def _arch_from_config(path: str) -> tuple[int, int, int] | None:
    f = Path(path) / "config.json"
    if not f.is_file():
        return None
    try:
        c = json.loads(f.read_text())
        c = c.get("text_config", c)
        heads = int(c["num_attention_heads"])
        hd = int(c.get("head_dim") or int(c["hidden_size"]) // heads)
        return int(c["num_hidden_layers"]), int(c.get("num_key_value_heads") or heads), hd
    except (KeyError, ValueError, TypeError, json.JSONDecodeError):
        return None


def kv_spec(m, gpu_memory_gib: float, gpus: bool, dtype_bytes: int = 2) -> KVSpec:
    """KV bytes per token and tokens one engine of model ``m`` holds (module docstring)."""
    known = next((v for k, v in ARCH.items() if k in str(m.path)), None)
    arch = _arch_from_config(str(m.path))
    weights = float(m.params_b) * 1e9 * dtype_bytes / GIB
    if arch is not None:
        layers, kvh, hd = arch
        src = "config.json"
        if known is not None:
            layers, weights = known[0], known[3]  # sliding-window layers and quantized weights
    elif known is not None:
        layers, kvh, hd, weights = known
        src = "reference table"
    else:
        # Qwen2.5-like GQA: ~7.8 KiB of KV per token per billion parameters (32B: 256 KiB/token).
        layers, kvh, hd = 1, 1, max(1, round(7.8 * 1024 * max(0.5, float(m.params_b)) / (2 * dtype_bytes)))
        src = "params_b estimate"
    per_token = 2.0 * layers * kvh * hd * dtype_bytes
    if gpus:
        tp = max(1, int(m.tensor_parallel_size))
        free = gpu_memory_gib * float(m.gpu_memory_utilization) * tp - weights - OVERHEAD_GIB * tp
    else:
        free = float(m.kv_cache_gib)
    block = int(m.block_size or (16 if gpus else 128))
    return KVSpec(per_token, max(0, int(free * GIB / per_token)), block, src)


@dataclass(frozen=True)
class KVCost:
    """Step cost with context: the batch step, plus seconds per KV token read, plus prefill."""

    step: StepCost
    ctx_s_per_token: float

    def decode(self, b: int, ctx_tokens: float) -> float:
        return self.step.step(b) + ctx_tokens * self.ctx_s_per_token

    @classmethod
    def for_node(cls, step: StepCost, spec: KVSpec, node_name: str, tp: int = 1) -> KVCost:
        bps = next((v for k, v in KV_READ_BPS.items() if k in node_name.lower()), KV_READ_BPS["h100"])
        return cls(step, spec.bytes_per_token / (bps * max(1, tp)))


@dataclass
class KVRun:
    """One simulated engine under a KV limit."""

    makespan_s: float
    finish_s: list[float]
    steps: int
    preemptions: int
    recomputed_tokens: float
    peak_blocks: int
    mean_batch: float


def simulate_kv(
    arrival: Sequence[float],
    prompt: Sequence[float],
    decode: Sequence[int],
    cost: KVCost,
    spec: KVSpec,
    slots: int,
    answer: Sequence[int] | None = None,
    answer_hit: float = 1.0,
    answer_extra: float = 0.0,
) -> KVRun:
    """Replay requests through one engine with ``spec.blocks`` KV blocks and ``slots`` sequences.

    ``answer[i]``: tokens of request i's second phase (its answer after the CoT), which continues on
    the CoT's blocks before any new request is admitted (priority); it prefills ``answer_extra``
    tokens plus the share ``1 - answer_hit`` of its context the prefix cache misses.
    """
    n = len(arrival)
    blk = spec.block
    ans = list(answer) if answer is not None else [0] * n
    order = sorted(range(n), key=arrival.__getitem__)
    waiting: list[tuple[int, float, int]] = []  # (priority, arrival, index): preempted first, by arrival
    run: list[int] = []  # running request indices, in admission order
    ctx = [0.0] * n  # tokens in KV per request
    left = [0] * n  # tokens still to decode in the current phase
    phase2 = [False] * n
    finish = [0.0] * n
    t, steps, pre, recomp, peak, seq = 0.0, 0, 0, 0.0, 0, 0
    i = 0
    done = 0

    def blocks(c: float) -> int:
        return int(math.ceil((c + 1) / blk))

    used = 0
    while done < n:
        while i < n and arrival[order[i]] <= t:
            j = order[i]
            heapq.heappush(waiting, (1, arrival[j], j))
            left[j] = max(1, int(decode[j]))
            i += 1
        prefill = 0.0
        while waiting and len(run) < slots:
            _, _, j = waiting[0]
            need = blocks(prompt[j] + ctx[j])
            if used + need > spec.blocks and run:
                break
            heapq.heappop(waiting)
            prefill += prompt[j] + ctx[j]  # a preempted request recomputes what it had
            ctx[j] = prompt[j] + ctx[j]
            used += need
            run.append(j)
        if not run:
            if i < n:
                t = max(t, arrival[order[i]])
                continue
            break
        # Steps until the next event: a phase ends, KV runs out, or a request arrives at a free slot.
        b = len(run)
        k = min(left[j] for j in run)
        free_tokens = (spec.blocks - used) * blk
        room = sum(blocks(ctx[j]) * blk - ctx[j] - 1 for j in run)  # tokens left in partial blocks
        if free_tokens + room < b:
            k = 1
        else:
            k = max(1, min(k, int((free_tokens + room) // b)))
        if i < n and len(run) < slots:
            dt1 = cost.decode(b, sum(ctx[j] for j in run))
            k = max(1, min(k, math.ceil(max(0.0, arrival[order[i]] - t) / max(dt1, 1e-12))))
        c0 = sum(ctx[j] for j in run)
        t += prefill * cost.step.prefill_s_per_token
        t += k * cost.step.step(b) + cost.ctx_s_per_token * (k * c0 + b * k * (k - 1) / 2)
        steps += k
        seq += k * b
        for j in run:
            ctx[j] += k
            left[j] -= k
        used = sum(blocks(ctx[j]) for j in run)
        # KV overflow: preempt the newest sequences until the rest fit (vLLM, FCFS: the last running).
        while used > spec.blocks and len(run) > 1:
            v = run.pop()
            recomp += ctx[v]
            pre += 1
            heapq.heappush(waiting, (0, arrival[v], v))
            ctx[v] -= prompt[v]  # what it generated stays to be recomputed with its prompt
            used = sum(blocks(ctx[j]) for j in run)
        peak = max(peak, used)
        for j in [j for j in run if left[j] <= 0]:
            if not phase2[j] and ans[j] > 0:
                phase2[j] = True
                left[j] = int(ans[j])
                t += (answer_extra + (1.0 - answer_hit) * ctx[j]) * cost.step.prefill_s_per_token
                continue
            run.remove(j)
            finish[j] = t
            done += 1
        used = sum(blocks(ctx[j]) for j in run)
    return KVRun(t, finish, steps, pre, recomp, peak, seq / steps if steps else 0.0)


@dataclass(frozen=True)
class Headroom:
    """KV headroom of one engine: sequences that fit vs ``max_num_seqs``."""

    model: str
    spec: KVSpec
    max_num_seqs: int
    mean_context: float
    p90_context: float

    @property
    def fit_mean(self) -> int:
        return int(self.spec.capacity_tokens // max(1.0, self.mean_context))

    @property
    def fit_p90(self) -> int:
        return int(self.spec.capacity_tokens // max(1.0, self.p90_context))

    @property
    def ratio(self) -> float:
        """KV tokens / tokens ``max_num_seqs`` sequences at the mean context need (< 1: preemption)."""
        return self.spec.capacity_tokens / max(1.0, self.max_num_seqs * self.mean_context)

    def warning(self) -> str | None:
        if self.fit_mean >= self.max_num_seqs:
            return None
        return (
            f"{self.model}: max_num_seqs={self.max_num_seqs} would preempt: its KV cache holds "
            f"{self.spec.capacity_tokens:,} tokens, ~{self.fit_mean} sequences at the mean context of "
            f"{self.mean_context:,.0f} tokens (~{self.fit_p90} at p90); set models.<key>.max_num_seqs="
            f"{max(1, self.fit_mean)} or raise tensor_parallel_size / gpu_memory_utilization"
        )


def headroom(model_cfg, spec: KVSpec, contexts: Sequence[float]) -> Headroom:
    xs = sorted(contexts) or [float(model_cfg.max_model_len)]
    return Headroom(
        model_cfg.name, spec, int(model_cfg.max_num_seqs), sum(xs) / len(xs), xs[min(len(xs) - 1, int(0.9 * len(xs)))]
    )


def format_headroom(rows: Sequence[Headroom]) -> str:
    """The ``crosscot plan`` section: one row per engine, then the warnings."""
    out = [
        "KV cache per engine (estimates; context = prompt + CoT + answer):",
        "",
        "| engine | KV bytes/token | KV tokens | mean context | fit at mean | fit at p90 | max_num_seqs | "
        "headroom | source |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for h in rows:
        out.append(
            f"| {h.model} | {h.spec.bytes_per_token / 1024:.0f} KiB | {h.spec.capacity_tokens:,} | "
            f"{h.mean_context:,.0f} | {h.fit_mean} | {h.fit_p90} | {h.max_num_seqs} | {h.ratio:.2f}x | "
            f"{h.spec.source} |"
        )
    warns = [w for w in (h.warning() for h in rows) if w]
    out += [""] + [f"WARNING: {w}" for w in warns] if warns else ["", "No engine's max_num_seqs exceeds its KV cache."]
    return "\n".join(out)


@dataclass(frozen=True)
class EngineKV:
    """One engine's generate load simulated with and without its KV limit."""

    headroom: Headroom
    requests: int
    blind_s: float  # KV-blind simulation (slots only)
    kv_s: float  # KV-aware, answers by token ids (prefix-cache hit)
    kv_retokenized_s: float  # KV-aware, answers re-prefilling their whole context
    preemptions: int


MAX_SIM_REQUESTS = 2000  # per engine: a sample keeps `crosscot plan` fast


def plan_kv(run_cfg, plan) -> list[EngineKV]:
    """KV headroom and a KV-aware simulation of every engine's generate requests (CoT, then answer)."""
    from pipeline.planning.lengths import cot_lengths
    from pipeline.planning.plan import DATASET_PROMPT_TOKENS
    from pipeline.planning.simulate import simulate_arrays
    from pipeline.planning.throughput import apply_node_overrides

    run_cfg, _ = apply_node_overrides(run_cfg, plan.node)
    p = plan.params
    g = run_cfg.generate
    P = p.prompt_tokens if p.prompt_tokens is not None else DATASET_PROMPT_TOKENS.get(run_cfg.dataset.name, 200)
    A = max(1, round(g.answer_budget * p.answer_fill))
    gpus = plan.node.gpus_per_node > 0
    out = []
    for m in run_cfg.models.values():
        spec = kv_spec(m, plan.node.gpu_memory_gib, gpus)
        k = sum(g.num_samples if meth == "sampled" else 1 for meth in g.methods if meth != "empty")
        n = max(1, min(MAX_SIM_REQUESTS, plan.n_problems * max(1, k)))
        lens, _ = cot_lengths(m.name, n, g.thought_budget, p.thought_fill)
        h = headroom(m, spec, [P + L + A for L in lens])
        step = StepCost.from_throughput(plan.throughput[m.name], int(m.max_num_seqs))
        cost = KVCost.for_node(step, spec, plan.node.name, int(m.tensor_parallel_size))
        slots = int(m.max_num_seqs)
        arr = [0.0] * n
        blind = simulate_arrays(arr, [P] * n, [L + A for L in lens], step, slots).makespan_s
        ids = simulate_kv(arr, [P] * n, lens, cost, spec, slots, [A] * n, answer_hit=1.0, answer_extra=8)
        txt = simulate_kv(arr, [P] * n, lens, cost, spec, slots, [A] * n, answer_hit=0.0, answer_extra=8)
        out.append(EngineKV(h, n, blind, ids.makespan_s, txt.makespan_s, ids.preemptions))
    return out


def format_plan_kv(rows: Sequence[EngineKV]) -> str:
    """The KV section of ``crosscot plan``: headroom, warnings, KV-aware vs KV-blind engine time."""
    from pipeline.planning.plan import fmt_duration

    out = [
        format_headroom([r.headroom for r in rows]),
        "",
        "One engine's generate requests (a sample of up to 2000, all queued at once), simulated:",
        "",
        "| engine | requests | slots only | with KV limit | preemptions | answers re-prefilled (old) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.headroom.model} | {r.requests} | {fmt_duration(r.blind_s)} | {fmt_duration(r.kv_s)} | "
            f"{r.preemptions} | {fmt_duration(r.kv_retokenized_s)} |"
        )
    return "\n".join(out)
