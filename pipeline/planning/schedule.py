"""Wave scheduling: which model engines run together ("waves"), on which node and GPUs.

Every model is served by one vLLM engine in one Ray actor; an engine with
``tensor_parallel_size = tp`` needs ``tp`` GPUs *on one node*.  When every
engine fits on the cluster at once, the whole DAG runs in one wave.  When they
do not, engines are packed into waves that run one after another, and the
order matters for how often each model is loaded:

* the generate stage needs every model once;
* the transfer stage needs every *target* once, but only after *all* sources'
  CoTs exist (and were truncated);
* so the models of the **last** generate wave stay loaded and run their
  transfers right away; every other target must be loaded a second time.

Total loads are therefore ``N + |targets not in the last wave|`` (usually
``2N - |last wave|``), and the planner picks the last wave to contain as many
targets as fit (exact search over subsets for small model counts, first-fit
decreasing bin packing per node for each wave).  The ensemble stage needs its
generators and evaluators co-resident, and an LLM truncation filter must run
after the last generate wave; both are folded into the load count.

Inputs are plain: :class:`EngineDemand` (from a :class:`ModelConfig`) and a
:class:`ClusterSpec` (from a live Ray cluster via :func:`discover_cluster`, or
from a node-type YAML via :func:`cluster_from_node_type` in ``pipeline.planning.plan``).
GPU indices in a :class:`Schedule` are logical (the i-th GPU of that node);
Ray decides the physical ``CUDA_VISIBLE_DEVICES`` inside the placement group
built with :func:`placement_group_spec` / :func:`create_placement_group`.

Nothing here imports ray at module top: only :func:`discover_cluster` and
:func:`create_placement_group` do, lazily.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from pipeline.planning.cluster import ClusterSpec, PlacementError, discover_cluster
from pipeline.planning.packing import (
    EngineDemand,
    Packer,
    Placement,
    _size_key,
    demands_from_run,
    ffd_waves,
)

if TYPE_CHECKING:  # typing only; keeps `import pipeline.planning.packing` light
    from pipeline.config import RunConfig


STAGE_ORDER = ("generate", "truncate", "transfer", "ensemble")


@dataclass
class Wave:
    """Engines that are resident at the same time; waves run one after another."""

    index: int  # 1-based
    placements: list[Placement]

    @property
    def models(self) -> list[str]:
        return [p.model for p in self.placements]

    @property
    def stages(self) -> tuple[str, ...]:
        s = {x for p in self.placements for x in p.stages}
        return tuple(x for x in STAGE_ORDER if x in s)

    def placement(self, model: str) -> Placement:
        for p in self.placements:
            if p.model == model:
                return p
        raise KeyError(f"model {model!r} is not in wave {self.index}; it has {self.models}")


@dataclass
class Schedule:
    """The wave plan for a whole run."""

    waves: list[Wave]
    total_loads: int  # engine loads over the whole DAG
    loads: dict[str, int]  # per model
    min_loads: int  # lower bound: one load per model
    cluster: ClusterSpec
    log: str = ""  # human-readable, one line per wave

    def waves_for(self, stage: str) -> list[Wave]:
        """The waves in which ``stage`` runs (in order)."""
        return [w for w in self.waves if stage in w.stages]

    def __str__(self) -> str:
        return self.log


@dataclass(frozen=True)
class Workload:
    """Which models each stage needs (by short name)."""

    generate: tuple[str, ...]  # models that write their own CoTs (all, normally)
    transfer_targets: tuple[str, ...]  # models that answer from others' CoTs
    ensemble_group: tuple[str, ...] = ()  # generators + evaluators, co-resident (empty = no ensemble)
    filter_model: Optional[str] = None  # truncate.filter=llm model (runs after ALL generation)


def workload_from_run(run: "RunConfig") -> Workload:
    """What the run's enabled stages need from which models."""
    names = run.model_names
    st = set(run.stages)
    gen = tuple(names) if "generate" in st else ()
    targets = tuple(run.transfer.targets or names) if "transfer" in st else ()
    ens: tuple[str, ...] = ()
    if "ensemble" in st and run.ensemble.enabled:
        ens = tuple(dict.fromkeys(list(run.ensemble.generators) + list(run.ensemble.evaluators)))
    filt = run.truncate.filter_model if ("truncate" in st and run.truncate.filter == "llm") else None
    return Workload(gen, targets, ens, filt)


def plan_waves(
    demands: Sequence[EngineDemand],
    cluster: ClusterSpec,
    workload: Workload,
    *,
    share_gpus: "bool | str" = "auto",
    exact_limit: int = 10,
    wave_cost: Optional[Callable[[list["Wave"]], float]] = None,
) -> Schedule:
    """The wave schedule; ``share_gpus`` is True, False or ``"auto"`` (the default).

    ``"auto"`` uses whole GPUs when every engine fits at once; otherwise it
    also plans with GPU sharing and keeps the better of the two (lower
    ``wave_cost`` when given, else fewer loads, then fewer waves).
    """
    if share_gpus != "auto":
        return _plan_waves(
            demands, cluster, workload, share_gpus=bool(share_gpus), exact_limit=exact_limit, wave_cost=wave_cost
        )
    whole = _plan_waves(demands, cluster, workload, share_gpus=False, exact_limit=exact_limit, wave_cost=wave_cost)
    if len(whole.waves) <= 1 or cluster.cpu_only:
        return whole
    shared = _plan_waves(demands, cluster, workload, share_gpus=True, exact_limit=exact_limit, wave_cost=wave_cost)

    def key(s: Schedule) -> tuple:
        c = wave_cost(s.waves) if wave_cost else 0.0
        return (c, s.total_loads, len(s.waves))

    return shared if key(shared) < key(whole) else whole


def _plan_waves(
    demands: Sequence[EngineDemand],
    cluster: ClusterSpec,
    workload: Workload,
    *,
    share_gpus: bool,
    exact_limit: int,
    wave_cost: Optional[Callable[[list["Wave"]], float]],
) -> Schedule:
    """The wave schedule with the fewest engine loads, then the lowest ``wave_cost`` (default: fewest waves).

    ``wave_cost`` lets the planner break ties by estimated makespan
    (:func:`pipeline.planning.plan.plan` passes one built from its throughput model).

    Candidates for the last generate wave ``L`` are every packable subset of
    the generate models (exact for up to ``exact_limit`` models; beyond, the
    greedy "smallest engines first" subset).  Earlier generate waves are the
    first-fit-decreasing packing of the rest.  After ``L``: models still needed
    (transfer targets, ensemble group, LLM filter) that are resident stay; the
    others are loaded in first-fit-decreasing waves, the ensemble group and the
    filter model first.
    """
    packer = Packer(cluster, share_gpus)
    by_name = {d.name: d for d in demands}
    for group, what in (
        (workload.generate, "generate"),
        (workload.transfer_targets, "transfer targets"),
        (workload.ensemble_group, "ensemble group"),
    ):
        missing = [n for n in group if n not in by_name]
        if missing:
            raise PlacementError(f"{what} name model(s) {missing} that have no engine demand; known: {sorted(by_name)}")
    needed = set(workload.generate) | set(workload.transfer_targets) | set(workload.ensemble_group)
    if workload.filter_model:
        needed.add(workload.filter_model)
    packer.check(by_name[n] for n in sorted(needed))
    if workload.ensemble_group and not packer.fits([by_name[n] for n in workload.ensemble_group]):
        raise PlacementError(
            f"the ensemble group {list(workload.ensemble_group)} must be loaded together but does not fit on "
            f"{cluster.describe()}; fix: lower the members' tensor_parallel_size, use fewer ensemble "
            "generators/evaluators, or use a bigger node type"
        )

    gen = [by_name[n] for n in workload.generate]
    if not gen:
        candidates: list[tuple[EngineDemand, ...]] = [()]
    elif len(gen) <= exact_limit:
        candidates = [c for r in range(len(gen), 0, -1) for c in itertools.combinations(gen, r) if packer.fits(c)]
    else:
        greedy: list[EngineDemand] = []
        for d in sorted(gen, key=lambda d: tuple(-x for x in _size_key(d)[:4])):
            if packer.fits(greedy + [d]):
                greedy.append(d)
        candidates = [tuple(greedy)]

    best: Optional[tuple[tuple, list[Wave]]] = None
    for last in candidates:
        waves = _build(packer, by_name, gen, list(last), workload)
        loads = sum(p.loaded for w in waves for p in w.placements)
        score = (loads, wave_cost(waves) if wave_cost else len(waves), sorted(d.name for d in last))
        if best is None or score < best[0]:
            best = (score, waves)
    assert best is not None
    waves = best[1]
    loads: dict[str, int] = {}
    for w in waves:
        for p in w.placements:
            loads[p.model] = loads.get(p.model, 0) + int(p.loaded)
    sched = Schedule(waves=waves, total_loads=sum(loads.values()), loads=loads, min_loads=len(needed), cluster=cluster)
    sched.log = format_schedule(sched)
    return sched


def _build(
    packer: Packer, by_name: dict[str, EngineDemand], gen: list[EngineDemand], last: list[EngineDemand], wl: Workload
) -> list[Wave]:
    """All waves for one choice of the last generate wave."""
    last_names = {d.name for d in last}
    rest = [d for d in gen if d.name not in last_names]
    waves: list[Wave] = []

    def add_wave(
        assign: dict[str, tuple[int, tuple[int, ...], float]],
        stages: dict[str, tuple[str, ...]],
        kept: Sequence[Placement] = (),
    ) -> None:
        ps = [
            Placement(
                k.model,
                k.key,
                k.node,
                k.node_name,
                k.gpus,
                k.gpu_fraction,
                k.num_cpus,
                k.host_memory_gib,
                stages[k.model],
                loaded=False,
            )
            for k in kept
        ]
        for name, (ni, gpus, share) in assign.items():
            d = by_name[name]
            host = d.host_memory_gib if packer.cluster.cpu_only else 0.0
            ps.append(
                Placement(
                    name,
                    d.key,
                    ni,
                    packer.cluster.nodes[ni].name,
                    gpus,
                    share,
                    packer.cpus(d),
                    host,
                    stages[name],
                    loaded=True,
                )
            )
        ps.sort(key=lambda p: (p.node, p.gpus, p.model))
        waves.append(Wave(len(waves) + 1, ps))

    for w in ffd_waves(packer, rest):
        add_wave(packer.pack(w) or {}, {d.name: ("generate",) for d in w})

    targets = set(wl.transfer_targets)
    group = set(wl.ensemble_group)
    filt = wl.filter_model
    # Does truncation happen inside the last generate wave (no filter model, or it is resident)?
    trunc_in_last = filt is None or filt in last_names or not gen
    pending_targets = set(targets)
    pending_group = set(group)
    pending_filter = filt if (filt and not trunc_in_last) else None
    if last:
        stages: dict[str, tuple[str, ...]] = {}
        for d in last:
            s = ["generate"]
            if filt == d.name and trunc_in_last:
                s.append("truncate")
            if trunc_in_last and d.name in targets:
                s.append("transfer")
            stages[d.name] = tuple(s)
        if trunc_in_last:
            pending_targets -= last_names
        if group and group <= last_names:  # the ensemble needs no truncation: run it while resident
            for n in group:
                stages[n] = stages[n] + ("ensemble",)
            pending_group = set()
        add_wave(packer.pack(last) or {}, stages)

    # After the last generate wave: forced members first (ensemble group, filter), kept when resident.
    resident = {p.model: p for p in waves[-1].placements} if waves else {}
    first = True
    while pending_targets or pending_group or pending_filter:
        forced = set(pending_group) | ({pending_filter} if pending_filter else set())
        if pending_filter and pending_group and not packer.fits([by_name[n] for n in sorted(forced)]):
            forced = {pending_filter}  # filter first; the ensemble group gets a later wave
        kept: list[Placement] = []
        if first:
            # Keep resident models that are still needed; drop the optional ones if the forced set needs room.
            keep_forced = [p for n, p in resident.items() if n in forced]
            keep_opt = [p for n, p in resident.items() if n in pending_targets and n not in forced]
            for cand in (keep_forced + keep_opt, keep_forced):
                new_forced = [by_name[n] for n in sorted(forced) if n not in {p.model for p in cand}]
                if packer.fits(new_forced, cand):
                    kept = cand
                    break
        kept_names = {p.model for p in kept}
        wave_new = [by_name[n] for n in sorted(forced) if n not in kept_names]
        # Fill the wave with pending targets, largest first.
        for n in sorted(pending_targets - kept_names - {d.name for d in wave_new}, key=lambda n: _size_key(by_name[n])):
            if packer.fits(wave_new + [by_name[n]], kept):
                wave_new.append(by_name[n])
        assign = packer.pack(wave_new, kept)
        if assign is None:  # forced set alone always fits (checked above); guard anyway
            raise PlacementError(f"cannot place {[d.name for d in wave_new]} on {packer.cluster.describe()}")
        members = kept_names | set(assign)
        stages = {}
        for n in members:
            s = []
            if n == pending_filter:
                s.append("truncate")
            if n in pending_targets:
                s.append("transfer")
            if pending_group and pending_group <= members and n in pending_group:
                s.append("ensemble")
            stages[n] = tuple(s) or ("idle",)
        add_wave(assign, stages, kept)
        if pending_group and pending_group <= members:
            pending_group = set()
        pending_targets -= members
        pending_filter = None
        first = False
    return waves


def format_schedule(s: Schedule) -> str:
    """``wave 1 [generate]: QwQ on node0 GPUs 0-1, ...`` — one line per wave, then the load count."""
    lines = []
    for w in s.waves:
        items = []
        for p in w.placements:
            mark = "" if p.loaded else " (kept loaded)"
            items.append(f"{p.model} on {p.where()}{mark}")
        lines.append(f"wave {w.index} [{'+'.join(w.stages)}]: " + ", ".join(items))
    lines.append(f"engine loads: {s.total_loads} (lower bound {s.min_loads}: every model once)")
    return "\n".join(lines)


def schedule_for_run(
    run: "RunConfig",
    cluster: Optional[ClusterSpec] = None,
    *,
    share_gpus: "bool | str" = "auto",
    gpu_memory_gib: Optional[float] = None,
) -> Schedule:
    """The wave schedule for ``run``; ``cluster=None`` reads the live Ray cluster (Ray must be initialised)."""
    if cluster is None:
        cluster = discover_cluster(gpu_memory_gib=gpu_memory_gib)
    return plan_waves(demands_from_run(run), cluster, workload_from_run(run), share_gpus=share_gpus)
