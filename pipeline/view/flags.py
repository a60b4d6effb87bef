"""Per-item agreement flags for every target pair, as columns (Polars), for the viewer's filters.

The tables compute a pair's value from an item × target matrix per setting
(:mod:`pipeline.scoring.consistency`); filtering 200,000 answers must not rebuild those matrices
in Python for every query, so this module computes the same flags with joins:

* ``paper`` — valid when both answers exist and neither holds one of ``PAPER_DROP``; agree when
  the answer strings are equal (two missing answers agree) or both are correct;
* ``strict`` — valid when both exist; agree when both normalized keys exist and are equal or,
  both numeric, within the item's tolerance (the dataset plug-in's ``normalize``/``tolerance``,
  called once per distinct answer);
* pairs with the source's own answer (``b = "source"``): the target's answer after a
  ``Transfer <S>`` CoT against S's Default answer on the same problem (``tables/rl_agreement``).

Other metrics fall back to the tables' own matrix code.  ``tests/unit/view/test_flags.py``
checks every flag against :func:`pipeline.scoring.consistency.pair_flags` and the counts against
the tables.
"""

from __future__ import annotations

import json
from typing import Optional

import polars as pl

from pipeline.datasets import shared_dataset
from pipeline.scoring.consistency import PAPER_DROP, order_models

SOURCE = "source"
FLAG_SCHEMA = {"iid": pl.UInt32, "a": pl.String, "b": pl.String, "agree": pl.Boolean, "valid": pl.Boolean}
FAST = ("paper", "strict")


def _strict_keys(cells: pl.DataFrame) -> pl.DataFrame:
    """``key`` (normalized answer), ``num`` (its float, null when not numeric or tolerance 0), ``tol``."""
    uniq = cells.select("dataset", "extracted", "gold").unique()
    keys, nums, tols = [], [], []
    gold_cache: dict[tuple[str, str], tuple[dict, float]] = {}
    for ds, ext, g in uniq.iter_rows():
        p = shared_dataset(ds)
        if (ds, g) not in gold_cache:
            gd = json.loads(g)
            gold_cache[(ds, g)] = (gd, float(p.tolerance(gd)))
        gd, tol = gold_cache[(ds, g)]
        k = p.normalize(ext, gd)
        num: Optional[float] = None
        if k is not None and tol > 0:
            try:
                num = float(k)
            except ValueError:
                num = None
        keys.append(k)
        nums.append(num)
        tols.append(tol)
    uniq = uniq.with_columns(
        pl.Series("key", keys, dtype=pl.String),
        pl.Series("num", nums, dtype=pl.Float64),
        pl.Series("tol", tols, dtype=pl.Float64),
    )
    return cells.join(uniq, on=["dataset", "extracted", "gold"], how="left", nulls_equal=True)


def _cells(rows: pl.DataFrame, metric: str) -> pl.DataFrame:
    c = rows.select(
        "iid",
        "dataset",
        "problem_id",
        "sample",
        "method",
        "source",
        "target",
        "answer",
        "extracted",
        "gold",
        pl.col("correct").fill_null(False),
    )
    if metric == "paper":
        return c.with_columns(pl.col("answer").str.contains_any(list(PAPER_DROP)).fill_null(False).alias("dropped"))
    return _strict_keys(c)


def _agree(metric: str) -> tuple[pl.Expr, pl.Expr]:
    if metric == "paper":
        valid = ~pl.col("dropped") & ~pl.col("dropped_b")
        agree = pl.col("answer").eq_missing(pl.col("answer_b")) | (pl.col("correct") & pl.col("correct_b"))
        return agree & valid, valid
    both = pl.col("key").is_not_null() & pl.col("key_b").is_not_null()
    close = ((pl.col("num") - pl.col("num_b")).abs() <= pl.col("tol") + 1e-12).fill_null(False)
    return (both & ((pl.col("key") == pl.col("key_b")) | close)).fill_null(False), pl.lit(True)


VALUES = {"paper": ("answer", "correct", "dropped"), "strict": ("key", "num")}


def fast_flags(scored: pl.DataFrame, metric: str) -> pl.DataFrame:
    """``iid, a, b, agree, valid`` for every target pair of every item of ``scored`` (which has ``iid``,
    the viewer's item id; pairs named in the tables' model order)."""
    if metric not in FAST:
        raise ValueError(f"no fast path for metric {metric!r}")
    if scored.height == 0:
        return pl.DataFrame(schema=FLAG_SCHEMA)
    cells = _cells(scored, metric)
    vals = VALUES[metric]
    agree, valid = _agree(metric)
    keep = ["iid", *vals] + (["tol"] if metric == "strict" else [])
    by_target = {t: g.select(keep) for (t,), g in cells.group_by(["target"])}
    out = []
    targets = order_models(list(by_target))
    for i, a in enumerate(targets):
        for b in targets[i + 1 :]:
            right = by_target[b].select("iid", *[pl.col(v).alias(f"{v}_b") for v in vals])
            j = by_target[a].join(right, on="iid", how="inner")
            out.append(
                j.select("iid", pl.lit(a).alias("a"), pl.lit(b).alias("b"), agree.alias("agree"), valid.alias("valid"))
            )
    # Against the source's own (Default) answer, for Transfer rows (as tables/rl_agreement).
    tr = cells.filter(pl.col("method") == "transfer")
    own = cells.filter((pl.col("method") == "default") & (pl.col("target") == pl.col("source")))
    own = own.select("dataset", "problem_id", "sample", "source", *[pl.col(v).alias(f"{v}_b") for v in vals])
    src = tr.join(own, on=["dataset", "problem_id", "sample", "source"], how="inner")
    out.append(
        src.select(
            "iid", pl.col("target").alias("a"), pl.lit(SOURCE).alias("b"), agree.alias("agree"), valid.alias("valid")
        )
    )
    return pl.concat(out, how="vertical_relaxed").cast(FLAG_SCHEMA)
