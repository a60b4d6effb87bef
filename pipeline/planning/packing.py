"""Engine demands and bin packing: what one engine needs, and which engines fit on which node and GPUs.

:class:`EngineDemand` (from a :class:`ModelConfig`: weights, KV headroom, TP size, CPUs) and
:class:`Packer` (first-fit decreasing over the nodes of a :class:`~pipeline.planning.cluster.ClusterSpec`,
with optional GPU sharing) are the primitives :mod:`pipeline.planning.schedule` builds waves from.
A :class:`Placement` is one packed engine: node, logical GPU indices, share, CPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

from pipeline.planning.cluster import GIB, ClusterSpec, NodeSpec, PlacementError

if TYPE_CHECKING:  # typing only; keeps `import pipeline.planning.packing` light
    from pipeline.config import ModelConfig, RunConfig


# Bytes per parameter by dtype name.  "auto" on the reference LRMs means bf16;
# quantised checkpoints (gpt-oss's MXFP4 experts) should set memory_gib instead.
BYTES_PER_PARAM: dict[str, float] = {
    "auto": 2.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "half": 2.0,
    "float32": 4.0,
    "float": 4.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "mxfp4": 0.55,
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


def engine_demand(
    m: "ModelConfig", key: str = "", *, kv_headroom: float = KV_HEADROOM, overhead_gib: float = ENGINE_OVERHEAD_GIB
) -> EngineDemand:
    """The engine need of one model: ``memory_gib`` if set, else weights x (1 + headroom) + overhead."""
    if m.engine == "openai" and m.served.base_url:
        # Someone else's server holds the weights: here it is an HTTP client (a little CPU, no memory).
        return EngineDemand(
            name=m.name,
            key=key or m.name,
            tp=1,
            memory_gib=0.0,
            num_cpus=float(m.num_cpus),
            host_memory_gib=0.0,
            weights_gib=0.0,
            gpu_memory_utilization=0.0,
            estimated=False,
        )
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
        name=m.name,
        key=key or m.name,
        tp=tp,
        memory_gib=mem,
        num_cpus=float(m.num_cpus),
        host_memory_gib=host,
        weights_gib=w or mem / (1 + kv_headroom),
        gpu_memory_utilization=float(m.gpu_memory_utilization),
        estimated=est,
    )


def demands_from_run(run: "RunConfig") -> list[EngineDemand]:
    """One :class:`EngineDemand` per configured model, in config order."""
    return [engine_demand(m, key) for key, m in run.models.items()]


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
                not node.memory_gib or d.host_memory_gib <= node.memory_gib
            )
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
            return (
                f"model {d.name!r} needs {d.num_cpus:g} CPUs and {d.host_memory_gib:.1f} GiB host memory, "
                f"but the largest node has {big_cpu:g} CPUs and {big_mem:g} GiB; fix: lower "
                f"{where}.num_cpus / {where}.kv_cache_gib, or use a bigger machine"
            )
        gpu_nodes = [n for n in c.nodes if n.num_gpus]
        max_g = max(n.num_gpus for n in gpu_nodes)
        max_mem = max(n.gpu_memory_gib for n in gpu_nodes)
        if d.tp > max_g:
            return (
                f"model {d.name!r} has tensor_parallel_size={d.tp} but a TP group must sit within one node "
                f"and the largest node has {max_g} GPUs; fix: set {where}.tensor_parallel_size<={max_g} "
                f"or use a node type with more GPUs per node"
            )
        usable = max_mem * d.gpu_memory_utilization
        need = (
            f"{d.memory_gib:.1f} GiB ({'estimated from params_b' if d.estimated else 'memory_gib'}), "
            f"{d.per_gpu_gib:.1f} GiB per GPU at tensor_parallel_size={d.tp}"
        )
        fixes = []
        util = d.per_gpu_gib / max_mem
        if util <= 0.95:  # fits on one GPU of this size if vLLM may claim more of it
            fixes.append(f"set {where}.gpu_memory_utilization={math.ceil(util * 100) / 100:.2f}")
        tp_fit = next((t for t in (1, 2, 4, 8, 16) if d.tp < t <= max_g and d.memory_gib / t <= usable), None)
        if tp_fit:
            fixes.append(f"set {where}.tensor_parallel_size={tp_fit}")
        if not fixes:
            fixes.append(f"use a node type with larger GPUs (the model does not fit even on {max_g} GPUs)")
        return (
            f"model {d.name!r} needs {need}, but the largest GPU has {max_mem:g} GiB x "
            f"gpu_memory_utilization {d.gpu_memory_utilization:g} = {usable:.1f} GiB; fix: "
            f"{' or '.join(fixes)}; or set {where}.memory_gib if the estimate is wrong"
        )

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

    def pack(
        self, demands: Sequence[EngineDemand], fixed: Sequence[Placement] = (), state: Optional[list[_NodeState]] = None
    ) -> Optional[dict[str, tuple[int, tuple[int, ...], float]]]:
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
        """Whether all ``demands`` fit at once; replicas (several demands of one model) may repeat
        a name (``pack`` keys its placements by name, so repeats are numbered here)."""
        import dataclasses

        count: dict[str, int] = {}
        uniq = []
        for d in demands:
            count[d.name] = count.get(d.name, 0) + 1
            uniq.append(d if count[d.name] == 1 else dataclasses.replace(d, name=f"{d.name}#{count[d.name]}"))
        return self.pack(uniq, fixed) is not None


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
