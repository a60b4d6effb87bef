"""The run's makespan with CoT tails: every engine of every wave simulated, streaming vs synchronous shards, replicas.

:func:`build_requests` turns a run config into the requests each engine serves —
one per generated CoT (prompt, CoT + answer tokens, lengths from
:mod:`pipeline.planning.lengths`), one per (CoT, variant, target) transfer, the
LLM filter's requests, the ensemble's proposals and scorings — with their
dependencies: a transfer (or filter) request exists once its source CoT has
finished.  :func:`simulate_run` replays them per wave of the planner's schedule
through :mod:`pipeline.planning.simulate`:

* **streaming** (what ``crosscot run`` does): every engine fed continuously;
  transfers arrive when their CoT finishes on the source engine.  Source and
  target engines depend on each other (a source also serves transfers), so the
  simulation is repeated with the previous pass's finish times (``passes``);
* **shards** (the synchronous execution streaming replaced): each stage in
  synchronous shards of ``shard`` requests, a barrier after generate;
* **replicas**: :func:`choose_replicas` adds data-parallel engines of the
  bottleneck model while idle GPUs remain and the makespan improves.

Simplifications (said in the plan output): the ensemble's per-problem step chain
is not simulated (its proposals and scorings stream as independent requests —
with ~1k problems in flight the engines are throughput bound); KV-cache growth
is folded into the table's batch size; load times come from the node type.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from pipeline.planning.lengths import DATA, cot_lengths
from pipeline.planning.simulate import Req, StepCost, simulate_replicas, simulate_shards
from pipeline.planning.throughput import ModelThroughput

if TYPE_CHECKING:
    from pipeline.config import RunConfig
    from pipeline.planning.cluster import ClusterSpec
    from pipeline.planning.plan import PlanParams
    from pipeline.planning.schedule import Schedule

SHARD = 64  # chunk size of the synchronous execution streaming replaced


@dataclass
class Item:
    """One request with its dependency: it arrives when ``after`` (another item's index) finishes."""

    stage: str
    model: str
    prompt: float
    decode: int
    after: Optional[int] = None


@dataclass
class TailOptions:
    shard: int = SHARD
    passes: int = 3
    seed: int = 0
    data_dir: str = str(DATA)
    measured: Optional[dict[str, list[int]]] = None  # source model -> measured CoT lengths


@dataclass
class SimResult:
    """Simulated makespans (seconds, load time included) of one way of running the run."""

    makespan_s: float
    engine_s: dict[str, float]  # per model: when its engine's last request finished (summed over waves)
    wave_s: list[float]
    replicas: dict[str, int] = field(default_factory=dict)


def build_requests(run: "RunConfig", n: int, p: "PlanParams", opt: TailOptions) -> tuple[list[Item], dict[str, str]]:
    """Every engine request of the run, and where each model's CoT lengths came from."""
    from pipeline.planning.plan import DATASET_PROMPT_TOKENS, _variant_share

    P = p.prompt_tokens if p.prompt_tokens is not None else DATASET_PROMPT_TOKENS.get(run.dataset.name, 200)
    g = run.generate
    A = max(1, round(g.answer_budget * p.answer_fill))
    stages, names = set(run.stages), run.model_names
    items: list[Item] = []
    sources_of: dict[str, list[tuple[int, int, str]]] = {}  # source -> [(item index, CoT length, method)]
    origin: dict[str, str] = {}
    if "generate" in stages:
        for m in run.models.values():
            cache = m.enable_prefix_caching
            for method in g.methods:
                k = 1 if method != "sampled" else g.num_samples
                if method == "empty":
                    items += [Item("generate", m.name, P, A) for _ in range(n)]
                    continue
                lens, origin[m.name] = cot_lengths(
                    m.name,
                    n * k,
                    g.thought_budget,
                    p.thought_fill,
                    seed=opt.seed + len(items),
                    data_dir=opt.data_dir,
                    measured=opt.measured,
                )
                for L in lens:  # k samples of a problem share its prompt's KV with prefix caching
                    sources_of.setdefault(m.name, []).append((len(items), L, method))
                    items.append(Item("generate", m.name, P / k if cache else P, L + A))
    srcs = list(run.transfer.sources or names)
    filt = run.truncate.filter == "llm" and run.truncate.filter_model and "truncate" in stages
    e = run.ensemble
    ens = "ensemble" in stages and e.enabled
    steps = min(e.max_steps, math.ceil(e.thought_budget * p.thought_fill / p.sentence_tokens))
    cots = [c for s in srcs for c in sources_of.get(s, [])]
    t = run.transfer
    A_t = max(1, round(t.answer_budget * p.answer_fill))

    def transfers(gi: int, L: int, method: str, src: str) -> None:
        after = gi
        if filt:
            items.append(
                Item(
                    "truncate",
                    run.truncate.filter_model,
                    L + p.filter_prompt_tokens,
                    max(1, round(L * p.without_answer_share)),
                    after=gi,
                )
            )
            after = len(items) - 1
        if "transfer" not in stages:
            return
        for target in t.targets or names:  # which CoTs go where: stages.transfer.transfer_method
            cache = run.model(target).enable_prefix_caching
            for v in t.variants:
                if method == "sampled" and (target != src or v == "full"):
                    continue
                pre = L * _variant_share(v, p) + (P / len(t.variants) if cache else P)
                items.append(Item("transfer", target, pre, A_t, after=gi if v == "full" else after))

    if ens:
        cand = min(e.max_candidate_tokens, p.sentence_tokens)
        for gname in e.generators:  # one proposal per (problem, step): C candidate sequences, C slots
            items += _coarse(
                "ensemble",
                gname,
                n * steps * e.candidates,
                p.sentence_tokens / e.candidates,
                e.max_candidate_tokens,
                run.model(gname).max_num_seqs,
            )
        for ename in e.evaluators:  # cached scoring: a prefill of the candidates, one step
            items += _coarse(
                "ensemble", ename, n * steps * len(e.generators), cand * e.candidates, 1, run.model(ename).max_num_seqs
            )
        # Problems advance independently but all at once, so their CoTs close near the end of the
        # proposals: the answers wait for the last proposal of the first generator.
        last = max(i for i, it in enumerate(items) if it.stage == "ensemble" and it.model == e.generators[0])
        first = len(items)
        items += [Item("ensemble", e.generators[0], P + steps * p.sentence_tokens, A, after=last) for _ in range(n)]
        cots += [(first + i, steps * round(p.sentence_tokens), "ensemble") for i in range(n)]
    src_of = {gi: s for s in srcs for gi, _, _ in sources_of.get(s, [])}
    for gi, L, method in cots:
        transfers(gi, L, method, src_of.get(gi, ""))
    return items, origin


def _coarse(stage: str, model: str, count: int, prompt: float, decode: int, slots: int) -> list[Item]:
    """``count`` identical independent requests as fewer, j times longer ones (same tokens; at
    least 16 per slot, so the engine's batch stays as full): ensembles send ~10^5-10^6 tiny requests."""
    j = max(1, count // (16 * max(1, int(slots))))
    q, r = divmod(count, j)
    out = [Item(stage, model, prompt * j, decode * j) for _ in range(q)]
    if r:
        out.append(Item(stage, model, prompt * r, decode * r))
    return out


def step_costs(run: "RunConfig", tput: dict[str, ModelThroughput]) -> dict[str, StepCost]:
    return {m.name: StepCost.from_throughput(tput[m.name], int(m.max_num_seqs)) for m in run.models.values()}


def _slots(run: "RunConfig", model: str, cost: StepCost) -> int:
    """Sequences one replica runs at once under streaming: the engine's batch, within the
    per-replica in-flight bound (``stream.max_in_flight``, default 2 x max_num_seqs)."""
    m = run.model(model)
    from pipeline.engine.protocol import in_flight_bound

    bound = in_flight_bound(run.stream.max_in_flight, m.max_num_seqs)
    return max(1, min(cost.batch, bound))


def simulate_run(
    run: "RunConfig",
    items: list[Item],
    costs: dict[str, StepCost],
    schedule: "Schedule",
    load_s: dict[str, float],
    opt: TailOptions,
    replicas: Optional[dict[str, int]] = None,
    mode: str = "streaming",
) -> SimResult:
    """Makespan of the run's waves, streaming (``mode="streaming"``) or in synchronous shards."""
    reps = {
        m.name: max(1, int(replicas.get(m.name, m.replicas) if replicas else m.replicas)) for m in run.models.values()
    }
    finish: dict[int, float] = {}  # item -> absolute finish (seconds since the run started)
    t0, wave_s, engine_s = 0.0, [], {m: 0.0 for m in run.model_names}
    done_before: set[int] = set()
    for wave in schedule.waves:
        here = {p.model: p for p in wave.placements}
        # The pool starts a wave's engines together and the flow begins when all are ready.
        start = t0 + max((load_s.get(m, 0.0) for m, p in here.items() if p.loaded), default=0.0)
        ready = {m: start for m in here}
        mine = [
            i
            for i, it in enumerate(items)
            if it.model in here and it.stage in here[it.model].stages and i not in done_before
        ]
        if mode == "shards":
            end = _shard_wave(run, items, mine, costs, ready, opt, finish)
        else:
            end = _stream_wave(run, items, mine, costs, ready, opt, reps, finish, t0)
        for m in here:
            engine_s[m] += max([finish[i] for i in mine if items[i].model == m], default=ready[m]) - t0
        done_before |= set(mine)
        wave_s.append(end - t0)
        t0 = end
    return SimResult(t0, engine_s, wave_s, dict(reps))


def _stream_wave(run, items, mine, costs, ready, opt, reps, finish, t0) -> float:
    by_model: dict[str, list[int]] = {}
    for i in mine:
        by_model.setdefault(items[i].model, []).append(i)
    inside = set(mine)
    dependent = {i for i in mine if items[i].after in inside}
    # Pass 1 without the requests that wait for another one in this wave (their parents' finish
    # times are not known yet); then every request, arriving when its parent finished last pass.
    passes = max(2, opt.passes) if dependent else 1
    for ps in range(passes):
        for m, ix in by_model.items():
            if ps == 0 and dependent:
                ix = [i for i in ix if i not in dependent]
            arr = [ready[m] if items[i].after is None else max(ready[m], finish.get(items[i].after, t0)) for i in ix]
            r = simulate_replicas(
                arr,
                [items[i].prompt for i in ix],
                [items[i].decode for i in ix],
                costs[m],
                reps.get(m, 1),
                _slots(run, m, costs[m]),
                ready[m],
            )
            finish.update(zip(ix, r.finish_s))
    return max([finish[i] for i in mine] + list(ready.values()), default=t0)


def _shard_wave(run, items, mine, costs, ready, opt, finish) -> float:
    """Synchronous shards, stage by stage: generate (and the ensemble), a barrier, then truncate
    (the filter model) and transfer on every engine."""
    first = {"generate", "ensemble"}
    end1 = dict(ready)
    for m in ready:
        ix = [i for i in mine if items[i].model == m and items[i].stage in first]
        if ix:
            r = simulate_shards(
                [Req(0, items[i].prompt, items[i].decode) for i in ix], costs[m], opt.shard, costs[m].batch, ready[m]
            )
            finish.update(zip(ix, r.finish_s))
            end1[m] = r.makespan_s
    barrier = max(end1.values(), default=0.0)
    end = barrier
    for stage in ("truncate", "transfer"):
        stage_end = end
        for m in ready:
            ix = [i for i in mine if items[i].model == m and items[i].stage == stage]
            if ix:
                r = simulate_shards(
                    [Req(0, items[i].prompt, items[i].decode) for i in ix], costs[m], opt.shard, costs[m].batch, end
                )
                finish.update(zip(ix, r.finish_s))
                stage_end = max(stage_end, r.makespan_s)
        end = stage_end
    return max(end, max(end1.values(), default=0.0))


def choose_replicas(
    run: "RunConfig",
    items: list[Item],
    costs: dict[str, StepCost],
    schedule: "Schedule",
    load_s: dict[str, float],
    cluster: "ClusterSpec",
    opt: TailOptions,
    share_gpus: bool = False,
    max_rounds: int = 64,
) -> tuple[SimResult, list[str]]:
    """Fill idle GPUs with replicas of the bottleneck model while the makespan does not grow and
    the bottleneck's own finish improves.  Returns the result and the Hydra overrides."""
    from pipeline.planning.packing import Packer, engine_demand

    reps = {m.name: max(1, int(m.replicas)) for m in run.models.values()}
    best = simulate_run(run, items, costs, schedule, load_s, opt, reps)
    if len(schedule.waves) != 1 or cluster.cpu_only:
        return best, []  # waves: engines do not all fit, there is no idle accelerator to fill
    packer = Packer(cluster, share_gpus=share_gpus)
    frozen: set[str] = set()
    for _ in range(max_rounds):
        cands = [m for m in best.engine_s if m not in frozen and m in reps]
        if not cands:
            break
        b = max(cands, key=lambda m: best.engine_s[m])
        trial = {**reps, b: reps[b] + 1}
        demands = [engine_demand(run.model(m)) for m, k in trial.items() for _ in range(k)]
        if not packer.fits(demands):
            frozen.add(b)
            continue
        res = simulate_run(run, items, costs, schedule, load_s, opt, trial)
        if res.makespan_s <= best.makespan_s + 1e-9 and res.engine_s[b] < best.engine_s[b] * 0.99:
            reps, best = trial, res
        else:
            frozen.add(b)
    keys = {m.name: k for k, m in run.models.items()}
    overrides = [f"models.{keys[m]}.replicas={k}" for m, k in reps.items() if k != run.model(m).replicas]
    return best, overrides


@dataclass
class TailPlan:
    """What the plan shows: simulated makespans, streaming vs shards vs streaming + replicas."""

    streaming: SimResult
    shards: SimResult
    with_replicas: SimResult
    replica_overrides: list[str]
    origin: dict[str, str]  # model -> where its CoT lengths came from
    shard: int
    requests: int


def plan_tails(
    run: "RunConfig",
    n: int,
    params: "PlanParams",
    tput: dict[str, ModelThroughput],
    schedule: "Schedule",
    load_s: dict[str, float],
    cluster: "ClusterSpec",
    opt: Optional[TailOptions] = None,
    share_gpus: bool = False,
) -> TailPlan:
    opt = opt or TailOptions()
    items, origin = build_requests(run, n, params, opt)
    costs = step_costs(run, tput)
    stream = simulate_run(run, items, costs, schedule, load_s, opt)
    shards = simulate_run(run, items, costs, schedule, load_s, opt, mode="shards")
    reps, overrides = choose_replicas(
        copy.deepcopy(run), items, costs, schedule, load_s, cluster, opt, share_gpus=share_gpus
    )
    return TailPlan(stream, shards, reps, overrides, origin, opt.shard, len(items))


def _dur(s: float) -> str:
    from pipeline.planning.plan import fmt_duration

    return fmt_duration(s)


def format_tails(tp: TailPlan, node: str, mean_makespan_s: float, gpu: bool) -> str:
    """The headline lines of ``crosscot plan``: simulated makespans, and what is simulated."""
    src = ", ".join(f"{m}: {o}" for m, o in tp.origin.items()) or "no CoTs"
    base = tp.streaming.makespan_s
    lines = [
        f"Simulated makespan on {node} (SIMULATED: event-driven replay of {tp.requests:,} requests through "
        f"continuously batched engines, per-step cost from the throughput table; CoT lengths {src}):",
        f"  streaming (crosscot run)            {_dur(base):>10}",
        f"  synchronous shards of {tp.shard:<4}         {_dur(tp.shards.makespan_s):>10}   "
        f"({tp.shards.makespan_s / base if base else float('inf'):.2f}x streaming)",
    ]
    if gpu:
        r = tp.with_replicas
        reps = ", ".join(f"{m} x{k}" for m, k in r.replicas.items() if k > 1) or "none fit or help"
        lines.append(
            f"  streaming + replicas               {_dur(r.makespan_s):>10}   "
            f"({base / r.makespan_s if r.makespan_s else float('inf'):.2f}x faster; replicas: {reps})"
        )
        if tp.replica_overrides:
            lines.append("  replica overrides for `crosscot run`: " + " ".join(tp.replica_overrides))
    lines.append(f"  mean throughput (full batches)     {_dur(mean_makespan_s):>10}   (no tails; the wave table above)")
    eng = sorted(tp.streaming.engine_s.items(), key=lambda kv: -kv[1])
    lines.append(
        "  per engine, streaming: "
        + ", ".join(f"{m} {_dur(s)}" for m, s in eng)
        + "; shards: "
        + ", ".join(f"{m} {_dur(tp.shards.engine_s[m])}" for m, _ in eng)
    )
    lines.append(
        "  (not simulated here: the ensemble's per-problem step chain; KV growth with context and preemption: "
        "the KV section below)"
    )
    return "\n".join(lines)


def tails_dict(tp: TailPlan) -> dict:
    return {
        "simulated": True,
        "requests": tp.requests,
        "shard": tp.shard,
        "lengths": tp.origin,
        "streaming_s": tp.streaming.makespan_s,
        "shards_s": tp.shards.makespan_s,
        "replicas_s": tp.with_replicas.makespan_s,
        "replicas": tp.with_replicas.replicas,
        "replica_overrides": tp.replica_overrides,
        "engine_streaming_s": tp.streaming.engine_s,
        "engine_shards_s": tp.shards.engine_s,
        "engine_replicas_s": tp.with_replicas.engine_s,
    }
