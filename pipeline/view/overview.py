"""The Overview and Curves pages' data: the run's tables, exactly as the report reads them.

The numbers are the files in ``<run_dir>/tables/`` (written by :mod:`pipeline.scoring.tables`),
never recomputed here, so the viewer and ``report.md`` cannot disagree.  Each heatmap cell carries
the Items filter that lists the items behind it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.scoring.consistency import order_models
from pipeline.scoring.tables import ACCURACY_SCHEMA, PAIRS_SCHEMA, SUMMARY_SCHEMA

_SCHEMAS = {"consistency_summary": SUMMARY_SCHEMA, "accuracy": ACCURACY_SCHEMA, "consistency_pairs": PAIRS_SCHEMA}


def read_tables(run_dir: Path) -> dict[str, pl.DataFrame]:
    """The tables the report reads (CSV, as written by the score stage); absent ones are left out."""
    out = {}
    for name in ("consistency_summary", "accuracy", "consistency_pairs", "rl_agreement"):
        p = Path(run_dir) / "tables" / f"{name}.csv"
        if p.is_file():
            out[name] = pl.read_csv(p, schema_overrides=_SCHEMAS.get(name))
    return out


def _clean(rows: list[dict]) -> list[dict]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]


def setting_order(s: str) -> tuple[int, str]:
    for i, p in enumerate(("Empty", "Default", "Sampled", "Transfer", "Ensemble")):
        if s.startswith(p):
            return (i, s)
    return (9, s)


def overview(run_dir: Path) -> dict[str, Any]:
    """Summary (setting × variant × metric), accuracy (per target) and one heatmap per setting/variant/metric."""
    t = read_tables(run_dir)
    summary = t.get("consistency_summary")
    acc = t.get("accuracy")
    pairs = t.get("consistency_pairs")
    rl = t.get("rl_agreement")
    groups: dict[tuple[str, str], dict] = {}
    for r in _clean(summary.to_dicts() if summary is not None else []):
        g = groups.setdefault(
            (r["setting"], r["variant"]),
            {"setting": r["setting"], "variant": r["variant"], "consistency": {}, "accuracy": {}},
        )
        g["consistency"][r["metric"]] = r
    for r in _clean(acc.to_dicts() if acc is not None else []):
        g = groups.setdefault(
            (r["setting"], r["variant"]),
            {"setting": r["setting"], "variant": r["variant"], "consistency": {}, "accuracy": {}},
        )
        g["accuracy"][r["target"]] = r
    heatmaps = []
    if pairs is not None:
        for (s, v, m), rows in sorted(
            pairs.group_by(["setting", "variant", "metric"]),
            key=lambda kv: (setting_order(kv[0][0]), kv[0][1], kv[0][2]),
        ):
            rows_d = _clean(rows.to_dicts())
            models = order_models({r["model_a"] for r in rows_d} | {r["model_b"] for r in rows_d})
            heatmaps.append({"setting": s, "variant": v, "metric": m, "models": models, "cells": rows_d})
    targets = order_models({r for g in groups.values() for r in g["accuracy"]})
    metrics = sorted({m for g in groups.values() for m in g["consistency"]})
    return {
        "run": Path(run_dir).name,
        "groups": sorted(
            groups.values(), key=lambda g: (setting_order(g["setting"]), g["variant"] != "full", g["variant"])
        ),
        "targets": targets,
        "metrics": metrics,
        "heatmaps": heatmaps,
        "rl": _clean(rl.to_dicts()) if rl is not None else [],
        "has_tables": bool(t),
    }


def curves(run_dir: Path) -> dict[str, Any]:
    """The partial-CoT curves (pipeline.report.curves.prefix_curves) for every metric."""
    from pipeline.report.curves import prefix_curves

    t = read_tables(run_dir)
    summary, acc = t.get("consistency_summary"), t.get("accuracy")
    metrics = sorted(summary["metric"].unique().to_list()) if summary is not None and summary.height else []
    return {"curves": {m: prefix_curves(summary, acc, m) for m in metrics}, "metrics": metrics}
