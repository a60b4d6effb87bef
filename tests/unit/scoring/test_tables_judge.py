"""score_answers (both judges) and write_tables: columns, values, files."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from pipeline.datasets.medcalc import make_gold
from pipeline.schema import ANSWERS, SCORED, from_rows
from pipeline.scoring.judge import judge_agreement, score_answers
from pipeline.scoring.tables import write_tables

GOLD = json.dumps(make_gold("4", "4", "4", "4", "score", "integer"))


def _answers() -> pa.Table:
    rows = []
    for method, source in (("default", None), ("transfer", "A")):
        for t, texts in {"A": ["4", "5", None], "B": ["4", "4", "7"]}.items():
            for i, txt in enumerate(texts):
                rows.append(
                    {
                        "dataset": "medcalc",
                        "problem_id": str(i + 1),
                        "method": method,
                        "source": source or t,
                        "variant": "full",
                        "sample": 0,
                        "target": t,
                        "gold": GOLD,
                        "answer": None,
                        "answer_text": None
                        if txt is None
                        else json.dumps({"step_by_step_thinking": "..", "answer": txt}),
                        # Stored judgment deliberately wrong on one row to test the agreement report.
                        "stored_correct": (txt == "4") if not (t == "B" and i == 2) else True,
                        "error": None,
                    }
                )
    return from_rows(rows, ANSWERS)


def test_score_ours_fills_extracted_and_answer() -> None:
    s = score_answers(_answers(), "ours")
    assert s.schema.equals(SCORED)
    d = s.to_pylist()
    r = next(x for x in d if x["target"] == "A" and x["problem_id"] == "2")
    assert r["extracted"] == "5" and r["answer"] == "5" and r["correct"] is False and r["judge"] == "ours"
    assert sum(x["correct"] for x in d) == 6


def test_score_stored_and_agreement() -> None:
    s = score_answers(_answers(), "stored")
    assert sum(s.column("correct").to_pylist()) == 8
    res = judge_agreement(_answers())
    assert res["n"] == 12 and len(res["disagreements"]) == 2
    assert res["agreement"] == pytest.approx(10 / 12)
    assert {d["target"] for d in res["disagreements"]} == {"B"} and not res["disagreements"][0]["ours"]


def test_stored_judge_needs_stored_judgments() -> None:
    a = _answers()
    a = a.set_column(a.schema.get_field_index("stored_correct"), "stored_correct", pa.nulls(a.num_rows, pa.bool_()))
    with pytest.raises(ValueError, match="--judge ours"):
        score_answers(a, "stored")
    with pytest.raises(ValueError, match="unknown judge"):
        score_answers(a, "gpt")


def test_write_tables_columns_and_values(tmp_path: Path) -> None:
    paths = write_tables(score_answers(_answers(), "ours"), tmp_path, metrics=("paper", "strict"), n_boot=200, seed=1)
    assert set(paths) == {"consistency_summary", "accuracy", "consistency_pairs", "rl_agreement"}
    for name in paths:
        assert (tmp_path / f"{name}.csv").is_file() and (tmp_path / f"{name}.arrow").is_file()
    summ = pl.read_csv(paths["consistency_summary"])
    assert summ.columns[:6] == ["setting", "variant", "metric", "mean", "std", "n_pairs"]
    assert summ.columns[6:8] == ["ci_low", "ci_high"]
    acc = pl.read_csv(paths["accuracy"])
    assert acc.columns == ["setting", "variant", "target", "accuracy", "ci_low", "ci_high", "n"]
    a = {(r["setting"], r["target"]): r for r in acc.iter_rows(named=True)}
    assert a[("Default", "A")]["accuracy"] == pytest.approx(1 / 3) and a[("Default", "A")]["n"] == 3
    pairs = pl.read_csv(paths["consistency_pairs"])
    assert pairs.columns[:7] == ["setting", "variant", "metric", "model_a", "model_b", "value", "n_items"]
    p = pairs.filter((pl.col("setting") == "Default") & (pl.col("metric") == "paper")).row(0, named=True)
    # Item 1: same; item 2: "5" vs "4" differ; item 3: None vs "7" differ.
    assert p["value"] == pytest.approx(1 / 3) and p["n_items"] == 3
    rl = pl.read_csv(paths["rl_agreement"])
    assert {"setting", "variant", "metric", "source", "target", "value", "n_items"} <= set(rl.columns)
    # Seeded: same tables twice.
    again = write_tables(score_answers(_answers(), "ours"), tmp_path / "b", n_boot=200, seed=1)
    assert pl.read_csv(again["consistency_summary"]).equals(summ)
