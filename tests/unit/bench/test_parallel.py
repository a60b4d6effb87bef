"""pipeline.bench.parallel writes the ratio sequential/parallel (engines stubbed: the real run is `make bench`)."""

from __future__ import annotations

import json

import pipeline.bench.parallel as bp


def test_bench_parallel_writes_ratio(tmp_path, monkeypatch):
    def fake_sweep(work, mode, seeds, size, num_cpus):
        jobs = []
        for s in seeds:
            d = work / mode / f"seed{s}"
            (d / "tables").mkdir(parents=True)
            (d / "tables" / "accuracy.csv").write_text(f"acc,{s}\n")
            jobs.append({"seed": s, "wall_s": 10.0 if mode == "parallel" else 15.0, "run_dir": str(d),
                         "loads": 3 if mode == "parallel" else 5, "generated": 100, "waves": 2})
        return {"mode": mode, "wall_s": 10.0 * len(seeds) * (1.5 if mode == "sequential" else 1), "jobs": jobs}

    monkeypatch.setattr(bp, "run_sweep", fake_sweep)
    r = bp.main(tmp_path, seeds=(0, 1))
    assert r["ratio"] == 1.5 and r["identical"]
    md = (tmp_path / "parallel_bench.md").read_text()
    assert "1.50x" in md and "| sequential | 30.0 | 15.0, 15.0 | 5, 5 |" in md
    assert json.loads((tmp_path / "parallel_bench.json").read_text())["ratio"] == 1.5
