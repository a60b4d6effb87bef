"""A sweep with a failing job finishes the others, then exits 1 with a failure summary (no engines here:
the DAG is replaced by a recorder; tests/integration/test_sweep.py runs the same with real engines)."""

from __future__ import annotations

import json

import pytest


def test_failed_sweep_job_exits_nonzero_after_the_others(tmp_path, monkeypatch, capsys):
    import pipeline.engine.ray_pool as ray_pool
    import pipeline.hydra_app as app
    import pipeline.stages.dag as dag

    ran = []

    def fake_run_jobs(cfgs, pool):  # every job of the sweep at once, on the one pool
        out = []
        for cfg in cfgs:
            ran.append(cfg.dataset.seed)
            out.append(ValueError("job one broke") if cfg.dataset.seed == 1 else object())
        return out

    class NoPool:  # no Ray, no engines
        def __init__(self, cfg):
            pass

        def bind(self, cfgs):
            pass

        def stop(self):
            pass

    monkeypatch.setattr(dag, "run_jobs", fake_run_jobs)
    monkeypatch.setattr(ray_pool, "EnginePool", NoPool)
    monkeypatch.setattr(ray_pool, "init_ray", lambda cfg: None)
    sweep = tmp_path / "sweep"
    rc = app.run_cli(
        [
            "-m",
            "experiment=demo_tiny",
            f"hydra.sweep.dir={sweep}",
            f"run_dir={sweep}/${{hydra:job.num}}",
            "dataset.seed=0,1,2",
        ]
    )
    assert rc == 1 and ran == [0, 1, 2], "every job ran, the failure did not stop the sweep"
    err = capsys.readouterr().err
    assert "sweep finished with 1 of 3 job(s) failed" in err and "job 1 [" in err and "dataset.seed=1]" in err
    assert "job one broke" in err
    [rec] = [json.loads(x) for x in (sweep / "failures.jsonl").read_text().splitlines()]
    assert rec["job"] == 1

    # and a clean sweep exits 0
    rc = app.run_cli(
        [
            "-m",
            "experiment=demo_tiny",
            f"hydra.sweep.dir={tmp_path / 's2'}",
            f"run_dir={tmp_path / 's2'}/${{hydra:job.num}}",
            "dataset.seed=0,2",
        ]
    )
    assert rc == 0


def test_single_run_failure_is_raised_for_the_cli(tmp_path, monkeypatch):
    import pipeline.hydra_app as app
    import pipeline.stages.dag as dag
    from pipeline.datasets.protocol import DatasetError

    def boom(cfg):
        raise DatasetError("d.jsonl row 2: field question: expected text; fix the row")

    monkeypatch.setattr(dag, "run", boom)
    with pytest.raises(DatasetError):
        app.run_cli(["experiment=demo_tiny", f"run_dir={tmp_path}"])
