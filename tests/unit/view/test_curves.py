"""The partial-CoT curve: points straight from the tables, fraction 0 = Empty, 1 = full; in the report."""

from __future__ import annotations

import polars as pl

from pipeline.report import render
from pipeline.report.curves import prefix_curves, variant_fraction
from pipeline.scoring.tables import ACCURACY_SCHEMA, SUMMARY_SCHEMA


def _tables(tmp_path):
    summary = pl.DataFrame(
        [
            {
                "setting": s,
                "variant": v,
                "metric": "paper",
                "mean": m,
                "std": 0.0,
                "n_pairs": 1,
                "ci_low": m - 0.1,
                "ci_high": m + 0.1,
                "n_problems": 10,
            }
            for s, v, m in [
                ("Empty", "full", 0.1),
                ("Transfer A", "full", 0.8),
                ("Transfer A", "prefix_0.5", 0.5),
                ("Transfer A", "prefix_0.25", 0.3),
                ("Transfer A", "without_answer", 0.7),
                ("Default", "full", 0.4),
            ]
        ],
        schema=SUMMARY_SCHEMA,
    )
    acc = pl.DataFrame(
        [
            {"setting": s, "variant": v, "target": t, "accuracy": a, "ci_low": a - 0.1, "ci_high": a + 0.1, "n": 10}
            for s, v, t, a in [
                ("Empty", "full", "A", 0.2),
                ("Empty", "full", "B", 0.1),
                ("Transfer A", "full", "B", 0.9),
                ("Transfer A", "prefix_0.5", "B", 0.6),
                ("Transfer A", "prefix_0.25", "B", 0.4),
                ("Default", "full", "A", 0.5),
            ]
        ],
        schema=ACCURACY_SCHEMA,
    )
    tables = tmp_path / "tables"
    tables.mkdir()
    summary.write_csv(tables / "consistency_summary.csv")
    acc.write_csv(tables / "accuracy.csv")
    return summary, acc


def test_prefix_curves_points(tmp_path):
    summary, acc = _tables(tmp_path)
    (c,) = prefix_curves(summary, acc)
    assert c["setting"] == "Transfer A"
    assert [(p["fraction"], p["value"]) for p in c["consistency"]] == [(0.0, 0.1), (0.25, 0.3), (0.5, 0.5), (1.0, 0.8)]
    assert [(p["fraction"], p["value"]) for p in c["accuracy"]["B"]] == [
        (0.0, 0.1),
        (0.25, 0.4),
        (0.5, 0.6),
        (1.0, 0.9),
    ]
    assert (
        variant_fraction("without_answer") is None
        and prefix_curves(summary.filter(pl.col("variant") == "full"), acc) == []
    )


def test_report_has_the_curve(tmp_path):
    _tables(tmp_path)
    render(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "## Partial CoT" in md and "| Transfer A | 0.25 | 0.300 |" in md
    assert (tmp_path / "plots" / "partial_cot_curves.png").stat().st_size > 1000
