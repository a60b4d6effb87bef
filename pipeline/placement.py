"""Engine placement: which model engines run together ("waves"), on which node and GPUs.

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
from a node-type YAML via :func:`cluster_from_node_type` in ``pipeline.plan``).
GPU indices in a :class:`Schedule` are logical (the i-th GPU of that node);
Ray decides the physical ``CUDA_VISIBLE_DEVICES`` inside the placement group
built with :func:`placement_group_spec` / :func:`create_placement_group`.

Nothing here imports ray at module top: only :func:`discover_cluster` and
:func:`create_placement_group` do, lazily.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

if TYPE_CHECKING:  # typing only; keeps `import pipeline.placement` light
    from pipeline.config import ModelConfig, RunConfig

GIB = 2**30

# Bytes per parameter by dtype name.  "auto" on the reference LRMs means bf16;
# quantised checkpoints (gpt-oss's MXFP4 experts) should set memory_gib instead.
BYTES_PER_PARAM: dict[str, float] = {
    "auto": 2.0, "bfloat16": 2.0, "float16": 2.0, "half": 2.0,
    "float32": 4.0, "float": 4.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "mxfp4": 0.55,
}

# GPU memory (GiB, as nvidia-smi reports total) by Ray accelerator type, used when a
# live cluster does not say how much memory its GPUs have.
ACCELERATOR_MEMORY_GIB: dict[str, float] = {
    "H100": 79.6, "H200": 140.4, "H20": 95.0, "A100": 79.2, "A100-80G": 79.2, "A100-40G": 39.4,
    "L40S": 44.4, "L40": 44.4, "L4": 22.0, "A10G": 22.0, "A10": 22.0, "T4": 14.6, "V100": 31.7,
    "B200": 178.0, "GH200": 94.5,
}

# Per-engine fixed overhead on each GPU beyond weights and KV (CUDA context,
# activations, graphs).  Only used when memory_gib is not given.
ENGINE_OVERHEAD_GIB = 2.0
# KV-cache headroom as a share of the weights, when memory_gib is not given.
KV_HEADROOM = 0.25
# Slack on the memory check, as a share of the GPU: memory_gib values are often written as
# "0.9 x 141 GB" (decimal GB, rounded) while GPUs report GiB.
MEMORY_SLACK = 0.01
# With share_gpus=True, the share of a GPU that engines may claim in total
# (vLLM needs a little slack beyond its own gpu_memory_utilization).
MAX_GPU_SHARE = 0.92

STAGE_ORDER = ("generate", "truncate", "transfer", "ensemble")


class PlacementError(ValueError):
    """Engines cannot be placed; the message names the model and the fix."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class NodeSpec:
    """One machine of the cluster."""

    name: str  # "node0", ...
    num_gpus: int  # GPUs on this node (0 = CPU-only node)
    gpu_memory_gib: float = 0.0  # memory of ONE GPU
    num_cpus: float = 0.0  # CPUs Ray may use on it; 0 = do not check
    memory_gib: float = 0.0  # host memory for CPU engines; 0 = do not check
    node_id: Optional[str] = None  # Ray node id (hex) when discovered from a live cluster
    ip: Optional[str] = None


@dataclass(frozen=True)
class ClusterSpec:
    """The machines engines may use, in a fixed order (node index = position)."""

    nodes: tuple[NodeSpec, ...]
    source: str = ""  # where the description came from ("ray", "node type h100x8")

    @property
    def total_gpus(self) -> int:
        return sum(n.num_gpus for n in self.nodes)

    @property
    def cpu_only(self) -> bool:
        """True when no node has a GPU: engines are placed by CPUs and host memory."""
        return self.total_gpus == 0

    def describe(self) -> str:
        parts = []
        for n in self.nodes:
            if n.num_gpus:
                parts.append(f"{n.name}: {n.num_gpus}x{n.gpu_memory_gib:g} GiB GPUs")
            else:
                parts.append(f"{n.name}: {n.num_cpus:g} CPUs, {n.memory_gib:g} GiB RAM")
        return "; ".join(parts)


@dataclass(frozen=True)
class EngineDemand:
    """What one model's engine needs."""

    name: str  # short name ("QwQ")
    key: str  # key under `models` in the run config ("qwq"), for error messages
    tp: int  # GPUs in one node
    memory_gib: float  # total GPU memory need over the TP group (0 = unknown -> whole GPUs)
    num_cpus: float = 1.0  # Ray CPUs for the engine actor (per engine, not per GPU)
    host_memory_gib: float = 0.0  # CPU engines: weights + KV in host memory
    weights_gib: float = 0.0  # for load-time estimates
    gpu_memory_utilization: float = 0.9  # vLLM's share of each GPU: the need must fit inside it
    estimated: bool = False  # memory_gib was estimated from params_b (not given)

    @property
    def per_gpu_gib(self) -> float:
        return self.memory_gib / self.tp if self.tp else 0.0


def weights_gib(m: "ModelConfig") -> float:
    """Weights size in GiB from ``params_b`` and dtype (0 when params_b is unknown)."""
    bpp = BYTES_PER_PARAM.get(str(m.dtype), 2.0)
    return float(m.params_b) * 1e9 * bpp / GIB


def engine_demand(m: "ModelConfig", key: str = "", *, kv_headroom: float = KV_HEADROOM,
                  overhead_gib: float = ENGINE_OVERHEAD_GIB) -> EngineDemand:
    """The engine need of one model: ``memory_gib`` if set, else weights x (1 + headroom) + overhead."""
    w = weights_gib(m)
    tp = int(m.tensor_parallel_size)
    if m.memory_gib and m.memory_gib > 0:
        mem, est = float(m.memory_gib), False
    elif w > 0:
        mem, est = w * (1 + kv_headroom) + overhead_gib * tp, True
    else:
        mem, est = 0.0, True  # unknown: whole GPUs, no memory check
    # CPU engines hold weights plus the KV space they are given (VLLM_CPU_KVCACHE_SPACE).
    host = (w or mem) + float(m.kv_cache_gib)
    return EngineDemand(
        name=m.name, key=key or m.name, tp=tp, memory_gib=mem, num_cpus=float(m.num_cpus),
        host_memory_gib=host, weights_gib=w or mem / (1 + kv_headroom),
        gpu_memory_utilization=float(m.gpu_memory_utilization), estimated=est,
    )


def demands_from_run(run: "RunConfig") -> list[EngineDemand]:
    """One :class:`EngineDemand` per configured model, in config order."""
    return [engine_demand(m, key) for key, m in run.models.items()]


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class Placement:
    """One engine in one wave."""

    model: str  # short name
    key: str  # config key
    node: int  # index into ClusterSpec.nodes
    node_name: str
    gpus: tuple[int, ...]  # logical GPU indices on that node (empty on CPU nodes)
    gpu_fraction: float  # share of each of those GPUs (1.0 = whole GPUs)
    num_cpus: float  # Ray CPUs reserved for the engine (>= one per TP rank on GPU nodes)
    host_memory_gib: float  # CPU engines: host memory reserved (0 on GPU nodes)
    stages: tuple[str, ...]  # stages this engine runs in this wave, in DAG order
    loaded: bool  # True: loaded at the start of this wave; False: kept from the previous wave

    def where(self) -> str:
        if not self.gpus:
            return f"{self.node_name} ({self.num_cpus:g} CPUs)"
        g = _ranges(self.gpus)
        share = "" if self.gpu_fraction >= 0.999 else f" ({self.gpu_fraction:.0%} share)"
        return f"{self.node_name} GPU{'s' if len(self.gpus) > 1 else ''} {g}{share}"


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


def _ranges(ix: Sequence[int]) -> str:
    ix = sorted(ix)
    out, start, prev = [], ix[0], ix[0]
    for i in ix[1:] + [None]:  # type: ignore[operator]
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(out)


# --------------------------------------------------------------------------- packing


@dataclass
class _NodeState:
    gpus: list[float]  # free share per GPU (1.0 = free)
    cpus: float  # free CPUs (inf when unchecked)
    mem: float  # free host memory (inf when unchecked)

    def key(self) -> tuple:
        return (tuple(sorted(self.gpus)), self.cpus, self.mem)

    def copy(self) -> "_NodeState":
        return _NodeState(list(self.gpus), self.cpus, self.mem)


class Packer:
    """Bin packing of engines onto nodes (a TP group never spans nodes).

    ``share_gpus=False`` gives every engine whole GPUs.  ``share_gpus=True``
    lets TP=1 engines share GPUs: vLLM claims ``gpu_memory_utilization`` of
    the GPU, so that share is what the engine occupies, and engines fit
    together while their shares sum to at most :data:`MAX_GPU_SHARE` (the
    runner then gives the actor Ray ``num_gpus = Placement.gpu_fraction``).
    TP>1 engines always get whole GPUs (Ray could put two fractional bundles
    of one STRICT_PACK group on the same GPU).  In both modes an engine's memory
    need (``memory_gib / tp``) must fit inside ``gpu_memory_utilization`` of
    one GPU.
    """

    def __init__(self, cluster: ClusterSpec, share_gpus: bool = False):
        if not cluster.nodes:
            raise PlacementError("the cluster has no nodes: start Ray or pass a node type (e.g. --node h100x8)")
        self.cluster = cluster
        self.share_gpus = share_gpus

    # ---- per-engine needs
    def cpus(self, d: EngineDemand) -> float:
        # GPU engines get at least one CPU per TP rank (placement_group_spec gives each bundle >= 1).
        return d.num_cpus if self.cluster.cpu_only else max(d.num_cpus, float(d.tp))

    def gpu_share(self, d: EngineDemand, node: NodeSpec) -> float:
        if self.cluster.cpu_only:
            return 0.0
        # TP engines keep whole GPUs: Ray may put two fractional bundles of one group on the same GPU.
        if not self.share_gpus or d.tp > 1 or d.gpu_memory_utilization > MAX_GPU_SHARE:
            return 1.0
        return float(d.gpu_memory_utilization)

    def fits_alone(self, d: EngineDemand, node: NodeSpec) -> bool:
        if self.cluster.cpu_only:
            return (not node.num_cpus or d.num_cpus <= node.num_cpus) and (
                not node.memory_gib or d.host_memory_gib <= node.memory_gib)
        if d.tp > node.num_gpus:
            return False
        if d.memory_gib > 0 and d.per_gpu_gib > node.gpu_memory_gib * (d.gpu_memory_utilization + MEMORY_SLACK):
            return False
        return not node.num_cpus or self.cpus(d) <= node.num_cpus

    def check(self, demands: Iterable[EngineDemand]) -> None:
        """Raise :class:`PlacementError` for an engine that fits on no node, naming the fix."""
        for d in demands:
            if any(self.fits_alone(d, n) for n in self.cluster.nodes):
                continue
            raise PlacementError(self._why_not(d))

    def _why_not(self, d: EngineDemand) -> str:
        where = f"models.{d.key}"
        c = self.cluster
        if c.cpu_only:
            big_cpu = max(n.num_cpus for n in c.nodes)
            big_mem = max(n.memory_gib for n in c.nodes)
            return (f"model {d.name!r} needs {d.num_cpus:g} CPUs and {d.host_memory_gib:.1f} GiB host memory, "
                    f"but the largest node has {big_cpu:g} CPUs and {big_mem:g} GiB; fix: lower "
                    f"{where}.num_cpus / {where}.kv_cache_gib, or use a bigger machine")
        gpu_nodes = [n for n in c.nodes if n.num_gpus]
        max_g = max(n.num_gpus for n in gpu_nodes)
        max_mem = max(n.gpu_memory_gib for n in gpu_nodes)
        if d.tp > max_g:
            return (f"model {d.name!r} has tensor_parallel_size={d.tp} but a TP group must sit within one node "
                    f"and the largest node has {max_g} GPUs; fix: set {where}.tensor_parallel_size<={max_g} "
                    f"or use a node type with more GPUs per node")
        usable = max_mem * d.gpu_memory_utilization
        need = (f"{d.memory_gib:.1f} GiB ({'estimated from params_b' if d.estimated else 'memory_gib'}), "
                f"{d.per_gpu_gib:.1f} GiB per GPU at tensor_parallel_size={d.tp}")
        fixes = []
        util = d.per_gpu_gib / max_mem
        if util <= 0.95:  # fits on one GPU of this size if vLLM may claim more of it
            fixes.append(f"set {where}.gpu_memory_utilization={math.ceil(util * 100) / 100:.2f}")
        tp_fit = next((t for t in (1, 2, 4, 8, 16)
                       if d.tp < t <= max_g and d.memory_gib / t <= usable), None)
        if tp_fit:
            fixes.append(f"set {where}.tensor_parallel_size={tp_fit}")
        if not fixes:
            fixes.append(f"use a node type with larger GPUs (the model does not fit even on {max_g} GPUs)")
        return (f"model {d.name!r} needs {need}, but the largest GPU has {max_mem:g} GiB x "
                f"gpu_memory_utilization {d.gpu_memory_utilization:g} = {usable:.1f} GiB; fix: "
                f"{' or '.join(fixes)}; or set {where}.memory_gib if the estimate is wrong")

    # ---- state
    def empty_state(self) -> list[_NodeState]:
        inf = float("inf")
        return [_NodeState([1.0] * n.num_gpus, n.num_cpus or inf, n.memory_gib or inf) for n in self.cluster.nodes]

    def _try_place(self, st: _NodeState, d: EngineDemand, node: NodeSpec) -> Optional[tuple[tuple[int, ...], float]]:
        """GPUs for ``d`` on this node given its free state, or None (does not mutate)."""
        if not self.fits_alone(d, node) or self.cpus(d) > st.cpus + 1e-9:
            return None
        if self.cluster.cpu_only:
            return ((), 0.0) if d.host_memory_gib <= st.mem + 1e-9 else None
        share = self.gpu_share(d, node)
        cap_left = (1.0 - MAX_GPU_SHARE) if share < 1.0 else 0.0  # slack kept only when sharing
        ok = [i for i, free in enumerate(st.gpus) if free - cap_left >= share - 1e-9]
        if len(ok) < d.tp:
            return None
        if share >= 1.0:
            chosen = ok[: d.tp]  # whole GPUs: lowest indices (contiguous when possible)
        else:  # best fit: the fullest GPUs that still take it, to keep whole GPUs free for TP groups
            chosen = sorted(sorted(ok, key=lambda i: (st.gpus[i], i))[: d.tp])
        return tuple(chosen), share

    def _apply(self, st: _NodeState, d: EngineDemand, gpus: tuple[int, ...], share: float) -> None:
        for i in gpus:
            st.gpus[i] -= share
        st.cpus -= self.cpus(d)
        if self.cluster.cpu_only:
            st.mem -= d.host_memory_gib

    def pack(self, demands: Sequence[EngineDemand], fixed: Sequence[Placement] = (),
             state: Optional[list[_NodeState]] = None) -> Optional[dict[str, tuple[int, tuple[int, ...], float]]]:
        """Place all ``demands`` at once (with ``fixed`` engines already resident), or None.

        Exact over node choices (backtracking, identical node states tried once);
        within a node GPUs are taken first-fit, which is exact for whole GPUs.
        Items go in decreasing size order (first-fit decreasing), so the first
        solution found is the FFD one whenever FFD succeeds.
        """
        st = [s.copy() for s in (state or self.empty_state())]
        for p in fixed:
            for i in p.gpus:
                st[p.node].gpus[i] -= p.gpu_fraction
            st[p.node].cpus -= p.num_cpus
            if self.cluster.cpu_only:
                st[p.node].mem -= p.host_memory_gib
        items = sorted(demands, key=_size_key)
        out: dict[str, tuple[int, tuple[int, ...], float]] = {}

        def rec(k: int) -> bool:
            if k == len(items):
                return True
            d = items[k]
            seen = set()
            for ni, node in enumerate(self.cluster.nodes):
                key = (st[ni].key(), node.num_gpus, node.gpu_memory_gib)
                if key in seen:
                    continue
                seen.add(key)
                got = self._try_place(st[ni], d, node)
                if got is None:
                    continue
                saved = st[ni].copy()
                self._apply(st[ni], d, *got)
                out[d.name] = (ni, got[0], got[1])
                if rec(k + 1):
                    return True
                st[ni] = saved
                del out[d.name]
            return False

        return dict(out) if rec(0) else None

    def fits(self, demands: Sequence[EngineDemand], fixed: Sequence[Placement] = ()) -> bool:
        return self.pack(demands, fixed) is not None


def _size_key(d: EngineDemand) -> tuple:
    # Largest first: GPUs, then memory, then CPUs; name for determinism.
    return (-d.tp, -d.memory_gib, -d.num_cpus, -d.host_memory_gib, d.name)


def ffd_waves(packer: Packer, demands: Sequence[EngineDemand]) -> list[list[EngineDemand]]:
    """Split engines into waves by first-fit decreasing: fill a wave until nothing more fits."""
    left = sorted(demands, key=_size_key)
    waves: list[list[EngineDemand]] = []
    while left:
        wave: list[EngineDemand] = []
        for d in list(left):
            if packer.fits(wave + [d]):
                wave.append(d)
                left.remove(d)
        if not wave:  # cannot happen after check(); guard against an infinite loop
            raise PlacementError(packer._why_not(left[0]))
        waves.append(wave)
    return waves


# --------------------------------------------------------------------------- scheduling


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


def plan_waves(demands: Sequence[EngineDemand], cluster: ClusterSpec, workload: Workload, *,
               share_gpus: "bool | str" = "auto", exact_limit: int = 10,
               wave_cost: Optional[Callable[[list["Wave"]], float]] = None) -> Schedule:
    """The wave schedule; ``share_gpus`` is True, False or ``"auto"`` (the default).

    ``"auto"`` uses whole GPUs when every engine fits at once; otherwise it
    also plans with GPU sharing and keeps the better of the two (lower
    ``wave_cost`` when given, else fewer loads, then fewer waves).
    """
    if share_gpus != "auto":
        return _plan_waves(demands, cluster, workload, share_gpus=bool(share_gpus), exact_limit=exact_limit,
                           wave_cost=wave_cost)
    whole = _plan_waves(demands, cluster, workload, share_gpus=False, exact_limit=exact_limit,
                        wave_cost=wave_cost)
    if len(whole.waves) <= 1 or cluster.cpu_only:
        return whole
    shared = _plan_waves(demands, cluster, workload, share_gpus=True, exact_limit=exact_limit,
                         wave_cost=wave_cost)

    def key(s: Schedule) -> tuple:
        c = wave_cost(s.waves) if wave_cost else 0.0
        return (c, s.total_loads, len(s.waves))

    return shared if key(shared) < key(whole) else whole


def _plan_waves(demands: Sequence[EngineDemand], cluster: ClusterSpec, workload: Workload, *,
                share_gpus: bool, exact_limit: int,
                wave_cost: Optional[Callable[[list["Wave"]], float]]) -> Schedule:
    """The wave schedule with the fewest engine loads, then the lowest ``wave_cost`` (default: fewest waves).

    ``wave_cost`` lets the planner break ties by estimated makespan
    (:func:`pipeline.plan.plan` passes one built from its throughput model).

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
    for group, what in ((workload.generate, "generate"), (workload.transfer_targets, "transfer targets"),
                        (workload.ensemble_group, "ensemble group")):
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
            "generators/evaluators, or use a bigger node type")

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
    sched = Schedule(waves=waves, total_loads=sum(loads.values()), loads=loads, min_loads=len(needed),
                     cluster=cluster)
    sched.log = format_schedule(sched)
    return sched


def _build(packer: Packer, by_name: dict[str, EngineDemand], gen: list[EngineDemand],
           last: list[EngineDemand], wl: Workload) -> list[Wave]:
    """All waves for one choice of the last generate wave."""
    last_names = {d.name for d in last}
    rest = [d for d in gen if d.name not in last_names]
    waves: list[Wave] = []

    def add_wave(assign: dict[str, tuple[int, tuple[int, ...], float]], stages: dict[str, tuple[str, ...]],
                 kept: Sequence[Placement] = ()) -> None:
        ps = [Placement(k.model, k.key, k.node, k.node_name, k.gpus, k.gpu_fraction, k.num_cpus,
                        k.host_memory_gib, stages[k.model], loaded=False) for k in kept]
        for name, (ni, gpus, share) in assign.items():
            d = by_name[name]
            host = d.host_memory_gib if packer.cluster.cpu_only else 0.0
            ps.append(Placement(name, d.key, ni, packer.cluster.nodes[ni].name, gpus, share, packer.cpus(d),
                                host, stages[name], loaded=True))
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
        for n in sorted(pending_targets - kept_names - {d.name for d in wave_new},
                        key=lambda n: _size_key(by_name[n])):
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


def schedule_for_run(run: "RunConfig", cluster: Optional[ClusterSpec] = None, *,
                     share_gpus: "bool | str" = "auto", gpu_memory_gib: Optional[float] = None) -> Schedule:
    """The wave schedule for ``run``; ``cluster=None`` reads the live Ray cluster (Ray must be initialised)."""
    if cluster is None:
        cluster = discover_cluster(gpu_memory_gib=gpu_memory_gib)
    return plan_waves(demands_from_run(run), cluster, workload_from_run(run), share_gpus=share_gpus)


# --------------------------------------------------------------------------- Ray


def cluster_from_ray_nodes(nodes: Sequence[dict[str, Any]], *, gpu_memory_gib: Optional[float] = None,
                           default_gpu_memory_gib: Optional[float] = None) -> ClusterSpec:
    """A :class:`ClusterSpec` from ``ray.nodes()`` records (alive nodes only, sorted by IP then id).

    GPU memory per GPU, in order of preference: ``gpu_memory_gib``; a custom
    node resource ``gpu_memory_gib`` (the node's total, started with
    ``ray start --resources='{"gpu_memory_gib": 640}'``); the node's
    ``accelerator_type:<X>`` resource looked up in :data:`ACCELERATOR_MEMORY_GIB`;
    ``default_gpu_memory_gib``.
    """
    alive = [n for n in nodes if n.get("Alive", n.get("alive", True))]
    alive.sort(key=lambda n: (str(n.get("NodeManagerAddress", "")), str(n.get("NodeID", ""))))
    out = []
    for i, n in enumerate(alive):
        res = n.get("Resources") or {}
        g = int(res.get("GPU", 0) or 0)
        mem = gpu_memory_gib
        if mem is None and g and res.get("gpu_memory_gib"):
            mem = float(res["gpu_memory_gib"]) / g
        if mem is None and g:
            acc = [k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")]
            mem = next((ACCELERATOR_MEMORY_GIB[a] for a in acc if a in ACCELERATOR_MEMORY_GIB), None)
        if mem is None and g:
            mem = default_gpu_memory_gib
        if mem is None and g:
            raise PlacementError(
                f"cannot tell the GPU memory of Ray node {n.get('NodeID', '?')[:12]} ({g} GPUs, resources "
                f"{sorted(res)}); fix: pass gpu_memory_gib=..., or start the node with "
                "--resources='{\"gpu_memory_gib\": <total GiB>}'")
        out.append(NodeSpec(
            name=f"node{i}", num_gpus=g, gpu_memory_gib=float(mem or 0.0), num_cpus=float(res.get("CPU", 0) or 0),
            memory_gib=float(res.get("memory", 0) or 0) / GIB, node_id=n.get("NodeID"),
            ip=n.get("NodeManagerAddress")))
    return ClusterSpec(tuple(out), source="ray")


def discover_cluster(*, gpu_memory_gib: Optional[float] = None,
                     default_gpu_memory_gib: Optional[float] = None) -> ClusterSpec:
    """Read the live Ray cluster's nodes, GPUs and CPUs (``ray.init`` must have been called)."""
    import ray  # lazy: planning without a cluster must not need ray

    if not ray.is_initialized():
        raise PlacementError("Ray is not initialised: call ray.init(...) first, or plan from a node type "
                             "(crosscot plan --node h100x8)")
    return cluster_from_ray_nodes(ray.nodes(), gpu_memory_gib=gpu_memory_gib,
                                  default_gpu_memory_gib=default_gpu_memory_gib)


@dataclass(frozen=True)
class PlacementGroupSpec:
    """Arguments for ``ray.util.placement_group`` for one engine."""

    bundles: list[dict[str, float]]  # one bundle per TP rank: {"GPU": 1, "CPU": c}
    strategy: str = "STRICT_PACK"  # all ranks on one node (TP over NVLink, never across nodes)
    name: str = ""
    node_id: Optional[str] = None  # pin to this Ray node (label selector ray.io/node-id)

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"bundles": [dict(b) for b in self.bundles], "strategy": self.strategy,
                              "name": self.name}
        if self.node_id:
            kw["bundle_label_selector"] = [{"ray.io/node-id": self.node_id} for _ in self.bundles]
        return kw


def placement_group_spec(tp: int, *, num_cpus: float = 1.0, gpu_fraction: float = 1.0,
                         node_id: Optional[str] = None, name: str = "") -> PlacementGroupSpec:
    """Bundles for a TP engine: ``[{"GPU": f, "CPU": c}] * tp`` with STRICT_PACK (one node).

    ``num_cpus`` is the engine's total (``ModelConfig.num_cpus``), spread over
    the ranks with at least one CPU per rank (each vLLM worker is a process).
    ``tp=0`` means a CPU engine: one ``{"CPU": num_cpus}`` bundle.
    """
    if tp < 0 or not (0 < gpu_fraction <= 1):
        raise PlacementError(f"placement_group_spec(tp={tp}, gpu_fraction={gpu_fraction}): tp must be >= 0 and "
                             "gpu_fraction in (0, 1]")
    if tp == 0:
        return PlacementGroupSpec([{"CPU": float(max(num_cpus, 1.0))}], "STRICT_PACK", name, node_id)
    per = max(1.0, float(num_cpus) / tp)
    return PlacementGroupSpec([{"GPU": float(gpu_fraction), "CPU": per} for _ in range(tp)],
                              "STRICT_PACK", name, node_id)


def placement_group_spec_for(p: Placement, cluster: ClusterSpec) -> PlacementGroupSpec:
    """The placement-group spec of one scheduled engine, pinned to its planned node when known."""
    node = cluster.nodes[p.node]
    return placement_group_spec(len(p.gpus), num_cpus=p.num_cpus, gpu_fraction=p.gpu_fraction or 1.0,
                                node_id=node.node_id, name=f"crosscot-{p.model}")


def create_placement_group(spec: PlacementGroupSpec):
    """Create the Ray placement group (not waited on: ``ray.get(pg.ready(), timeout=...)``)."""
    from ray.util import placement_group  # lazy

    return placement_group(**spec.kwargs())
