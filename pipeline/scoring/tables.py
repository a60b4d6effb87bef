"""Write the study's result tables (CSV + Arrow) from a ``scored`` table.

Files in ``tables_dir``:

* ``consistency_summary`` — ``setting,variant,metric,mean,std,n_pairs,ci_low,ci_high,n_problems``;
* ``accuracy`` — ``setting,variant,target,accuracy,ci_low,ci_high,n`` (accuracy in [0, 1],
  over the ``n`` rows actually answered for that target);
* ``consistency_pairs`` — ``setting,variant,metric,model_a,model_b,value,n_items,ci_low,ci_high``;
* ``rl_agreement`` — ``setting,variant,metric,source,target,value,n_items`` (target ``mean``
  averages over targets).

All intervals are percentile bootstrap 95 % over problems (pipeline.scoring.bootstrap).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.scoring import bootstrap as bs
from pipeline.scoring.consistency import (
    group_matrices,
    pair_flags,
    pair_stats,
    pair_values,
    rl_agreement,
    with_setting,
)
from pipeline.store.atomic import atomic_path

SUMMARY_SCHEMA = {
    "setting": pl.String,
    "variant": pl.String,
    "metric": pl.String,
    "mean": pl.Float64,
    "std": pl.Float64,
    "n_pairs": pl.Int64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n_problems": pl.Int64,
}
ACCURACY_SCHEMA = {
    "setting": pl.String,
    "variant": pl.String,
    "target": pl.String,
    "accuracy": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n": pl.Int64,
}
PAIRS_SCHEMA = {
    "setting": pl.String,
    "variant": pl.String,
    "metric": pl.String,
    "model_a": pl.String,
    "model_b": pl.String,
    "value": pl.Float64,
    "n_items": pl.Int64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
}


def compute_tables(
    scored: pa.Table | pl.DataFrame, metrics: tuple[str, ...] = ("paper", "strict"), n_boot: int = 1000, seed: int = 0
) -> dict[str, pl.DataFrame]:
    """All result tables as polars frames (see module docstring)."""
    df = scored if isinstance(scored, pl.DataFrame) else pl.from_arrow(scored)
    df = with_setting(df)
    summary, acc, pairs = [], [], []
    for m in group_matrices(df):
        w = bs.item_weights(
            bs.problem_weights(m.n_problems, n_boot, bs.rng_for(seed, f"{m.setting}|{m.variant}")), m.problems
        )
        for j, t in enumerate(m.targets):
            pres = m.present[:, j]
            n = int(pres.sum())
            lo, hi = bs.accuracy_ci(m.correct[:, j], pres, w) if n_boot > 0 else (np.nan, np.nan)
            acc.append(
                {
                    "setting": m.setting,
                    "variant": m.variant,
                    "target": t,
                    "accuracy": float(m.correct[pres, j].mean()) if n else float("nan"),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": n,
                }
            )
        for met in metrics:
            names, agree, valid = pair_flags(m, met)
            vals = pair_values(agree, valid)
            lo, hi = bs.consistency_ci(agree, valid, w) if n_boot > 0 else (np.nan, np.nan)
            pcis = bs.pair_ci(agree, valid, w) if n_boot > 0 and names else [(np.nan, np.nan)] * len(names)
            summary.append(
                {
                    "setting": m.setting,
                    "variant": m.variant,
                    "metric": met,
                    **pair_stats(vals),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_problems": m.n_problems,
                }
            )
            for (a, b), v, n, (plo, phi) in zip(names, vals, valid.sum(axis=1), pcis):
                pairs.append(
                    {
                        "setting": m.setting,
                        "variant": m.variant,
                        "metric": met,
                        "model_a": a,
                        "model_b": b,
                        "value": float(v),
                        "n_items": int(n),
                        "ci_low": plo,
                        "ci_high": phi,
                    }
                )
    return {
        "consistency_summary": pl.DataFrame(summary, schema=SUMMARY_SCHEMA),
        "accuracy": pl.DataFrame(acc, schema=ACCURACY_SCHEMA),
        "consistency_pairs": pl.DataFrame(pairs, schema=PAIRS_SCHEMA),
        "rl_agreement": rl_agreement(df, metrics),
    }


def write_frames(frames: dict[str, pl.DataFrame], tables_dir: Path) -> dict[str, Path]:
    """Write each frame atomically as ``<name>.csv`` and ``<name>.arrow``; returns name → CSV path."""
    tables_dir = Path(tables_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, frame in frames.items():
        csv_path = tables_dir / f"{name}.csv"
        with atomic_path(csv_path) as tmp:
            frame.write_csv(tmp)
        with atomic_path(tables_dir / f"{name}.arrow") as tmp:
            frame.write_ipc(tmp)
        out[name] = csv_path
    return out


def write_tables(
    scored: pa.Table | pl.DataFrame,
    tables_dir: Path,
    metrics: tuple[str, ...] = ("paper", "strict"),
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Path]:
    """Write every table as ``<name>.csv`` and ``<name>.arrow``; returns name → CSV path."""
    return write_frames(compute_tables(scored, tuple(metrics), n_boot, seed), tables_dir)
