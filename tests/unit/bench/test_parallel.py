"""pipeline.bench.parallel on the fake engine: its real sweeps run, the sequential mode really loads one
engine at a time, the tables match, and the reported ratio is the ratio of the measured wall times."""

from __future__ import annotations

import json
from pathlib import Path

import pipeline.bench.parallel as bp
import pipeline.stages.dag as dag
from pipeline.engine.fake import FakePool


def test_bench_parallel_measures_real_sweeps(tmp_path, monkeypatch):
    monkeypatch.setattr(dag, "default_pool_factory", lambda cfg: lambda: FakePool(cfg))
    r = bp.main(tmp_path, seeds=(0, 1), size=3, keep_work=True)
    par, seq = r["parallel"], r["sequential"]

    def waves(job: dict) -> list[list[str]]:  # from the run's own telemetry
        tel = json.loads((Path(job["run_dir"]) / "telemetry.json").read_text())
        return [w["models"] for w in tel["waves"]]

    for j in seq["jobs"]:
        assert waves(j) and all(len(w) == 1 for w in waves(j)), "sequential mode: one engine per wave"
    for j in par["jobs"]:
        assert max(len(w) for w in waves(j)) == 3, "parallel mode: the 3 models share a wave"
    assert all(js["waves"] > jp["waves"] for js, jp in zip(seq["jobs"], par["jobs"]))
    assert r["identical"]
    assert r["ratio"] == seq["wall_s"] / par["wall_s"]
    md = (tmp_path / "parallel_bench.md").read_text()
    assert f"{r['ratio']:.2f}x" in md and "| sequential |" in md
    assert json.loads((tmp_path / "parallel_bench.json").read_text())["ratio"] == r["ratio"]
