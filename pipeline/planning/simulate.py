"""Event-driven simulation of continuously batched engines: makespans that know the CoT tail.

Mean throughput (tokens / tokens-per-second) assumes an engine's batch is always
full.  Reasoning CoTs are long-tailed, so how an engine is *fed* decides how
full it stays:

* **streaming** (today's execution, :mod:`pipeline.stages.runner`): requests go to
  the engine as soon as they exist, up to ``stream.max_in_flight`` per replica,
  so a slot freed by a finished sequence is refilled at the next step;
* **synchronous shards** (the execution streaming replaced, kept as a baseline):
  the engine gets ``shard`` requests at a time and returns when the shard's
  longest request is done, so it idles at every shard's tail.

:func:`simulate_engine` replays requests (arrival time, prompt tokens, decode
tokens) through one engine with ``slots`` sequence slots.  Each step decodes one
token for every running sequence and costs :meth:`StepCost.step` — a decode step
whose time grows linearly with the batch size, from the single-sequence decode
rate (batch 1) to the batched decode rate (batch ``StepCost.batch``) of the
throughput table in :mod:`pipeline.planning.throughput` — plus the prefill of
the prompts admitted in that step at the table's prefill rate.  Between two
events (a sequence finishing, a request arriving at a free slot) the batch does
not change, so the simulation jumps from event to event: O(requests · log slots).

This is a model: it ignores KV-cache growth with context (``StepCost.batch`` is
the concurrency the table's decode rate holds at, e.g. what the KV cache of a
32B model allows) and preemption.  Nothing here imports ray, vllm or torch.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Sequence

from pipeline.planning.throughput import ModelThroughput


@dataclass(frozen=True)
class StepCost:
    """Seconds per engine step as a function of the batch and of the prefill tokens in it."""

    step1_s: float  # one decode step with one sequence running
    stepB_s: float  # one decode step with `batch` sequences running
    batch: int  # slots: sequences one engine runs at once
    prefill_s_per_token: float

    def step(self, b: int) -> float:
        """Decode step time with ``b`` sequences: linear between batch 1 and ``batch``."""
        if self.batch <= 1 or b <= 1:
            return self.step1_s
        return self.step1_s + (self.stepB_s - self.step1_s) * (min(b, self.batch) - 1) / (self.batch - 1)

    @classmethod
    def from_throughput(cls, t: ModelThroughput, max_num_seqs: int) -> "StepCost":
        """From a throughput-table row: ``decode_tps`` holds at ``t.batch`` sequences (default
        ``max_num_seqs``), ``single_decode_tps`` at one."""
        b = max(1, min(int(max_num_seqs), int(t.batch or max_num_seqs)))
        step1 = 1.0 / t.single_decode_tps
        # The batched step can never be faster than one sequence's step.
        return cls(step1, max(step1, b / t.decode_tps), b, 1.0 / t.prefill_tps)


@dataclass(frozen=True)
class Req:
    """One request: when it reaches the engine, its prompt and how many tokens it decodes."""

    arrival_s: float
    prompt_tokens: float
    decode_tokens: int


@dataclass
class EngineRun:
    """Result of one simulated engine."""

    makespan_s: float  # when its last request finished (absolute, like the arrivals)
    finish_s: list[float]  # per request, in input order
    steps: int
    busy_s: float  # time with at least one sequence running or prefilling
    mean_batch: float  # average running sequences per step

    @property
    def requests(self) -> int:
        return len(self.finish_s)


def simulate_engine(reqs: Sequence[Req], cost: StepCost, slots: int | None = None, start_s: float = 0.0) -> EngineRun:
    """Replay ``reqs`` (admitted first come, first served) through one continuously batched engine.

    ``slots`` caps the sequences running at once (default ``cost.batch``); a
    request is admitted at the first step at which it has arrived and a slot is
    free.  Returns absolute finish times (``start_s`` = when the engine is ready).
    """
    return simulate_arrays(
        [r.arrival_s for r in reqs],
        [r.prompt_tokens for r in reqs],
        [r.decode_tokens for r in reqs],
        cost,
        slots,
        start_s,
    )


def simulate_arrays(
    arrival: Sequence[float],
    prompt: Sequence[float],
    decode: Sequence[int],
    cost: StepCost,
    slots: int | None = None,
    start_s: float = 0.0,
) -> EngineRun:
    """:func:`simulate_engine` on parallel lists (no per-request objects: planners replay ~10^5)."""
    n = len(arrival)
    slots = max(1, int(slots or cost.batch))
    order = sorted(range(n), key=arrival.__getitem__)
    finish = [start_s] * n
    running: list[tuple[int, int]] = []  # (absolute step at which it finishes, request index)
    t, step, i, busy, seq_steps = float(start_s), 0, 0, 0.0, 0
    pre_s = cost.prefill_s_per_token
    while i < n or running:
        prefill = 0.0
        while len(running) < slots and i < n and arrival[order[i]] <= t:
            j = order[i]
            heapq.heappush(running, (step + max(1, int(decode[j])), j))
            prefill += prompt[j]
            i += 1
        if not running:  # idle until the next request arrives
            t = max(t, arrival[order[i]])
            continue
        t0 = t
        t += prefill * pre_s
        b = len(running)
        dt = cost.step(b)
        k = running[0][0] - step
        if b < slots and i < n:  # a free slot: stop when the next request arrives
            k = min(k, max(1, math.ceil((arrival[order[i]] - t) / dt)))
        t += k * dt
        step += k
        seq_steps += k * b
        busy += t - t0
        while running and running[0][0] == step:
            finish[heapq.heappop(running)[1]] = t
    return EngineRun(max(finish, default=start_s), finish, step, busy, seq_steps / step if step else 0.0)


def simulate_shards(
    reqs: Sequence[Req], cost: StepCost, shard: int, slots: int | None = None, start_s: float = 0.0
) -> EngineRun:
    """The synchronous-shard execution: ``shard`` requests at a time (in input order, all
    present from the start), each shard returning when its longest request is done."""
    shard = max(1, int(shard))
    t, finish, steps, busy, seq = float(start_s), [], 0, 0.0, 0.0
    for a in range(0, len(reqs), shard):
        part = [Req(0.0, r.prompt_tokens, r.decode_tokens) for r in reqs[a : a + shard]]
        run = simulate_engine(part, cost, min(int(slots or cost.batch), shard), start_s=t)
        finish += run.finish_s
        steps += run.steps
        busy += run.busy_s
        seq += run.mean_batch * run.steps
        t = run.makespan_s
    return EngineRun(t, finish, steps, busy, seq / steps if steps else 0.0)


def split_replicas(arrival: Sequence[float], decode: Sequence[int], k: int) -> list[list[int]]:
    """Request indices per replica: in arrival order, each to the replica with the least decode
    work handed to it so far (the pool dispatches to the least loaded replica)."""
    k = max(1, int(k))
    parts: list[list[int]] = [[] for _ in range(k)]
    load = [(0.0, r) for r in range(k)]
    for i in sorted(range(len(arrival)), key=arrival.__getitem__):
        w, r = heapq.heappop(load)
        parts[r].append(i)
        heapq.heappush(load, (w + decode[i], r))
    return parts


def simulate_replicas(
    arrival: Sequence[float],
    prompt: Sequence[float],
    decode: Sequence[int],
    cost: StepCost,
    replicas: int,
    slots: int | None = None,
    start_s: float = 0.0,
) -> EngineRun:
    """Streaming over ``replicas`` data-parallel engines of one model (merged into one :class:`EngineRun`;
    ``steps`` is the longest replica's)."""
    if replicas <= 1:
        return simulate_arrays(arrival, prompt, decode, cost, slots, start_s)
    finish = [start_s] * len(arrival)
    steps, busy, seq = 0, 0.0, 0.0
    for part in split_replicas(arrival, decode, replicas):
        run = simulate_arrays(
            [arrival[i] for i in part], [prompt[i] for i in part], [decode[i] for i in part], cost, slots, start_s
        )
        for i, f in zip(part, run.finish_s):
            finish[i] = f
        steps = max(steps, run.steps)
        busy += run.busy_s
        seq += run.mean_batch * run.steps
    return EngineRun(max(finish, default=start_s), finish, steps, busy, seq / steps if steps else 0.0)
