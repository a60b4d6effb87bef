"""`make sweep`: `crosscot run -m` over the tiny demo (conf/experiment/sweep_cpu.yaml) with the REAL CPU
engine: the jobs share one engine pool (a model is loaded once for all of them, and their items
interleave), one store (an artifact two jobs share is computed once), a failing job is recorded in
failures.jsonl while the others finish and the sweep exits non-zero, and rerunning resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def multirun(sweep_dir: Path, *overrides: str, rc: int = 0) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "-m",
        "experiment=sweep_cpu",
        f"hydra.sweep.dir={sweep_dir}",
        f"store_dir={sweep_dir / 'store'}",
        f"run_dir={sweep_dir}/${{hydra:job.num}}",
        "dataset.size=3",
        "generate.thought_budget=24",
        "generate.answer_budget=8",
        "transfer.answer_budget=8",
        "score.n_boot=50",
        "progress=false",
        *overrides,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CROSSCOT_FAULT_DELAY_S", None)
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == rc, r.stderr[-3000:]
    return r


def generate_artifacts(job_dir: Path) -> list[str]:
    man = json.loads((job_dir / "manifest.json").read_text())
    return sorted(a["path"] for s in man["stages"] if s["stage"] == "generate" for a in s["artifacts"])


def telemetry(job_dir: Path) -> dict:
    return json.loads((job_dir / "telemetry.json").read_text())


@pytest.mark.slow
def test_sweep_shares_engines_and_store_records_failures_and_resumes(tmp_path):
    sweep = tmp_path / "sweep"
    r = multirun(sweep, "model_set=ab,a", "dataset.seed=0")
    assert "engines shared" in r.stdout
    j0, j1 = sweep / "0", sweep / "1"
    assert (j0 / "report.md").exists() and (j1 / "report.md").exists()
    assert (sweep / "store").is_dir() and not (j0 / "store").exists(), "jobs share <sweep dir>/store"
    gen0, gen1 = generate_artifacts(j0), generate_artifacts(j1)
    assert len(gen0) == 2 and len(gen1) == 1 and gen1[0] in gen0, "a's generations are ab's too"
    # One engine per distinct model for the whole sweep, shared by both jobs at the same time.
    t0, t1 = telemetry(j0), telemetry(j1)
    assert {n: e["loads"] for n, e in t1["engines"].items()} == {"tiny-think": 1, "tiny-thought": 1}
    assert all(w.get("shared_with_jobs") == 2 for w in t0["waves"] + t1["waves"])
    # The generations both jobs need were computed once: by exactly one of the two jobs.
    gen_items = [
        t["stage_models"].get("generate", {}).get(m, {}).get("requests", 0) for t in (t0, t1) for m in ("tiny-think",)
    ]
    assert sum(gen_items) == 3 * 3, gen_items  # 3 problems x (empty, default, sampled), not twice
    mtime = Path(gen1[0]).stat().st_mtime
    before = (j0 / "tables" / "accuracy.csv").read_text()

    # A job that fails while running (a malformed data file) is recorded; the other job still finishes;
    # the sweep exits 1 and names the failed job.  (A bad *config* in any job stops the sweep before it
    # starts, with exit 2: see tests/unit/config/test_validation.py.)
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text('{"question": "What is 2 + 3?", "answer": "5"}\n')
    bad.write_text('{"question": "What is 2 + 3?", "answer": "5"}\n{"question": 7\n')
    failing = tmp_path / "failing"
    r = multirun(failing, "model_set=a", "dataset.seed=0", "dataset=jsonl", f"dataset.path={bad},{good}", rc=1)
    fails = [json.loads(x) for x in (failing / "failures.jsonl").read_text().splitlines()]
    assert [f["job"] for f in fails] == [0] and "bad.jsonl" in fails[0]["error"]
    assert "sweep finished with 1 of 2 job(s) failed" in r.stderr and "job 0 [" in r.stderr
    assert (failing / "1" / "report.md").exists()

    # Rerunning the first sweep resumes: nothing is recomputed, no engine starts, same tables.
    multirun(sweep, "model_set=ab,a", "dataset.seed=0")
    assert (j0 / "tables" / "accuracy.csv").read_text() == before
    assert Path(gen1[0]).stat().st_mtime == mtime
    for j in (j0, j1):
        assert not telemetry(j).get("engines")
