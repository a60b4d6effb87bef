"""Engine placement: packing, TP groups within one node, waves, load counts, Ray discovery and PG specs."""

from __future__ import annotations

import itertools
import random
import time

import pytest

from pipeline.config import ModelConfig, SamplingConfig
from pipeline.planning.cluster import (
    ClusterSpec,
    NodeSpec,
    PlacementError,
    cluster_from_ray_nodes,
    placement_group_spec,
    placement_group_spec_for,
)
from pipeline.planning.packing import EngineDemand, Packer, engine_demand
from pipeline.planning.schedule import Schedule, Workload, plan_waves


def cluster(*gpus: int, mem: float = 80.0, cpus: float = 64.0) -> ClusterSpec:
    return ClusterSpec(tuple(NodeSpec(f"node{i}", g, mem, cpus, 512.0) for i, g in enumerate(gpus)), "test")


def eng(name: str, tp: int, mem: float = 0.0, cpus: float = 1.0) -> EngineDemand:
    return EngineDemand(name, name.lower(), tp, mem, num_cpus=cpus)


def everything(ds: list[EngineDemand], ensemble: tuple[str, ...] = (), filt: str | None = None) -> Workload:
    names = tuple(d.name for d in ds)
    return Workload(names, names, ensemble, filt)


def check_invariants(s: Schedule, ds: list[EngineDemand], wl: Workload) -> None:
    """Each wave is a valid packing; stage order and residency are consistent."""
    by = {d.name: d for d in ds}
    for w in s.waves:
        used: dict[tuple[int, int], float] = {}
        for p in w.placements:
            node = s.cluster.nodes[p.node]
            if not s.cluster.cpu_only:
                assert len(p.gpus) == by[p.model].tp, "a TP group gets exactly tp GPUs"
                assert len(set(p.gpus)) == len(p.gpus) and all(0 <= g < node.num_gpus for g in p.gpus)
            for g in p.gpus:
                used[(p.node, g)] = used.get((p.node, g), 0.0) + p.gpu_fraction
        assert all(v <= 1.0 + 1e-9 for v in used.values()), f"wave {w.index} oversubscribes a GPU: {used}"
    # every generate model generates exactly once; every target transfers exactly once
    gen = [p.model for w in s.waves for p in w.placements if "generate" in p.stages]
    xfer = [p.model for w in s.waves for p in w.placements if "transfer" in p.stages]
    assert sorted(gen) == sorted(wl.generate)
    assert sorted(xfer) == sorted(wl.transfer_targets)
    # transfer only after ALL generation: no transfer in a wave before the last generate wave
    last_gen = max((w.index for w in s.waves if "generate" in w.stages), default=0)
    assert all(w.index >= last_gen for w in s.waves if "transfer" in w.stages)
    # a model marked "kept loaded" was resident in the previous wave at the same place
    for prev, w in zip(s.waves, s.waves[1:]):
        for p in w.placements:
            if not p.loaded:
                q = prev.placement(p.model)
                assert (q.node, q.gpus) == (p.node, p.gpus)
    assert s.total_loads == sum(p.loaded for w in s.waves for p in w.placements)


def test_all_fit_one_wave():
    ds = [eng("NRR", 1, 5), eng("OpenT", 1, 20), eng("OSS", 1, 30), eng("QwQ", 2, 90), eng("DAPO", 2, 90)]
    wl = everything(ds, ("QwQ", "DAPO", "OSS"))
    s = plan_waves(ds, cluster(8), wl)
    check_invariants(s, ds, wl)
    assert len(s.waves) == 1 and s.total_loads == 5 == s.min_loads
    assert s.waves[0].stages == ("generate", "transfer", "ensemble")
    assert "wave 1 [generate+transfer+ensemble]:" in s.log and "QwQ on node0 GPUs" in s.log


def test_waves_minimise_loads_known_optimum():
    # 4 GPUs, engines 2+2+1+1+1 = 7 GPUs.  The largest packable last wave has 3 engines,
    # so the optimum is N + N - 3 = 7 loads in 3 waves.
    ds = [eng("A", 2), eng("B", 2), eng("c", 1), eng("d", 1), eng("e", 1)]
    wl = everything(ds)
    s = plan_waves(ds, cluster(4), wl)
    check_invariants(s, ds, wl)
    assert s.total_loads == 7
    assert len(s.waves) == 3
    last_gen = [w for w in s.waves if "generate" in w.stages][-1]
    assert len(last_gen.placements) == 3
    assert all("transfer" in p.stages for p in last_gen.placements), "last generate wave transfers right away"
    assert all(s.loads[m] == 1 for m in last_gen.models)


def test_tp_group_stays_within_one_node():
    # Two 2-GPU nodes: the TP=2 engines must each take a whole node, never one GPU of each.
    ds = [eng("A", 2), eng("B", 1), eng("C", 1)]
    s = plan_waves(ds, cluster(2, 2), everything(ds))
    check_invariants(s, ds, everything(ds))
    a = [w.placement("A") for w in s.waves if "A" in w.models][0]
    assert a.gpus == (0, 1)
    assert len(s.waves) == 1 and s.total_loads == 3
    # 3 free GPUs split 1+2 over nodes cannot host a TP=3 group
    with pytest.raises(PlacementError, match=r"'X'.*tensor_parallel_size=3.*largest node has 2 GPUs.*models\.x"):
        plan_waves([eng("X", 3)], cluster(2, 2), Workload(("X",), ("X",)))


def _independent_max_last_wave(ds: list[EngineDemand], nodes: list[int]) -> int:
    """Brute force: the largest subset whose TP sizes can be split over the nodes."""
    best = 0
    for r in range(len(ds), 0, -1):
        for sub in itertools.combinations(ds, r):
            for assign in itertools.product(range(len(nodes)), repeat=len(sub)):
                load = [0] * len(nodes)
                for d, n in zip(sub, assign):
                    load[n] += d.tp
                if all(l <= c for l, c in zip(load, nodes)):
                    return r
    return best


@pytest.mark.parametrize("seed", range(12))
def test_random_instances_reach_the_load_optimum(seed):
    rng = random.Random(seed)
    nodes = [rng.choice([2, 4]) for _ in range(rng.randint(1, 2))]
    ds = [eng(f"m{i}", rng.choice([1, 1, 2, 2, 4][: 3 + (max(nodes) >= 4) * 2])) for i in range(rng.randint(2, 6))]
    ds = [d for d in ds if d.tp <= max(nodes)]
    wl = everything(ds)
    s = plan_waves(ds, cluster(*nodes), wl)
    check_invariants(s, ds, wl)
    n = len(ds)
    assert s.total_loads == n + n - _independent_max_last_wave(ds, nodes)


def test_too_big_model_names_model_and_fix():
    m = ModelConfig(
        name="QwQ",
        path="/x",
        thinking_format="think_tags",
        dtype="bfloat16",
        greedy=SamplingConfig(0.0, 1.0, -1),
        sampled=SamplingConfig(0.6, 0.95, -1),
        params_b=32.8,
        tensor_parallel_size=1,
    )
    d = engine_demand(m, "qwq")
    assert d.estimated and 75 < d.memory_gib < 80  # 61 GiB bf16 weights + 25% KV + 2 GiB
    with pytest.raises(PlacementError) as e:
        plan_waves([d], cluster(8, mem=79.6), Workload(("QwQ",), ("QwQ",)))
    msg = str(e.value)
    assert "'QwQ'" in msg and "set models.qwq.tensor_parallel_size=2" in msg and "memory_gib" in msg
    # the fix works
    m.tensor_parallel_size = 2
    s = plan_waves([engine_demand(m, "qwq")], cluster(8, mem=79.6), Workload(("QwQ",), ("QwQ",)))
    assert s.waves[0].placements[0].gpus == (0, 1)


def test_ensemble_group_co_resident_and_too_big_group():
    ds = [eng("NRR", 1), eng("OpenT", 1), eng("OSS", 1), eng("QwQ", 2), eng("DAPO", 2)]
    wl = everything(ds, ("QwQ", "DAPO", "OSS"))
    s = plan_waves(ds, cluster(6), wl)
    check_invariants(s, ds, wl)
    ens = [w for w in s.waves if "ensemble" in w.stages]
    assert len(ens) == 1 and {"QwQ", "DAPO", "OSS"} <= set(ens[0].models)
    assert s.total_loads == 6  # N + 1: one target reloaded, the ensemble rides along
    with pytest.raises(PlacementError, match=r"ensemble group .*QwQ.*does not fit"):
        plan_waves(ds, cluster(4), wl)


def test_llm_filter_runs_after_all_generation_before_transfer():
    ds = [eng("A", 2), eng("B", 2), eng("c", 1), eng("d", 1)]
    wl = everything(ds, filt="B")
    s = plan_waves(ds, cluster(4), wl)
    check_invariants(s, ds, wl)
    tr = [(w.index, p.model) for w in s.waves for p in w.placements if "truncate" in p.stages]
    assert len(tr) == 1 and tr[0][1] == "B"
    last_gen = max(w.index for w in s.waves if "generate" in w.stages)
    first_xfer = min(w.index for w in s.waves if "transfer" in w.stages)
    assert tr[0][0] >= last_gen and tr[0][0] <= first_xfer
    assert s.total_loads == 4 + 4 - 3  # last wave {B, c, d} (B is the filter) stays; only A reloads
    assert "B" in [w for w in s.waves if "generate" in w.stages][-1].models


def test_filter_and_ensemble_that_do_not_fit_together():
    # 4 GPUs: the LLM filter F (TP=2) must follow all generation; the ensemble A+B (2+2) needs 4 GPUs.
    ds = [eng("A", 2), eng("B", 2), eng("F", 2), eng("c", 1)]
    wl = everything(ds, ("A", "B"), "F")
    s = plan_waves(ds, cluster(4), wl)
    check_invariants(s, ds, wl)
    assert s.total_loads == 6  # F and c stay for truncate+transfer; A and B come back once, together
    ens = [w for w in s.waves if "ensemble" in w.stages]
    assert len(ens) == 1 and set(ens[0].models) == {"A", "B"} and "transfer" in ens[0].stages
    trunc = [w.index for w in s.waves if "truncate" in w.stages]
    assert trunc == [max(w.index for w in s.waves if "generate" in w.stages)]


def test_share_gpus_packs_by_gpu_memory_utilization():
    # vLLM claims gpu_memory_utilization of the GPU: a .2 + b .2 + c .4 = .8 share one GPU
    # (<= MAX_GPU_SHARE); the TP=2 engine D keeps two whole GPUs despite its .5.  Whole GPUs need 5.
    ds = [
        EngineDemand(n, n, tp, 0.0, gpu_memory_utilization=u)
        for n, tp, u in (("a", 1, 0.2), ("b", 1, 0.2), ("c", 1, 0.4), ("D", 2, 0.5))
    ]
    wl = everything(ds)
    whole = plan_waves(ds, cluster(3), wl, share_gpus=False)
    shared = plan_waves(ds, cluster(3), wl, share_gpus=True)
    check_invariants(shared, ds, wl)
    assert len(whole.waves) > 1 and whole.total_loads > 4
    assert len(shared.waves) == 1 and shared.total_loads == 4
    per_gpu: dict[int, float] = {}
    for p in shared.waves[0].placements:
        assert p.gpu_fraction == {"a": 0.2, "b": 0.2, "c": 0.4, "D": 1.0}[p.model]
        for g in p.gpus:
            per_gpu[g] = per_gpu.get(g, 0.0) + p.gpu_fraction
    assert sorted(per_gpu.values()) == pytest.approx([0.8, 1.0, 1.0])
    assert "(20% share)" in shared.log
    # sharing never exceeds MAX_GPU_SHARE: with c at .6 the three no longer fit one GPU
    ds2 = ds[:2] + [EngineDemand("c", "c", 1, 0.0, gpu_memory_utilization=0.6)] + ds[3:]
    assert len(plan_waves(ds2, cluster(3), everything(ds2), share_gpus=True).waves) > 1
    # auto: whole GPUs when all fit at once, sharing only when it saves loads
    assert plan_waves(ds, cluster(3), wl).total_loads == 4
    auto_big = plan_waves(ds, cluster(8), wl)
    assert all(p.gpu_fraction == 1.0 for p in auto_big.waves[0].placements)


def test_memory_need_must_fit_the_engines_share():
    d = EngineDemand("OSS", "oss", 1, 40.0, gpu_memory_utilization=0.3)
    with pytest.raises(PlacementError, match=r"'OSS'.*set models\.oss\.gpu_memory_utilization=0\.51"):
        plan_waves([d], cluster(8, mem=79.6), Workload(("OSS",), ("OSS",)))
    # 1% slack: "0.9 x 141 GB = 127" fits a 140.4 GiB GPU at 0.9
    q = EngineDemand("QwQ", "qwq", 1, 127.0, gpu_memory_utilization=0.9)
    assert plan_waves([q], cluster(8, mem=140.4), Workload(("QwQ",), ("QwQ",))).total_loads == 1


def test_cpu_only_cluster_packs_by_cpus_and_memory():
    ds = [EngineDemand(n, n, 1, 0.0, num_cpus=1.0, host_memory_gib=2.0) for n in ("a", "b", "c")]
    wl = everything(ds)
    two_cpus = ClusterSpec((NodeSpec("node0", 0, 0.0, 2.0, 20.0),))
    s = plan_waves(ds, two_cpus, wl)
    check_invariants(s, ds, wl)
    assert len(s.waves) == 3 and s.total_loads == 4 and "(1 CPUs)" in s.log
    low_mem = ClusterSpec((NodeSpec("node0", 0, 0.0, 8.0, 5.0),))  # memory, not CPUs, limits to 2
    assert plan_waves(ds, low_mem, wl).total_loads == 4
    with pytest.raises(PlacementError, match=r"'a'.*host memory.*kv_cache_gib"):
        plan_waves(ds, ClusterSpec((NodeSpec("node0", 0, 0.0, 8.0, 1.0),)), wl)


def test_cpus_per_node_limit_tp_engines():
    # 2 CPUs per node: a TP=2 engine reserves one CPU per rank, so one such engine per node.
    ds = [eng("A", 2), eng("B", 2)]
    s = plan_waves(ds, cluster(4, cpus=2), everything(ds))
    assert len(s.waves) == 3 and s.total_loads == 3  # gen A | gen+transfer B | transfer A
    s2 = plan_waves(ds, cluster(4, 4, cpus=2), everything(ds))
    assert len(s2.waves) == 1 and {p.node for p in s2.waves[0].placements} == {0, 1}


def test_packer_first_fit_decreasing_is_exact_over_nodes():
    # Nodes 3+3 GPUs, engines 2,2,1,1: in input order first-fit would put 2+1 on node0 and fail later
    # only with a bad order; the packer must find 2+1 | 2+1.
    p = Packer(cluster(3, 3))
    got = p.pack([eng("x", 1), eng("y", 1), eng("A", 2), eng("B", 2)])
    assert got is not None
    per_node = {}
    for name, (node, gpus, _) in got.items():
        per_node[node] = per_node.get(node, 0) + len(gpus)
    assert per_node == {0: 3, 1: 3}


def test_cluster_from_ray_nodes_records():
    nodes = [
        {
            "NodeID": "b" * 56,
            "Alive": True,
            "NodeManagerAddress": "10.0.0.2",
            "Resources": {"CPU": 96.0, "GPU": 8.0, "memory": 512 * 2**30, "accelerator_type:H200": 1.0},
        },
        {
            "NodeID": "a" * 56,
            "Alive": True,
            "NodeManagerAddress": "10.0.0.1",
            "Resources": {"CPU": 8.0, "memory": 32 * 2**30},
        },
        {"NodeID": "c" * 56, "Alive": False, "NodeManagerAddress": "10.0.0.3", "Resources": {"GPU": 8.0}},
    ]
    c = cluster_from_ray_nodes(nodes)
    assert [n.ip for n in c.nodes] == ["10.0.0.1", "10.0.0.2"]  # dead node dropped, sorted by address
    assert c.nodes[1].num_gpus == 8 and c.nodes[1].gpu_memory_gib == pytest.approx(140.4)
    assert c.nodes[0].num_gpus == 0 and c.nodes[0].memory_gib == pytest.approx(32)
    custom = [
        {
            "NodeID": "d" * 56,
            "Alive": True,
            "NodeManagerAddress": "x",
            "Resources": {"GPU": 4.0, "gpu_memory_gib": 96.0},
        }
    ]
    assert cluster_from_ray_nodes(custom).nodes[0].gpu_memory_gib == 24.0
    unknown = [{"NodeID": "e" * 56, "Alive": True, "NodeManagerAddress": "x", "Resources": {"GPU": 2.0}}]
    with pytest.raises(PlacementError, match="gpu_memory_gib"):
        cluster_from_ray_nodes(unknown)
    assert cluster_from_ray_nodes(unknown, default_gpu_memory_gib=40).nodes[0].gpu_memory_gib == 40


def test_placement_group_spec_shapes():
    s = placement_group_spec(2)
    assert s.bundles == [{"GPU": 1.0, "CPU": 1.0}, {"GPU": 1.0, "CPU": 1.0}] and s.strategy == "STRICT_PACK"
    assert "bundle_label_selector" not in s.kwargs()
    pinned = placement_group_spec(4, num_cpus=8, node_id="ab" * 28, name="crosscot-QwQ")
    kw = pinned.kwargs()
    assert kw["bundles"] == [{"GPU": 1.0, "CPU": 2.0}] * 4 and kw["name"] == "crosscot-QwQ"
    assert kw["bundle_label_selector"] == [{"ray.io/node-id": "ab" * 28}] * 4
    assert placement_group_spec(0, num_cpus=2).bundles == [{"CPU": 2.0}]
    with pytest.raises(PlacementError, match="gpu_fraction"):
        placement_group_spec(1, gpu_fraction=0)


def test_ray_discovery_and_strict_pack_placement_groups():
    """Two fake 4-GPU nodes: discovery sees them; a TP=2 engine's group lands on ONE planned node."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster
    from ray.util import placement_group_table, remove_placement_group

    from pipeline.planning.cluster import create_placement_group, discover_cluster

    t0 = time.monotonic()
    small = {"num_cpus": 2, "num_gpus": 4, "resources": {"accelerator_type:H100": 1}, "object_store_memory": 80 * 2**20}
    c = Cluster(initialize_head=True, head_node_args={**small, "include_dashboard": False})
    try:
        c.add_node(**small)
        ray.init(address=c.address, log_to_driver=False)
        c.wait_for_nodes()
        cl = discover_cluster()
        assert [n.num_gpus for n in cl.nodes] == [4, 4]
        assert all(n.gpu_memory_gib == pytest.approx(79.6) and n.num_cpus == 2 for n in cl.nodes)
        assert len({n.node_id for n in cl.nodes}) == 2
        # Each node has 2 CPUs, so the two TP=2 engines must go to different nodes.
        ds = [eng("A", 2), eng("B", 2)]
        s = plan_waves(ds, cl, everything(ds))
        assert len(s.waves) == 1 and {p.node for p in s.waves[0].placements} == {0, 1}
        pgs = []
        for p in s.waves[0].placements:
            spec = placement_group_spec_for(p, cl)
            assert spec.strategy == "STRICT_PACK" and len(spec.bundles) == 2
            pg = create_placement_group(spec)
            pgs.append((p, pg))
        for p, pg in pgs:
            ray.get(pg.ready(), timeout=20)
            where = set(placement_group_table(pg)["bundles_to_node_id"].values())
            assert where == {cl.nodes[p.node].node_id}, "both TP ranks on the planned node"
        for _, pg in pgs:
            remove_placement_group(pg)
        # the runner's entry point: a RunConfig + the live cluster -> waves
        from pipeline.config import compose
        from pipeline.planning.schedule import schedule_for_run

        demo = schedule_for_run(compose(["experiment=demo_tiny"]))
        assert len(demo.waves) == 1 and demo.total_loads == 3 and demo.cluster.source == "ray"
    finally:
        ray.shutdown()
        c.shutdown()
    assert time.monotonic() - t0 < 60
