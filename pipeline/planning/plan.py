"""Run planning: requests, tokens, wave schedule, GPU-hours and wall time before a run starts.

``plan(run_cfg, node_type)`` answers "what will this experiment cost on that
machine?" from the run config alone:

1. **Work**: requests and prefill/decode tokens per stage and model, from the
   problem count and the budgets (a CoT is expected to use ``thought_fill`` of
   ``thought_budget``; answers ``answer_fill`` of their budget).
2. **Placement**: the wave schedule of :mod:`pipeline.planning.packing` on the node
   type's cluster (or a given :class:`ClusterSpec`).
3. **Time**: a throughput model — per model batched decode tokens/s, prefill
   tokens/s and single-sequence decode tokens/s, read from
   ``conf/node/<type>.yaml`` (documented *estimates*) or from measured
   telemetry JSON — plus a size-based load time per engine load.  Waves run one
   after another; inside a wave engines run in parallel, with a barrier between
   generate (+ LLM truncation) and transfer because transfer needs every
   source's CoTs.
4. **Baselines**: the reference study's way (models one after another, one
   request at a time) and "sequential but batched" (one model at a time, vLLM
   batching), each with its own load count.

Everything is arithmetic on config values: ``import pipeline.planning.plan`` imports
neither ray nor vllm.  The numbers are estimates for capacity planning and for
comparing schedules, not promises.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from pipeline.planning.cluster import ClusterSpec
from pipeline.planning.packing import demands_from_run
from pipeline.planning.schedule import Schedule, plan_waves, workload_from_run
from pipeline.planning.tails import TailOptions, TailPlan, format_tails, plan_tails, tails_dict
from pipeline.planning.throughput import (
    ModelThroughput,
    NodeType,
    PlanError,
    apply_node_overrides,
    load_node_type,
    load_seconds,
    load_telemetry,
    resolve_throughput,
)

if TYPE_CHECKING:
    from pipeline.config import RunConfig


# Typical prompt length (chat template + instructions + problem) per dataset, in tokens.
# MedCalc-Bench patient notes are long (median ~500-700 tokens) plus the task instruction.
DATASET_PROMPT_TOKENS: dict[str, int] = {"medcalc": 900, "toy_arith": 40, "gsm8k": 150, "instruction_induction": 300}


# Full test-set sizes, used when the dataset config has no `limit`.
DATASET_SIZES: dict[str, int] = {"medcalc": 1047, "gsm8k": 1319}


@dataclass
class PlanParams:
    """Assumptions of the token model (all overridable)."""

    thought_fill: float = 0.6  # expected CoT length / thought_budget (LRMs stop early or hit the cap)
    answer_fill: float = 0.5  # expected answer length / answer_budget
    prompt_tokens: Optional[int] = None  # None = DATASET_PROMPT_TOKENS[dataset] (or 200)
    without_answer_share: float = 0.9  # a "without answer" CoT keeps ~90% of the tokens
    # Ensemble evaluators: True = our cached scoring (ModelEngine.score, mode "cached"): only each
    # candidate's own tokens are prefilled; False = vLLM's default prompt-logprob requests, which
    # skip the prefix cache and re-prefill prompt + CoT so far for every candidate.
    evaluator_prefix_cache: bool = True
    sentence_tokens: float = 12.0  # ensemble: tokens per accepted sentence
    filter_prompt_tokens: int = 150  # LLM truncation filter: instruction around the CoT


@dataclass
class StageWork:
    """Requests and tokens of one stage for one model (one row of the plan table)."""

    stage: str  # generate | truncate | transfer | ensemble
    model: str  # the model doing the work
    detail: str  # method / variant / role
    requests: int
    prefill_tokens: float
    decode_tokens: float
    batched_s: float = 0.0  # engine time with batching (filled by plan())
    single_s: float = 0.0  # engine time one request at a time


def problem_count(run: "RunConfig", n_problems: Optional[int] = None) -> int:
    """``n_problems`` if given, else dataset.limit, else the dataset's known size."""
    if n_problems is not None:
        if n_problems < 1:
            raise PlanError(f"--problems {n_problems}: must be >= 1")
        return int(n_problems)
    d = run.dataset
    if d.name == "medcalc" and (d.options or {}).get("sample") == "genex":
        from pipeline.datasets.medcalc_study import SAMPLE_SIZE  # the study's 100 problems

        return min(SAMPLE_SIZE, int(d.limit)) if d.limit else SAMPLE_SIZE
    if d.limit:
        return int(d.limit)
    if d.name == "toy_arith":
        return int(d.size)
    if d.name in DATASET_SIZES:
        return DATASET_SIZES[d.name]
    raise PlanError(f"cannot tell how many problems dataset {d.name!r} has; pass --problems N or set dataset.limit")


def _variant_share(v: str, p: PlanParams) -> float:
    if v == "full":
        return 1.0
    if v == "without_answer":
        return p.without_answer_share
    m = re.search(r"(\d*\.\d+|\d+)", v)  # prefix variants carry their share in the name ("prefix_0.25")
    return float(m.group(1)) if m and 0 < float(m.group(1)) <= 1 else 1.0


def estimate_work(run: "RunConfig", n: int, params: Optional[PlanParams] = None) -> list[StageWork]:
    """Requests and tokens per stage and model for ``n`` problems."""
    p = params or PlanParams()
    P = p.prompt_tokens if p.prompt_tokens is not None else DATASET_PROMPT_TOKENS.get(run.dataset.name, 200)
    g = run.generate
    T = g.thought_budget * p.thought_fill
    A = g.answer_budget * p.answer_fill
    k = g.num_samples
    stages = set(run.stages)
    names = run.model_names
    rows: list[StageWork] = []
    cots_per_source = (1 if "default" in g.methods else 0) + (k if "sampled" in g.methods else 0)

    if "generate" in stages:
        for m in run.models.values():
            cache = m.enable_prefix_caching
            for method in g.methods:
                if method == "empty":
                    rows.append(StageWork("generate", m.name, "empty", n, n * P, n * A))
                elif method == "default":
                    rows.append(StageWork("generate", m.name, "default", n, n * P, n * (T + A)))
                else:  # sampled: k samples share the prompt's KV when prefix caching is on
                    rows.append(
                        StageWork(
                            "generate", m.name, f"sampled x{k}", n * k, n * P * (1 if cache else k), n * k * (T + A)
                        )
                    )

    if "truncate" in stages and run.truncate.filter == "llm" and run.truncate.filter_model:
        r = n * len(names) * cots_per_source  # the filter reads every model's CoTs (stages/truncate.py)
        rows.append(
            StageWork(
                "truncate",
                run.truncate.filter_model,
                "llm filter",
                r,
                r * (T + p.filter_prompt_tokens),
                r * T * p.without_answer_share,
            )
        )

    if "transfer" in stages:
        t = run.transfer
        A_t = t.answer_budget * p.answer_fill
        ens_cot = _ensemble_cot_tokens(run, p)
        for target in t.targets or names:
            cache = run.model(target).enable_prefix_caching
            for v in t.variants:
                r = transferred_cots(run, n, target, v)
                if not r:
                    continue
                # CoT tokens: every transferred CoT is a generated one, except the ensemble's
                cot = (T * (r - _ensemble_cots(run, n)) + ens_cot * _ensemble_cots(run, n)) / r * _variant_share(v, p)
                # With prefix caching the problem prompt is prefilled once per (problem, target).
                pre = r * cot + (n * P / len(t.variants) if cache else r * P)
                rows.append(StageWork("transfer", target, v, r, pre, r * A_t))

    e = run.ensemble
    if "ensemble" in stages and e.enabled:
        steps = min(e.max_steps, math.ceil(e.thought_budget * p.thought_fill / p.sentence_tokens))
        C, G = e.candidates, len(e.generators)
        cot_final = steps * p.sentence_tokens
        for gname in e.generators:
            cache = run.model(gname).enable_prefix_caching
            # Each step: one request with n=C; prefill only the new sentence when the prefix is cached.
            pre = n * (P + cot_final) if cache else n * steps * (P + cot_final / 2)
            rows.append(
                StageWork("ensemble", gname, "generator", n * steps, pre, n * steps * C * e.max_candidate_tokens)
            )
        for ename in e.evaluators:
            # Scoring uses prompt logprobs over the whole sequence, which vLLM recomputes (no prefix reuse).
            r = n * steps * G * C
            cand = min(e.max_candidate_tokens, p.sentence_tokens)
            avg_len = cand if p.evaluator_prefix_cache else P + cot_final / 2 + cand
            rows.append(StageWork("ensemble", ename, "evaluator", r, r * avg_len, r * 1))
        rows.append(StageWork("ensemble", e.generators[0], "answer", n, n * (P + cot_final), n * A))
    return rows


def _ensemble_cots(run: "RunConfig", n: int) -> int:
    return n if "ensemble" in run.stages and run.ensemble.enabled else 0


def _ensemble_cot_tokens(run: "RunConfig", p: PlanParams) -> float:
    e = run.ensemble
    return min(e.max_steps, math.ceil(e.thought_budget * p.thought_fill / p.sentence_tokens)) * p.sentence_tokens


def transferred_cots(run: "RunConfig", n: int, target: str, variant: str) -> int:
    """CoTs the transfer stage sends to ``target`` in ``variant`` (``stages.transfer.transfer_method``):
    every source's Default CoTs, the ensemble's CoTs, and the target's own Sampled CoTs in the
    variants other than ``full`` (the Sampled ``without_answer`` setting)."""
    g = run.generate
    srcs = set(run.transfer.sources or run.model_names)
    r = n * len(srcs) if "default" in g.methods and "generate" in run.stages else 0
    if "sampled" in g.methods and "generate" in run.stages and variant != "full" and target in srcs:
        r += n * g.num_samples
    return r + _ensemble_cots(run, n)


@dataclass
class WaveTime:
    index: int
    models: list[str]
    stages: tuple[str, ...]
    loads: int
    load_s: float  # longest load at the start of the wave
    seconds: float


@dataclass
class Baseline:
    """A sequential way of running the same work."""

    name: str
    description: str
    makespan_s: float
    loads: int
    gpu_hours_allocated: float  # node GPUs x makespan (what a rented node costs)


@dataclass
class Plan:
    """Everything ``crosscot plan`` prints."""

    node: NodeType
    n_problems: int
    params: PlanParams
    work: list[StageWork]
    throughput: dict[str, ModelThroughput]
    schedule: Schedule
    wave_times: list[WaveTime]
    load_s: dict[str, float]  # per model, one load
    makespan_s: float
    gpu_hours_allocated: float  # node GPUs x makespan
    gpu_hours_busy: float  # sum over engines of (resident time x GPUs)
    baselines: dict[str, Baseline]
    run_overrides: list[str] = field(default_factory=list)  # node-type engine sizing, as Hydra overrides
    # Simulated makespans that know the CoT tail (streaming / shards / + replicas): the headline.
    tails: "Optional[TailPlan]" = None

    def speedup(self, baseline: str) -> float:
        return self.baselines[baseline].makespan_s / self.makespan_s if self.makespan_s else float("inf")

    def totals(self) -> dict[str, dict[str, float]]:
        """Requests and tokens summed per stage."""
        out: dict[str, dict[str, float]] = {}
        for w in self.work:
            s = out.setdefault(w.stage, {"requests": 0, "prefill_tokens": 0.0, "decode_tokens": 0.0})
            s["requests"] += w.requests
            s["prefill_tokens"] += w.prefill_tokens
            s["decode_tokens"] += w.decode_tokens
        return out

    def format(self) -> str:
        return format_plan(self)


def _time(w: StageWork, t: ModelThroughput, single: bool) -> float:
    dec = t.single_decode_tps if single else t.decode_tps
    return w.prefill_tokens / t.prefill_tps + w.decode_tokens / dec


def wave_timing(
    waves: list, per: dict[tuple[str, str], float], load_s: dict[str, float], ens_time: float
) -> tuple[list[WaveTime], float]:
    """Seconds per wave and GPU-seconds held, from per-(stage, model) batched engine seconds."""
    out, busy = [], 0.0
    for wave in waves:
        ps = wave.placements
        # Engines sharing a GPU share its compute: slow each down by the most engines on any of its GPUs.
        on_gpu: dict[tuple[int, int], int] = {}
        for p in ps:
            for g in p.gpus:
                on_gpu[(p.node, g)] = on_gpu.get((p.node, g), 0) + 1
        slow = {p.model: max((on_gpu[(p.node, g)] for g in p.gpus), default=1) for p in ps}
        ld = {p.model: (load_s[p.model] if p.loaded else 0.0) for p in ps}
        gen = {
            p.model: slow[p.model] * per.get(("generate", p.model), 0.0) if "generate" in p.stages else 0.0 for p in ps
        }
        xfer = {
            p.model: slow[p.model] * per.get(("transfer", p.model), 0.0) if "transfer" in p.stages else 0.0 for p in ps
        }
        trunc = sum(slow[p.model] * per.get(("truncate", p.model), 0.0) for p in ps if "truncate" in p.stages)
        ensw = {
            p.model: slow[p.model] * per.get(("ensemble", p.model), 0.0) if "ensemble" in p.stages else 0.0 for p in ps
        }
        members = [p.model for p in ps if "ensemble" in p.stages]
        if "generate" in wave.stages and ({"truncate", "transfer", "ensemble"} & set(wave.stages)):
            # Barrier: transfer needs every source's CoTs (and their truncation).
            barrier = max(ld[m] + gen[m] for m in ld) + trunc
            start = {m: barrier for m in ld}
        elif trunc:  # the filter model must finish before any transfer of this wave starts
            barrier = max(ld.values()) + trunc
            start = {m: barrier for m in ld}
        else:
            start = {m: ld[m] + gen[m] for m in ld}
        # After the barrier each engine serves its transfers and its ensemble role together (vLLM
        # batches both); the lock-step ensemble also cannot beat its own critical path.
        secs = max((start[m] + xfer[m] + ensw[m] for m in ld), default=0.0)
        if members:
            secs = max(secs, max(start[m] for m in members) + ens_time)
        # Engines are held until the wave ends (the next wave needs the GPUs only then).
        busy += sum(secs * max(len(p.gpus), 1) * (p.gpu_fraction or 1.0) for p in ps)
        out.append(
            WaveTime(
                wave.index, wave.models, wave.stages, sum(p.loaded for p in ps), max(ld.values(), default=0.0), secs
            )
        )
    return out, busy


def plan(
    run_cfg: "RunConfig",
    node_type: "str | NodeType" = "h100x8",
    n_problems: Optional[int] = None,
    throughput: "str | dict | None" = None,
    *,
    params: Optional[PlanParams] = None,
    cluster: Optional[ClusterSpec] = None,
    share_gpus: "bool | str" = "auto",
    node_overrides: bool = True,
    tails: "TailOptions | bool" = True,
) -> Plan:
    """Plan ``run_cfg`` on ``node_type`` (name in conf/node, path, or NodeType).

    ``throughput`` is a telemetry JSON path or an already-loaded mapping
    (see :func:`load_telemetry`); ``cluster`` overrides the node type's cluster
    (e.g. the live Ray cluster from :func:`pipeline.planning.cluster.discover_cluster`),
    while the node type still supplies throughput and load speed.
    ``node_overrides`` applies the node type's ``model_overrides`` (engine sizing
    for that GPU size) first; :attr:`Plan.run_overrides` lists them as Hydra overrides.
    ``tails`` (options, or False to skip) adds :attr:`Plan.tails`: the event-driven simulation of
    every engine with replayed CoT lengths (:mod:`pipeline.planning.tails`).
    """
    node = node_type if isinstance(node_type, NodeType) else load_node_type(node_type)
    run_overrides: list[str] = []
    if node_overrides:
        run_cfg, run_overrides = apply_node_overrides(run_cfg, node)
    tele = load_telemetry(throughput) if isinstance(throughput, str) else throughput
    params = params or PlanParams()
    n = problem_count(run_cfg, n_problems)
    work = estimate_work(run_cfg, n, params)
    tput = resolve_throughput(run_cfg, node, tele)
    for w in work:
        w.batched_s = _time(w, tput[w.model], single=False)
        w.single_s = _time(w, tput[w.model], single=True)
    cl = cluster or node.cluster()
    demands = demands_from_run(run_cfg)
    load_s = {d.name: load_seconds(d, node) for d in demands}
    per: dict[tuple[str, str], float] = {}  # (stage, model) -> batched seconds
    for w in work:
        per[(w.stage, w.model)] = per.get((w.stage, w.model), 0.0) + w.batched_s
    ens_time = _ensemble_time(work, single=False)

    def cost(waves: list) -> float:  # tie-break between schedules with equal loads: planned makespan
        return sum(t.seconds for t in wave_timing(waves, per, load_s, ens_time)[0])

    sched = plan_waves(demands, cl, workload_from_run(run_cfg), share_gpus=share_gpus, wave_cost=cost)
    wave_times, busy = wave_timing(sched.waves, per, load_s, ens_time)
    makespan = sum(w.seconds for w in wave_times)
    gpus = cl.total_gpus  # 0 on CPU-only clusters: no GPU-hours

    baselines = {}
    wl = workload_from_run(run_cfg)
    order = list(wl.generate)
    # One model at a time: a generate pass (each model once), then a truncate/transfer pass over the
    # filter model and every target, starting with the last generator (still loaded), then the
    # ensemble group loaded together.
    second = [m for m in run_cfg.model_names if m in set(wl.transfer_targets) or m == wl.filter_model]
    kept = order[-1] if order and order[-1] in second else None
    seq_loaded = order + [m for m in second if m != kept] + list(wl.ensemble_group)
    seq_loads = len(seq_loaded)
    seq_load_s = sum(load_s[m] for m in seq_loaded)
    for name, single, desc in (
        ("sequential_single", True, "reference study: one model after another, one request at a time"),
        ("sequential_batched", False, "one model after another, vLLM batching"),
    ):
        work_s = sum(w.single_s if single else w.batched_s for w in work if w.stage != "ensemble")
        work_s += _ensemble_time(work, single=single, sequential=True)
        mk = seq_load_s + work_s
        baselines[name] = Baseline(name, desc, mk, seq_loads, mk * gpus / 3600)
    if cl.cpu_only:
        busy = 0.0
    tail = None
    if tails is not False:
        tail = plan_tails(
            run_cfg,
            n,
            params,
            tput,
            sched,
            load_s,
            cl,
            tails if isinstance(tails, TailOptions) else None,
            share_gpus=share_gpus is True,
        )
    return Plan(
        node,
        n,
        params,
        work,
        tput,
        sched,
        wave_times,
        load_s,
        makespan,
        makespan * gpus / 3600,
        busy / 3600,
        baselines,
        run_overrides,
        tail,
    )


def _ensemble_time(work: list[StageWork], single: bool, sequential: bool = False) -> float:
    """Lock-step ensemble: generators in parallel, then evaluators in parallel (or all in a row)."""
    ens = [w for w in work if w.stage == "ensemble"]
    if not ens:
        return 0.0
    pick = (lambda w: w.single_s) if single else (lambda w: w.batched_s)
    if sequential:
        return sum(pick(w) for w in ens)
    gen = max((pick(w) for w in ens if w.detail == "generator"), default=0.0)
    ev = max((pick(w) for w in ens if w.detail == "evaluator"), default=0.0)
    ans = sum(pick(w) for w in ens if w.detail == "answer")
    return gen + ev + ans


def _fmt_n(x: float) -> str:
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f}{suf}"
    return f"{x:.0f}"


def fmt_duration(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = lambda r: "  ".join(c.rjust(w[i]) if i in right else c.ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([fmt(headers), "  ".join("-" * x for x in w)] + [fmt(r) for r in rows])


def format_plan(p: Plan) -> str:
    """Plain-text report: work table, throughput, waves, time and baselines."""
    out = [
        f"Plan on {p.node.name} ({p.schedule.cluster.describe()}), {p.n_problems} problems; "
        f"CoT fill {p.params.thought_fill:.0%} of the thought budget, answers {p.params.answer_fill:.0%}"
    ]
    rows = [
        [
            w.stage,
            w.model,
            w.detail,
            f"{w.requests:,}",
            _fmt_n(w.prefill_tokens),
            _fmt_n(w.decode_tokens),
            fmt_duration(w.batched_s),
        ]
        for w in p.work
    ]
    for stage, t in p.totals().items():
        rows.append(
            [
                stage,
                "(all)",
                "total",
                f"{int(t['requests']):,}",
                _fmt_n(t["prefill_tokens"]),
                _fmt_n(t["decode_tokens"]),
                "",
            ]
        )
    out += [
        "",
        "Requests and tokens per stage and model (engine time with batching):",
        _table(["stage", "model", "what", "requests", "prefill tok", "decode tok", "engine time"], rows, {3, 4, 5, 6}),
    ]
    trows = [
        [
            m,
            f"{t.decode_tps:,.0f}",
            f"{t.prefill_tps:,.0f}",
            f"{t.single_decode_tps:,.0f}",
            str(t.tp),
            fmt_duration(p.load_s.get(m, 0.0)),
            t.source,
        ]
        for m, t in p.throughput.items()
    ]
    out += [
        "",
        "Throughput model (tokens/s per engine; estimates unless 'telemetry'):",
        _table(["model", "decode", "prefill", "1-seq decode", "tp", "load", "source"], trows, {1, 2, 3, 4, 5}),
    ]
    if p.run_overrides:
        out += [
            "",
            f"Engine sizing for {p.node.name} (node type model_overrides; pass the same to `crosscot run`):",
            "  " + " ".join(p.run_overrides),
        ]
    out += ["", "Wave schedule:", p.schedule.log]
    wrows = [
        [str(w.index), "+".join(w.stages), ", ".join(w.models), str(w.loads), fmt_duration(w.seconds)]
        for w in p.wave_times
    ]
    out += ["", _table(["wave", "stages", "models", "loads", "time"], wrows, {3, 4})]
    if p.schedule.cluster.cpu_only:
        out += ["", f"Mean-throughput makespan: {fmt_duration(p.makespan_s)} (CPU-only: no GPU-hours)"]
    else:
        out += [
            "",
            f"Mean-throughput makespan: {fmt_duration(p.makespan_s)}; GPU-hours: {p.gpu_hours_allocated:.1f} "
            f"allocated ({p.schedule.cluster.total_gpus} GPUs x makespan), "
            f"{p.gpu_hours_busy:.1f} held by engines",
        ]
    brows = [
        [
            b.name,
            fmt_duration(b.makespan_s),
            str(b.loads),
            f"{b.gpu_hours_allocated:.1f}",
            f"{p.speedup(b.name):.1f}x",
            b.description,
        ]
        for b in p.baselines.values()
    ]
    brows.insert(
        0,
        [
            "planned (waves)",
            fmt_duration(p.makespan_s),
            str(p.schedule.total_loads),
            f"{p.gpu_hours_allocated:.1f}",
            "1.0x",
            "this plan",
        ],
    )
    out += [
        "",
        "Against the baselines (mean throughput; makespan ratio = baseline / planned):",
        _table(["schedule", "makespan", "loads", "GPU-h", "ratio", "what"], brows, {1, 2, 3, 4}),
    ]
    if p.tails is not None:
        out += ["", format_tails(p.tails, p.node.name, p.makespan_s, not p.schedule.cluster.cpu_only)]
    return "\n".join(out)


def compose_run(overrides: Optional[list[str]] = None, config_dir: Optional[str] = None) -> "RunConfig":
    """Compose a RunConfig from ``conf/`` (or another config folder, e.g. in tests)."""
    from pipeline import config as C

    if config_dir is None:
        return C.compose(list(overrides or []))
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    C.register_configs()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=os.path.abspath(config_dir), version_base="1.3"):
        cfg = hcompose(config_name="config", overrides=list(overrides or []))
    return C.to_run_config(cfg)


def as_dict(p: Plan) -> dict[str, Any]:
    """Machine-readable summary (for `--json` and tests)."""
    return {
        "node": p.node.name,
        "n_problems": p.n_problems,
        "makespan_s": p.makespan_s,
        "gpu_hours_allocated": p.gpu_hours_allocated,
        "gpu_hours_busy": p.gpu_hours_busy,
        "loads": p.schedule.total_loads,
        "waves": [w.models for w in p.schedule.waves],
        "run_overrides": p.run_overrides,
        "totals": p.totals(),
        "baselines": {
            k: {"makespan_s": b.makespan_s, "loads": b.loads, "ratio": p.speedup(k)} for k, b in p.baselines.items()
        },
        "tails": tails_dict(p.tails) if p.tails is not None else None,
    }
