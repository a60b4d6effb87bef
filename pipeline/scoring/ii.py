"""Instruction Induction consistency from the study's stored BERTScores (``crosscot score`` on an II import).

For one setting and target pair, each task's score is the mean BERTScore F1
over its items (``task_score`` of :mod:`pipeline.importers.genex_ii`).  Two
metrics turn task scores into the pair's value:

* ``paper`` — exactly the study's aggregation: the mean over every JSON file
  its glob read for the pair.  That glob also matches the pair's
  ``summary_*`` file, which has no ``weighted_task_score`` and counts as 0, so
  with 20 tasks the pair's value is (sum of the 20 task scores) / 21;
* ``corrected`` — the mean over the real tasks only.

A setting's value is the mean and population std over its C(k, 2) target
pairs, as for MedCalc (:mod:`pipeline.scoring.consistency`).  Intervals are
percentile bootstrap 95 % over tasks (the resampling unit; a summary file
stays a fixed extra zero in ``paper``), with the seeding of
:mod:`pipeline.scoring.bootstrap`.

Tables (same columns as the MedCalc ones, so the report draws the same plots):
``consistency_summary`` (``n_problems`` = number of tasks), ``consistency_pairs``
(``n_items`` = number of tasks of the pair) and ``ii_tasks`` (per task, pair
and setting: the task score).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.scoring import bootstrap as bs
from pipeline.scoring.consistency import order_models, pair_stats
from pipeline.scoring.tables import PAIRS_SCHEMA, SUMMARY_SCHEMA

II_METRICS = ("paper", "corrected")
TASKS_SCHEMA = {
    "setting": pl.String,
    "variant": pl.String,
    "task": pl.String,
    "model_a": pl.String,
    "model_b": pl.String,
    "task_score": pl.Float64,
    "n_items": pl.Int64,
}


def _pair_arrays(
    files: pl.DataFrame, tasks: list[str]
) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray, np.ndarray]:
    """Pairs, task scores (P, T; 0 where absent), presence (P, T) and extra zero files per pair (P,)."""
    pairs = sorted(
        {(a, b) for a, b in files.select("model_a", "model_b").iter_rows()}, key=lambda p: (order_models(list(p)), p)
    )
    pix = {p: i for i, p in enumerate(pairs)}
    tix = {t: j for j, t in enumerate(tasks)}
    score = np.zeros((len(pairs), len(tasks)))
    present = np.zeros((len(pairs), len(tasks)), dtype=bool)
    extra = np.zeros(len(pairs))
    for r in files.iter_rows(named=True):
        i = pix[(r["model_a"], r["model_b"])]
        if r["kind"] == "task" and r["task_score"] is not None:
            score[i, tix[r["task"]]] = r["task_score"]
            present[i, tix[r["task"]]] = True
        else:
            # A file the study's glob read without a task score (the summary, an empty task) counts as 0.
            extra[i] += 1
    return pairs, score, present, extra


def ii_tables(files: pl.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, pl.DataFrame]:
    """``consistency_summary``, ``consistency_pairs`` and ``ii_tasks`` from the ``ii_files`` table."""
    summary, pair_rows = [], []
    for (setting, variant), g in sorted(files.group_by(["setting", "variant"]), key=lambda kv: kv[0]):
        tasks = sorted(t for t in g.filter(pl.col("kind") == "task")["task"].unique().to_list() if t is not None)
        pairs, score, present, extra = _pair_arrays(g, tasks)
        w = bs.problem_weights(len(tasks), n_boot, bs.rng_for(seed, f"ii|{setting}|{variant}")) if n_boot > 0 else None
        for met in II_METRICS:
            ex = extra if met == "paper" else np.zeros_like(extra)
            # A pair's value is a ratio over tasks: sum of task scores / (tasks present + extra zero files).
            vals = bs.ratio_draws(np.ones((1, len(tasks))), score, present, ex)[0]
            if w is not None:
                draws = bs.ratio_draws(w, score, present, ex)
                lo, hi = bs.pairs_mean_ci(draws)
                pcis = [bs.percentile_ci(draws[:, p]) for p in range(len(pairs))]
            else:
                lo = hi = float("nan")
                pcis = [(float("nan"), float("nan"))] * len(pairs)
            summary.append(
                {
                    "setting": setting,
                    "variant": variant,
                    "metric": met,
                    **pair_stats(vals),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_problems": len(tasks),
                }
            )
            for (a, b), v, n, (plo, phi) in zip(pairs, vals, present.sum(axis=1), pcis):
                pair_rows.append(
                    {
                        "setting": setting,
                        "variant": variant,
                        "metric": met,
                        "model_a": a,
                        "model_b": b,
                        "value": float(v),
                        "n_items": int(n),
                        "ci_low": plo,
                        "ci_high": phi,
                    }
                )
    tasks_df = (
        files.filter(pl.col("kind") == "task")
        .select("setting", "variant", "task", "model_a", "model_b", "task_score", "n_items")
        .cast(TASKS_SCHEMA)  # type: ignore[arg-type]
        .sort("setting", "variant", "task", "model_a", "model_b")
    )
    return {
        "consistency_summary": pl.DataFrame(summary, schema=SUMMARY_SCHEMA),
        "consistency_pairs": pl.DataFrame(pair_rows, schema=PAIRS_SCHEMA),
        "ii_tasks": tasks_df,
    }
