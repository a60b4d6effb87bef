"""A simulated two-node Ray cluster (ray.cluster_utils.Cluster: head + 1 worker, 1 CPU each) running
the REAL CPU engine for two tiny models through pipeline.stages.dag.run joined via ray.address."""

from __future__ import annotations

import json

import pytest

from pipeline.config import compose
from pipeline.stages.dag import run


@pytest.mark.slow
def test_two_node_cluster_places_one_engine_per_node(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1}})
    try:
        cluster.add_node(num_cpus=1, resources={"worker": 1})
        cluster.wait_for_nodes()
        d = tmp_path / "run"
        cfg = compose(
            [
                "experiment=demo_tiny",
                "~models.c",
                f"run_dir={d}",
                "dataset.size=3",
                "generate.thought_budget=16",
                "generate.answer_budget=8",
                "transfer.answer_budget=8",
                "generate.methods=[empty,default]",
                "score.n_boot=50",
                "progress=false",
                f"ray.address={cluster.address}",
                "ray.ship_code=false",
                # one CPU each: one engine per node, both resident at once
                "models.a.num_cpus=1",
                "models.b.num_cpus=1",
            ]
        )
        run(cfg)
    finally:
        ray.shutdown()
        cluster.shutdown()
    tel = json.loads((d / "telemetry.json").read_text())
    nodes = {n: e["where"]["node_id"] for n, e in tel["engines"].items()}
    assert set(nodes) == {"tiny-think", "tiny-thought"}
    assert len(set(nodes.values())) == 2, f"one engine per node, got {nodes}"
    sched = tel["schedule"]
    assert len(sched["waves"]) == 1 and {p["node"] for p in sched["waves"][0]["placements"]} == {"node0", "node1"}
    # one streaming wave with both engines resident, each on its own node
    assert len(tel["waves"]) == 1 and tel["waves"][0]["stage"] == "stream"
    assert sorted(tel["waves"][0]["models"]) == ["tiny-think", "tiny-thought"]
    man = json.loads((d / "manifest.json").read_text())
    assert man["placement"]["schedule"]["total_loads"] == 2
    assert (d / "report.md").exists() and "Engine waves" in (d / "report.md").read_text()
