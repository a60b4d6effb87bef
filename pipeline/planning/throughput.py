"""The throughput model: node types (``conf/node/<type>.yaml``), per-model tokens/s, load times.

:class:`NodeType` describes a machine (GPUs, memory, engine load speed) and documented
*estimates* of each model's batched decode, prefill and single-sequence decode tokens/s;
:func:`load_telemetry` / :func:`resolve_throughput` replace them with measured numbers.
:func:`apply_node_overrides` applies a node type's placement-only engine sizing to a run.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from pipeline.planning.cluster import ClusterSpec, NodeSpec
from pipeline.planning.packing import EngineDemand

if TYPE_CHECKING:
    from pipeline.config import RunConfig


class PlanError(ValueError):
    """Planning input is wrong or missing; the message names it and the fix."""


@dataclass(frozen=True)
class ModelThroughput:
    """Throughput of ONE engine of a model (all its TP GPUs together), tokens/s."""

    decode_tps: float  # batched decode, many sequences in flight
    prefill_tps: float  # batched prefill (prompt processing)
    single_decode_tps: float  # one sequence at a time (the reference study's way)
    tp: int = 1  # tensor-parallel size the numbers are for
    source: str = "node table"  # node table | telemetry | fallback
    # Sequences in flight at which decode_tps holds (e.g. what a 32B model's KV cache allows);
    # 0 = the engine's max_num_seqs.  The step-cost simulation (planning/simulate.py) caps slots here.
    batch: int = 0

    def scaled_to(self, tp: int) -> "ModelThroughput":
        """Numbers for another TP size: linear in GPUs with 85% efficiency per doubling."""
        if tp == self.tp or tp <= 0:
            return self
        r = tp / self.tp
        f = r * 0.85 ** math.log2(r)
        # single-stream decode is bandwidth bound: more GPUs help less than batched decode
        fs = r**0.7
        # KV capacity grows with the GPUs, and with it the concurrency the decode rate holds at.
        return ModelThroughput(
            self.decode_tps * f,
            self.prefill_tps * f,
            self.single_decode_tps * fs,
            tp,
            self.source + f" (scaled tp {self.tp}->{tp})",
            int(self.batch * r),
        )


@dataclass
class NodeType:
    """A machine type from ``conf/node/<name>.yaml``."""

    name: str
    description: str = ""
    num_nodes: int = 1
    gpus_per_node: int = 0  # 0 = CPU-only
    gpu_memory_gib: float = 0.0
    cpus_per_node: float = 0.0
    memory_gib: float = 0.0  # host RAM
    load_fixed_s: float = 60.0  # engine start (process, CUDA context, graphs, warm-up)
    load_gibps: float = 2.0  # weight read speed from local disk/cache
    # Wall time of a run outside engine loading and engine work (Ray start, dataset, scoring, report);
    # only the plan-vs-measured check (pipeline/bench/plan_check.py) adds it.
    run_overhead_s: float = 0.0
    # Measured engine start-up per model short name (seconds), replacing the fixed + size model.
    load_s: dict[str, float] = field(default_factory=dict)
    throughput: dict[str, ModelThroughput] = field(default_factory=dict)  # by model short name
    # Engine sizing this node type needs, by model short name, e.g. {QwQ: {tensor_parallel_size: 2}}.
    # Placement-only fields (they do not change results); see apply_node_overrides.
    model_overrides: dict[str, dict] = field(default_factory=dict)
    # Unknown models: per-engine tokens/s of a 1B-parameter dense model on one GPU (or the CPU box);
    # scaled by 1/params_b (params_b < 0.5 counts as 0.5) and by TP.
    fallback_decode_tps_1b: float = 20000.0
    fallback_prefill_tps_1b: float = 100000.0
    fallback_single_decode_tps_1b: float = 400.0

    def cluster(self) -> ClusterSpec:
        nodes = tuple(
            NodeSpec(f"node{i}", self.gpus_per_node, self.gpu_memory_gib, self.cpus_per_node, self.memory_gib)
            for i in range(self.num_nodes)
        )
        return ClusterSpec(nodes, source=f"node type {self.name}")

    @property
    def total_gpus(self) -> int:
        return self.num_nodes * self.gpus_per_node

    def model_throughput(self, name: str, tp: int, params_b: float) -> ModelThroughput:
        t = self.throughput.get(name)
        if t is not None:
            return t.scaled_to(tp)
        b = max(params_b, 0.5)
        base = ModelThroughput(
            self.fallback_decode_tps_1b / b,
            self.fallback_prefill_tps_1b / b,
            self.fallback_single_decode_tps_1b / b,
            1,
            f"fallback ({params_b:g}B params)" if params_b > 0 else "fallback (params_b unset: as 0.5B)",
        )
        return base.scaled_to(tp) if self.gpus_per_node else base


def apply_node_overrides(run: "RunConfig", node: "str | NodeType") -> tuple["RunConfig", list[str]]:
    """A copy of ``run`` with the node type's ``model_overrides`` applied, and the Hydra overrides
    that make ``crosscot run`` do the same (e.g. ``models.qwq.tensor_parallel_size=2``).

    Only placement fields (``metadata={"hash": False}`` in ModelConfig) may be overridden, so
    artifacts and results are the same on every node type.
    """
    import copy
    import dataclasses

    from pipeline.config import ModelConfig

    nt = node if isinstance(node, NodeType) else load_node_type(node)
    allowed = {f.name for f in dataclasses.fields(ModelConfig) if f.metadata.get("hash", True) is False}
    out = copy.deepcopy(run)
    hydra: list[str] = []
    for key, m in out.models.items():
        for k, v in (nt.model_overrides.get(m.name) or {}).items():
            if k not in allowed:
                raise PlanError(
                    f"node type {nt.name}: model_overrides.{m.name}.{k} is not a placement field; "
                    f"allowed: {sorted(allowed)}"
                )
            if getattr(m, k) != v:
                setattr(m, k, type(getattr(m, k))(v))
                hydra.append(f"models.{key}.{k}={v}")
    return out, hydra


def node_dir() -> str:
    from pipeline.config import conf_dir

    return os.path.join(conf_dir(), "node")


def load_node_type(name_or_path: str) -> NodeType:
    """Read ``conf/node/<name>.yaml`` (or a YAML path) into a :class:`NodeType`."""
    from omegaconf import OmegaConf

    path = name_or_path
    if not os.path.isfile(path):  # a name in conf/node (a path that is a file is read as YAML)
        path = os.path.join(node_dir(), f"{name_or_path}.yaml")
    if not os.path.exists(path):
        known = (
            sorted(f[:-5] for f in os.listdir(node_dir()) if f.endswith(".yaml")) if os.path.isdir(node_dir()) else []
        )
        raise PlanError(
            f"node type {name_or_path!r} not found ({path}); known node types: {known}, or pass a path to a YAML file"
        )
    import yaml

    from pipeline.errors_fs import read_utf8

    try:
        data = OmegaConf.to_container(OmegaConf.create(read_utf8(path)), resolve=True)
    except (yaml.YAMLError, ValueError) as e:  # the node file's own syntax: name the line
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise PlanError(
            f"{path}{where} is not valid YAML ({' '.join(str(getattr(e, 'problem', None) or e).split())[:120]}); "
            "fix the node file (see conf/node/cpu2.yaml)"
        ) from None
    if not isinstance(data, dict):
        raise PlanError(f"{path} must be a mapping of node fields (see conf/node/cpu2.yaml); got {type(data).__name__}")
    tput_raw = data.pop("throughput", None) or {}
    known = set(NodeType.__dataclass_fields__)
    bad = set(data) - known
    if bad:
        raise PlanError(f"{path} has unknown field(s) {sorted(bad)}; allowed: {sorted(known)}")
    overrides = data.pop("model_overrides", None) or {}
    tput = {}
    for model, t in tput_raw.items():
        try:
            tput[str(model)] = ModelThroughput(
                float(t["decode_tps"]),
                float(t["prefill_tps"]),
                float(t["single_decode_tps"]),
                int(t.get("tp", 1)),
                f"node table {data.get('name', name_or_path)}",
                int(t.get("batch", 0)),
            )
        except (KeyError, TypeError) as e:
            raise PlanError(
                f"{path}: throughput.{model} needs decode_tps, prefill_tps, single_decode_tps "
                f"(and optional tp, batch); got {t!r}"
            ) from e
    from pipeline.planning.calibrate import apply  # a CPU node type takes this machine's measured speed

    try:
        node = NodeType(throughput=tput, model_overrides={str(k): dict(v) for k, v in overrides.items()}, **data)
    except TypeError as e:  # a required field missing
        raise PlanError(f"{path}: {e}; see conf/node/cpu2.yaml for the fields of a node file") from None
    return apply(node)


_TELEMETRY_KEYS = {
    "decode_tps": ("decode_tps", "decode_tokens_per_s", "generation_tokens_per_s"),
    "prefill_tps": ("prefill_tps", "prefill_tokens_per_s", "prompt_tokens_per_s"),
    "single_decode_tps": ("single_decode_tps", "single_stream_tokens_per_s"),
}


def load_telemetry(path: str) -> dict[str, dict[str, float]]:
    """Measured tokens/s per model: ``{"QwQ": {"decode_tps": 2100, "prefill_tps": 9000}, ...}``.

    A top-level ``{"models": {...}}`` wrapper is accepted; per model the keys in
    :data:`_TELEMETRY_KEYS` (any alias) are read and missing ones fall back to the
    node table.  ``tp`` (optional) says which TP size was measured.
    """
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise PlanError(
            f"cannot read throughput telemetry {path!r}: {e}; expected JSON like "
            '{"QwQ": {"decode_tps": 2000, "prefill_tps": 8000}}'
        ) from e
    if isinstance(data, dict) and isinstance(data.get("models"), dict):
        data = data["models"]
    if not isinstance(data, dict):
        raise PlanError(f"{path}: expected a JSON object of model name -> tokens/s fields")
    out: dict[str, dict[str, float]] = {}
    for model, rec in data.items():
        if not isinstance(rec, dict):
            raise PlanError(f"{path}: entry {model!r} must be an object with decode_tps / prefill_tps")
        got = {}
        for k, aliases in _TELEMETRY_KEYS.items():
            v = next((rec[a] for a in aliases if a in rec), None)
            if v is not None:
                if float(v) <= 0:
                    raise PlanError(f"{path}: {model}.{k}={v} must be positive")
                got[k] = float(v)
        if "tp" in rec:
            got["tp"] = float(rec["tp"])
        out[str(model)] = got
    return out


def resolve_throughput(
    run: "RunConfig", node: NodeType, telemetry: Optional[dict[str, dict[str, float]]] = None
) -> dict[str, ModelThroughput]:
    """Per model: telemetry where measured, else the node table, else the size-based fallback."""
    out = {}
    for m in run.models.values():
        tp = int(m.tensor_parallel_size)
        base = node.model_throughput(m.name, tp, float(m.params_b))
        meas = (telemetry or {}).get(m.name)
        if meas:
            mtp = int(meas.get("tp", tp))
            t = ModelThroughput(
                meas.get("decode_tps", base.decode_tps),
                meas.get("prefill_tps", base.prefill_tps),
                meas.get("single_decode_tps", base.single_decode_tps),
                mtp,
                "telemetry",
                base.batch,
            )
            base = t.scaled_to(tp) if mtp != tp else t
        out[m.name] = base
    return out


def load_seconds(d: EngineDemand, node: NodeType) -> float:
    """Engine start: measured for this node type (``load_s``), else fixed cost plus reading the weights."""
    if d.name in node.load_s:
        return float(node.load_s[d.name])
    return node.load_fixed_s + (d.weights_gib / node.load_gibps if node.load_gibps > 0 else 0.0)
