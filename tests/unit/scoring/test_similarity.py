"""Continuous consistency metrics (pipeline.scoring.similarity) on hand-made answer pairs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.config import ConfigError, compose
from pipeline.scoring import similarity as sim
from pipeline.scoring.tables import compute_tables

REPO = Path(__file__).resolve().parents[3]
II_GOLD = json.dumps({"protocol": "study", "annotations": ["x"], "similarity": "embedding"})
MC_GOLD = json.dumps({"answer": 1.0})

REV, FR, VOW = "reverse the word", "translate the word into french", "count the vowels"


def _scored(rows: list[tuple[str, str, str, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "dataset": d,
                "problem_id": p,
                "sample": 0,
                "method": "default",
                "source": t,
                "variant": "full",
                "target": t,
                "answer": a,
                "extracted": a,
                "correct": False,
                "gold": II_GOLD if d != "medcalc" else MC_GOLD,
            }
            for d, p, t, a in rows
        ],
        schema={
            "dataset": pl.String,
            "problem_id": pl.String,
            "sample": pl.Int64,
            "method": pl.String,
            "source": pl.String,
            "variant": pl.String,
            "target": pl.String,
            "answer": pl.String,
            "extracted": pl.String,
            "correct": pl.Boolean,
            "gold": pl.String,
        },
    )


def test_embedding_metric_averages_pair_means_and_zeroes_short_answers() -> None:
    ii = "instruction_induction"
    df = _scored(
        [
            (ii, "p1", "A", REV),
            (ii, "p1", "B", REV),
            (ii, "p1", "C", FR),
            (ii, "p2", "A", "ab"),
            (ii, "p2", "B", VOW),
            (ii, "p2", "C", VOW),
            (ii, "p3", "A", None),
            (ii, "p3", "B", VOW),
            (ii, "p3", "C", VOW),  # a failed answer scores 0
            ("medcalc", "7", "A", "1"),
            ("medcalc", "7", "B", "1"),
            ("medcalc", "7", "C", "2"),  # not free text
        ]
    )
    x = float(sim.embedding_scores([REV], [FR])[0])
    assert 0 < x < 0.9
    assert sim.embedding_scores([VOW], [VOW])[0] == pytest.approx(1.0, abs=1e-5)
    t = compute_tables(df, metrics=("embedding",), n_boot=20)
    pairs = {(r["model_a"], r["model_b"]): r for r in t["consistency_pairs"].iter_rows(named=True)}
    assert pairs[("A", "B")]["value"] == pytest.approx((1 + 0 + 0) / 3, abs=1e-5)
    assert pairs[("A", "C")]["value"] == pytest.approx((x + 0 + 0) / 3, abs=1e-5)
    assert pairs[("B", "C")]["value"] == pytest.approx((x + 1 + 1) / 3, abs=1e-5)
    assert {r["n_items"] for r in pairs.values()} == {3}  # the MedCalc item does not count
    s = t["consistency_summary"].row(0, named=True)
    assert s["metric"] == "embedding" and s["n_pairs"] == 3
    assert s["mean"] == pytest.approx(np.mean([p["value"] for p in pairs.values()]), abs=1e-6)
    assert s["ci_low"] <= s["mean"] <= s["ci_high"]
    only_mc = compute_tables(df.filter(pl.col("dataset") == "medcalc"), metrics=("embedding",), n_boot=0)
    assert np.isnan(only_mc["consistency_summary"]["mean"][0])


def test_bertscore_errors_name_the_fix(monkeypatch) -> None:
    with pytest.raises(sim.SimilarityError, match="set dataset.options.bertscore_model"):
        sim.bertscore_scores(["a b c"], ["a b d"], None)
    sim._bertscorer.cache_clear()
    monkeypatch.setitem(sys.modules, "bert_score", None)  # as if not installed
    with pytest.raises(sim.SimilarityError, match="pip install bert-score"):
        sim.bertscore_scores(["a b c"], ["a b d"], "microsoft/deberta-xlarge-mnli")
    with pytest.raises(sim.SimilarityError, match="pip install bert-score"):
        sim.check_metrics(["paper", "bertscore"], {"bertscore_model": "m"})
    sim.check_metrics(["paper", "embedding"], {})  # nothing to check
    with pytest.raises(ConfigError, match="bert-score"):
        compose(["experiment=demo_tiny", "dataset=instruction_induction", "score.metrics=[paper,bertscore]"])
    sim._bertscorer.cache_clear()


def test_bertscore_config_error_stops_the_run_before_any_engine(tmp_path) -> None:
    # One line on stderr, exit 2, before the DAG (and any engine) starts.
    rd = tmp_path / "never-created"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "experiment=demo_tiny",
            "dataset=instruction_induction",
            "score.metrics=[paper,bertscore]",
            f"run_dir={rd}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 2 and not rd.exists(), r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crosscot: error: ") and "bertscore" in lines[0]
    assert "pip install bert-score" in lines[0] or "dataset.options.bertscore_model" in lines[0], r.stderr


def test_bertscore_library_on_a_local_encoder() -> None:
    """The real bert-score library (installed by `make setup`) with the packaged MiniLM encoder (layer 6)."""
    from pipeline.datasets.instruction_induction import _resolve_embedding_dir

    model = _resolve_embedding_dir()
    f = sim.bertscore_scores([REV, REV, FR], [REV, FR, REV], model, 6)
    assert f[0] == pytest.approx(1.0, abs=1e-5)
    assert f[1] == pytest.approx(f[2], abs=1e-5) and 0.3 < f[1] < 0.99  # F1 is symmetric
    with pytest.raises(sim.SimilarityError, match="bertscore_layer"):
        sim.bertscore_scores([REV], [FR], model, None)  # a local folder has no library default layer
