"""The cluster model: nodes, GPUs, CPUs and memory, read from a live Ray cluster or a node type; Ray placement groups.

:class:`ClusterSpec` is what the planner packs engines onto; :func:`discover_cluster` reads it
from ``ray.nodes()``; :func:`placement_group_spec` / :func:`create_placement_group` turn one
planned engine into the Ray placement group it runs in.  Nothing here imports ray at module
top: only :func:`discover_cluster` and :func:`create_placement_group` do, lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:  # typing only (packing imports this module)
    from pipeline.planning.packing import (
        Placement,  # typing only; keeps `import pipeline.planning.packing` light
    )

    pass


GIB = 2**30


# GPU memory (GiB, as nvidia-smi reports total) by Ray accelerator type, used when a
# live cluster does not say how much memory its GPUs have.
ACCELERATOR_MEMORY_GIB: dict[str, float] = {
    "H100": 79.6,
    "H200": 140.4,
    "H20": 95.0,
    "A100": 79.2,
    "A100-80G": 79.2,
    "A100-40G": 39.4,
    "L40S": 44.4,
    "L40": 44.4,
    "L4": 22.0,
    "A10G": 22.0,
    "A10": 22.0,
    "T4": 14.6,
    "V100": 31.7,
    "B200": 178.0,
    "GH200": 94.5,
}


class PlacementError(ValueError):
    """Engines cannot be placed; the message names the model and the fix."""


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


def cluster_from_ray_nodes(
    nodes: Sequence[dict[str, Any]],
    *,
    gpu_memory_gib: Optional[float] = None,
    default_gpu_memory_gib: Optional[float] = None,
) -> ClusterSpec:
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
                "--resources='{\"gpu_memory_gib\": <total GiB>}'"
            )
        out.append(
            NodeSpec(
                name=f"node{i}",
                num_gpus=g,
                gpu_memory_gib=float(mem or 0.0),
                num_cpus=float(res.get("CPU", 0) or 0),
                memory_gib=float(res.get("memory", 0) or 0) / GIB,
                node_id=n.get("NodeID"),
                ip=n.get("NodeManagerAddress"),
            )
        )
    return ClusterSpec(tuple(out), source="ray")


def discover_cluster(
    *, gpu_memory_gib: Optional[float] = None, default_gpu_memory_gib: Optional[float] = None
) -> ClusterSpec:
    """Read the live Ray cluster's nodes, GPUs and CPUs (``ray.init`` must have been called)."""
    import ray  # lazy: planning without a cluster must not need ray

    if not ray.is_initialized():
        raise PlacementError(
            "Ray is not initialised: call ray.init(...) first, or plan from a node type (crosscot plan --node h100x8)"
        )
    return cluster_from_ray_nodes(
        ray.nodes(), gpu_memory_gib=gpu_memory_gib, default_gpu_memory_gib=default_gpu_memory_gib
    )


@dataclass(frozen=True)
class PlacementGroupSpec:
    """Arguments for ``ray.util.placement_group`` for one engine."""

    bundles: list[dict[str, float]]  # one bundle per TP rank: {"GPU": 1, "CPU": c}
    strategy: str = "STRICT_PACK"  # all ranks on one node (TP over NVLink, never across nodes)
    name: str = ""
    node_id: Optional[str] = None  # pin to this Ray node (label selector ray.io/node-id)

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"bundles": [dict(b) for b in self.bundles], "strategy": self.strategy, "name": self.name}
        if self.node_id:
            kw["bundle_label_selector"] = [{"ray.io/node-id": self.node_id} for _ in self.bundles]
        return kw


def placement_group_spec(
    tp: int, *, num_cpus: float = 1.0, gpu_fraction: float = 1.0, node_id: Optional[str] = None, name: str = ""
) -> PlacementGroupSpec:
    """Bundles for a TP engine: ``[{"GPU": f, "CPU": c}] * tp`` with STRICT_PACK (one node).

    ``num_cpus`` is the engine's total (``ModelConfig.num_cpus``), spread over
    the ranks with at least one CPU per rank (each vLLM worker is a process).
    ``tp=0`` means a CPU engine: one ``{"CPU": num_cpus}`` bundle.
    """
    if tp < 0 or not (0 < gpu_fraction <= 1):
        raise PlacementError(
            f"placement_group_spec(tp={tp}, gpu_fraction={gpu_fraction}): tp must be >= 0 and gpu_fraction in (0, 1]"
        )
    if tp == 0:
        return PlacementGroupSpec([{"CPU": float(max(num_cpus, 1.0))}], "STRICT_PACK", name, node_id)
    per = max(1.0, float(num_cpus) / tp)
    return PlacementGroupSpec(
        [{"GPU": float(gpu_fraction), "CPU": per} for _ in range(tp)], "STRICT_PACK", name, node_id
    )


def placement_group_spec_for(p: Placement, cluster: ClusterSpec) -> PlacementGroupSpec:
    """The placement-group spec of one scheduled engine, pinned to its planned node when known."""
    node = cluster.nodes[p.node]
    return placement_group_spec(
        len(p.gpus),
        num_cpus=p.num_cpus,
        gpu_fraction=p.gpu_fraction or 1.0,
        node_id=node.node_id,
        name=f"crosscot-{p.model}",
    )


def create_placement_group(spec: PlacementGroupSpec):
    """Create the Ray placement group (not waited on: ``ray.get(pg.ready(), timeout=...)``)."""
    from ray.util import placement_group  # lazy

    return placement_group(**spec.kwargs())
