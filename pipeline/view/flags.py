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
from pipeline.scoring.consistency import MODEL_ORDER, PAPER_DROP

ITEM = ["setting", "variant", "dataset", "problem_id", "sample"]
SOURCE = "source"
FLAG_SCHEMA = {"setting": pl.String, "variant": pl.String, "dataset": pl.String, "problem_id": pl.String,
               "sample": pl.Int32, "a": pl.String, "b": pl.String, "agree": pl.Boolean, "valid": pl.Boolean}
FAST = ("paper", "strict")


def _rank(col: str) -> pl.Expr:
    # order_models: the study's models first in MODEL_ORDER, then alphabetically.
    return pl.col(col).replace_strict(list(MODEL_ORDER), list(range(len(MODEL_ORDER))), default=len(MODEL_ORDER),
                                      return_dtype=pl.Int32)


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
    uniq = uniq.with_columns(pl.Series("key", keys, dtype=pl.String), pl.Series("num", nums, dtype=pl.Float64),
                             pl.Series("tol", tols, dtype=pl.Float64))
    return cells.join(uniq, on=["dataset", "extracted", "gold"], how="left", nulls_equal=True)


def _cells(rows: pl.DataFrame, metric: str) -> pl.DataFrame:
    c = rows.select(*ITEM, "target", "answer", "extracted", "gold", pl.col("correct").fill_null(False))
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


def fast_flags(scored: pl.DataFrame, metric: str) -> pl.DataFrame:
    """Flags (``FLAG_SCHEMA``) of every pair of every (setting, variant) in ``scored`` (with ``setting``)."""
    if metric not in FAST:
        raise ValueError(f"no fast path for metric {metric!r}")
    if scored.height == 0:
        return pl.DataFrame(schema=FLAG_SCHEMA)
    cells = _cells(scored, metric).with_columns(_rank("target").alias("rank"))
    right = cells.select(*ITEM, *[pl.col(c).alias(f"{c}_b") for c in cells.columns if c not in ITEM])
    j = cells.join(right, on=ITEM, how="inner")
    j = j.filter((pl.col("rank") < pl.col("rank_b"))
                 | ((pl.col("rank") == pl.col("rank_b")) & (pl.col("target") < pl.col("target_b"))))
    agree, valid = _agree(metric)
    pairs = j.select(*ITEM, pl.col("target").alias("a"), pl.col("target_b").alias("b"),
                     agree.alias("agree"), valid.alias("valid"))

    # Against the source's own (Default) answer, for Transfer rows.
    tr = cells.join(scored.select(*ITEM, "target", "method", "source"), on=[*ITEM, "target"], how="inner") \
        .filter(pl.col("method") == "transfer")
    own_rows = scored.filter((pl.col("method") == "default") & (pl.col("target") == pl.col("source")))
    own = _cells(own_rows, metric).join(own_rows.select(*ITEM, "target", "source"), on=[*ITEM, "target"])
    keep = [c for c in own.columns if c not in ITEM and c not in ("source", "target")]
    own = own.select("dataset", "problem_id", "sample", "source", *[pl.col(c).alias(f"{c}_b") for c in keep])
    src = tr.join(own, on=["dataset", "problem_id", "sample", "source"], how="inner")
    src = src.select(*ITEM, pl.col("target").alias("a"), pl.lit(SOURCE).alias("b"), agree.alias("agree"),
                     valid.alias("valid"))
    return pl.concat([pairs, src], how="vertical_relaxed").cast(FLAG_SCHEMA).select(list(FLAG_SCHEMA))
