"""Cross-model consistency: do target models answer alike after reading the same CoT?

For one setting (e.g. "Transfer QwQ", variant "full") the answers form an
item × target matrix (items are ``(dataset, problem_id, sample)``).  A metric
turns two target columns into per-item ``agree``/``valid`` flags; a pair's
value is the share of valid items that agree; a setting's value is the mean
and population std over the C(k, 2) target pairs.

Metrics (registry ``METRICS``, selectable by name):

* ``paper`` — the reference study's rule.  Two answers agree when the answer
  strings are identical or both are judged correct.  The strings are the
  ``answer`` column: the study's stored answers for imported files; for live
  runs the checker's extracted, normalized answer (``official``: exactly the
  string the study's code would have stored, see :func:`paper_dropped`).  Items where either
  answer contains "N/A", "not defined", "does not match" or "are not
  permitted" (the study's evaluator error messages) are dropped for that
  pair.  A missing answer (null: the target's generation failed) is *not*
  dropped: it is compared as a value, so it disagrees with any real answer
  and two missing answers agree.  This is what reproduces the study's
  Transfer figures exactly (dropping such rows gives .902 instead of .870 for
  Transfer QwQ).
* ``strict`` — the extracted answers, normalized by the dataset plug-in
  (dates, (weeks, days), rounded integers), must be equal; decimals agree when
  they differ by at most the calculator's tolerance (half the gold's
  Lower–Upper window, i.e. ±5 % of the gold).  No both-correct shortcut; a
  missing or unparseable answer never agrees.

* ``embedding`` / ``bertscore`` — continuous: the similarity of the two
  answers (pipeline.scoring.similarity); a pair's value is the mean over its
  items, as the study's Instruction Induction consistency.

``rl_agreement`` is the comparison with the source model itself: per source,
the share of items on which each target's answer (after the source's
transferred CoT) agrees with the source's own answer, averaged over targets.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import polars as pl

from pipeline.datasets import shared_dataset
from pipeline.registry import Registry
from pipeline.schema import setting_name

# Models in the order tables and plots use; others follow alphabetically.
MODEL_ORDER = ("NRR", "OpenT", "OSS", "QwQ", "DAPO")
PAPER_DROP = ("N/A", "not defined", "does not match", "are not permitted")


def order_models(names: list[str] | set[str]) -> list[str]:
    rank = {m: i for i, m in enumerate(MODEL_ORDER)}
    return sorted(set(names), key=lambda m: (rank.get(m, len(rank)), m))


@dataclass
class ItemMatrix:
    """Answers of one setting laid out as items × targets."""

    setting: str
    variant: str
    items: list[tuple[str, str, int]]
    targets: list[str]
    answer: np.ndarray  # object (I, T): stored/extracted answer string or None
    extracted: np.ndarray  # object (I, T)
    correct: np.ndarray  # bool (I, T)
    present: np.ndarray  # bool (I, T): a row exists for (item, target)
    gold: list[dict[str, Any]]  # per item
    datasets: list[str]  # per item
    problems: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # problem index per item
    n_problems: int = 0
    # The strict metric's per-cell keys/values/tolerances, computed once per matrix (see strict_metric).
    strict_cells: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default=None, repr=False, compare=False)

    def pairs(self) -> list[tuple[int, int]]:
        return list(itertools.combinations(range(len(self.targets)), 2))


MetricFn = Callable[[ItemMatrix, int, int], tuple[np.ndarray, np.ndarray]]
METRICS: Registry = Registry("consistency metric")
# Continuous metrics: pairwise similarity of free-text answers (the study's Instruction Induction
# consistency); per-item values in [0, 1] instead of agree flags.
METRICS.register("embedding", "pipeline.scoring.similarity:embedding_metric")
METRICS.register("bertscore", "pipeline.scoring.similarity:bertscore_metric")


def get_metric(name: str) -> MetricFn:
    return METRICS.get(name)


# --------------------------------------------------------------------------- metrics


def paper_dropped(answer: str | None) -> bool:
    """The study's drop rule: an answer holding one of ``PAPER_DROP`` is left out of a pair's items.

    Those strings are what the study's evaluator stored instead of an answer
    when extraction or checking raised ("name 'N' is not defined",
    "time data 'N/A' does not match format", "leading zeros ... are not
    permitted") or found nothing ("N/A").  Live runs judged with the
    ``official`` checker store the same strings (pipeline.datasets.medcalc_official),
    so the rule drops the same replies there; a missing answer (None: the
    generation failed) is kept and compared as a value.
    """
    return answer is not None and any(n in answer for n in PAPER_DROP)


def _dropped(col: np.ndarray) -> np.ndarray:
    return np.fromiter((paper_dropped(s) for s in col), dtype=bool, count=len(col))


@METRICS.register("paper")
def paper_metric(m: ItemMatrix, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    xa, xb = m.answer[:, a], m.answer[:, b]
    valid = m.present[:, a] & m.present[:, b] & ~_dropped(xa) & ~_dropped(xb)
    # Object-array equality: None == None is True (two failed answers agree).
    same = np.fromiter((p == q for p, q in zip(xa, xb)), dtype=bool, count=len(xa))
    agree = same | (m.correct[:, a] & m.correct[:, b])
    return agree & valid, valid


def _strict_cells(m: ItemMatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalized key (object), numeric value (float, nan) per cell and tolerance per item."""
    I, T = m.extracted.shape
    keys = np.empty((I, T), dtype=object)
    vals = np.full((I, T), np.nan)
    tol = np.zeros(I)
    for i in range(I):
        p = shared_dataset(m.datasets[i])
        g = m.gold[i]
        tol[i] = float(p.tolerance(g))
        for t in range(T):
            e = m.extracted[i, t]
            k = p.normalize(e, g)
            keys[i, t] = k
            if k is not None and tol[i] > 0:
                try:
                    vals[i, t] = float(k)
                except ValueError:
                    continue  # not a number: compared by its key only (vals stays NaN)
    return keys, vals, tol


@METRICS.register("strict")
def strict_metric(m: ItemMatrix, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    if m.strict_cells is None:
        m.strict_cells = _strict_cells(m)
    keys, vals, tol = m.strict_cells
    valid = m.present[:, a] & m.present[:, b]
    ka, kb = keys[:, a], keys[:, b]
    both = np.fromiter((p is not None and q is not None for p, q in zip(ka, kb)), dtype=bool, count=len(ka))
    same = np.fromiter((p == q for p, q in zip(ka, kb)), dtype=bool, count=len(ka)) & both
    with np.errstate(invalid="ignore"):
        close = np.abs(vals[:, a] - vals[:, b]) <= tol + 1e-12
    agree = (same | (both & close)) & valid
    return agree, valid


# --------------------------------------------------------------------------- matrices


def with_setting(scored: pl.DataFrame) -> pl.DataFrame:
    """Add the ``setting`` label column (schema.setting_name of method, source)."""
    pairs = scored.select("method", "source").unique()
    labels = pairs.with_columns(
        pl.Series("setting", [setting_name(m, s) for m, s in pairs.iter_rows()], dtype=pl.String)
    )
    return scored.join(labels, on=["method", "source"], how="left", maintain_order="left")


def build_matrix(rows: pl.DataFrame, setting: str, variant: str, target_col: str = "target") -> ItemMatrix:
    """Lay out the rows of one setting as items × targets (one row per cell expected)."""
    targets = order_models(rows[target_col].unique().to_list())
    tix = {t: j for j, t in enumerate(targets)}
    keys = list(zip(rows["dataset"].to_list(), rows["problem_id"].to_list(), rows["sample"].to_list()))
    items = sorted(set(keys), key=lambda k: (k[0], int(k[1]) if str(k[1]).isdigit() else 0, str(k[1]), k[2]))
    iix = {k: i for i, k in enumerate(items)}
    I, T = len(items), len(targets)
    answer = np.full((I, T), None, dtype=object)
    extracted = np.full((I, T), None, dtype=object)
    correct = np.zeros((I, T), dtype=bool)
    present = np.zeros((I, T), dtype=bool)
    gold: list[Any] = [None] * I
    tg = rows[target_col].to_list()
    for r, (k, t, a, e, c, g) in enumerate(
        zip(
            keys,
            tg,
            rows["answer"].to_list(),
            rows["extracted"].to_list(),
            rows["correct"].to_list(),
            rows["gold"].to_list(),
        )
    ):
        i, j = iix[k], tix[t]
        if present[i, j]:
            raise ValueError(
                f"setting {setting!r} variant {variant!r}: two rows for problem {k[1]} sample {k[2]} target {t!r}; "
                "answers must be unique per key (see schema.ANSWER_KEY)"
            )
        answer[i, j], extracted[i, j], correct[i, j], present[i, j] = a, e, bool(c), True
        if gold[i] is None:
            gold[i] = json.loads(g)
    probs = {}
    pidx = np.array([probs.setdefault((k[0], k[1]), len(probs)) for k in items], dtype=int)
    return ItemMatrix(
        setting,
        variant,
        items,
        targets,
        answer,
        extracted,
        correct,
        present,
        gold,
        [k[0] for k in items],
        pidx,
        len(probs),
    )


def group_matrices(scored: pl.DataFrame) -> list[ItemMatrix]:
    """One ItemMatrix per (setting, variant), in a stable order."""
    df = with_setting(scored) if "setting" not in scored.columns else scored
    out = []
    for (setting, variant), rows in sorted(df.group_by(["setting", "variant"]), key=lambda kv: (kv[0][0], kv[0][1])):
        out.append(build_matrix(rows, setting, variant))
    return out


def pair_flags(m: ItemMatrix, metric: str) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """(pair names, agree (P, I), valid (P, I)) for every target pair of ``m``."""
    fn = get_metric(metric)
    names, ag, va = [], [], []
    for a, b in m.pairs():
        agree, valid = fn(m, a, b)
        names.append((m.targets[a], m.targets[b]))
        ag.append(agree)
        va.append(valid)
    I = len(m.items)
    if not names:
        return [], np.zeros((0, I), bool), np.zeros((0, I), bool)
    return names, np.vstack(ag), np.vstack(va)


def pair_values(agree: np.ndarray, valid: np.ndarray) -> np.ndarray:
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, agree.sum(axis=1) / np.maximum(n, 1), np.nan)


def pair_stats(vals: np.ndarray) -> dict[str, Any]:
    """``mean``, population ``std`` and ``n_pairs`` over the pairs that have a value (NaN: no items)."""
    ok = ~np.isnan(vals)
    return {
        "mean": float(vals[ok].mean()) if ok.any() else float("nan"),
        "std": float(vals[ok].std(ddof=0)) if ok.any() else float("nan"),
        "n_pairs": int(ok.sum()),
    }


def setting_consistency(m: ItemMatrix, metric: str = "paper") -> dict[str, Any]:
    """Mean and population std over target pairs, plus the per-pair values."""
    names, agree, valid = pair_flags(m, metric)
    vals = pair_values(agree, valid)
    return {
        "setting": m.setting,
        "variant": m.variant,
        "metric": metric,
        **pair_stats(vals),
        "pairs": [(a, b, float(v), int(n)) for (a, b), v, n in zip(names, vals, valid.sum(axis=1))],
    }


def pair_matrix(m: ItemMatrix, metric: str = "paper") -> tuple[list[str], np.ndarray]:
    """Symmetric targets × targets matrix of pair values (diagonal 1)."""
    res = setting_consistency(m, metric)
    T = len(m.targets)
    out = np.eye(T)
    ix = {t: i for i, t in enumerate(m.targets)}
    for a, b, v, _ in res["pairs"]:
        out[ix[a], ix[b]] = out[ix[b], ix[a]] = v
    return m.targets, out


def consistency(scored: pl.DataFrame, metrics: tuple[str, ...] = ("paper", "strict")) -> pl.DataFrame:
    """Summary rows ``setting, variant, metric, mean, std, n_pairs`` for every group and metric."""
    rows = []
    for m in group_matrices(scored):
        for met in metrics:
            r = setting_consistency(m, met)
            r.pop("pairs")
            rows.append(r)
    return pl.DataFrame(rows)


# --------------------------------------------------------------------------- RL comparison


OWN = "(own)"


def rl_matrices(scored: pl.DataFrame) -> list[tuple[str, str, ItemMatrix]]:
    """Per transfer (source, variant): matrix of the targets plus the source's own answer.

    The source's own answer is its Default answer (method ``default``, target =
    source): the answer it gave at the end of the CoT that was transferred.
    """
    df = with_setting(scored) if "setting" not in scored.columns else scored
    own_all = df.filter((pl.col("method") == "default") & (pl.col("target") == pl.col("source")))
    out = []
    for (source, variant), rows in sorted(
        df.filter(pl.col("method") == "transfer").group_by(["source", "variant"]), key=lambda kv: kv[0]
    ):
        own = own_all.filter(pl.col("source") == source)
        if own.height == 0:
            continue
        own = own.with_columns(pl.lit(f"{source} {OWN}").alias("target"), pl.lit(variant).alias("variant"))
        both = pl.concat([rows.select(own.columns), own], how="vertical_relaxed")
        # Only items the transfer covers.
        both = both.join(
            rows.select("dataset", "problem_id", "sample").unique(), on=["dataset", "problem_id", "sample"]
        )
        out.append((source, variant, build_matrix(both, setting_name("transfer", source), variant)))
    return out


def rl_agreement(scored: pl.DataFrame, metrics: tuple[str, ...] = ("paper", "strict")) -> pl.DataFrame:
    """Rows ``setting, variant, metric, source, target, value, n_items``; target ``mean`` averages the targets."""
    rows = []
    for source, variant, m in rl_matrices(scored):
        own = m.targets.index(f"{source} {OWN}")
        for met in metrics:
            fn = get_metric(met)
            vals = []
            for j, t in enumerate(m.targets):
                if j == own:
                    continue
                agree, valid = fn(m, own, j)
                n = int(valid.sum())
                v = float(agree.sum() / n) if n else float("nan")
                vals.append(v)
                rows.append(
                    {
                        "setting": m.setting,
                        "variant": variant,
                        "metric": met,
                        "source": source,
                        "target": t,
                        "value": v,
                        "n_items": n,
                    }
                )
            arr = np.array(vals, dtype=float)
            rows.append(
                {
                    "setting": m.setting,
                    "variant": variant,
                    "metric": met,
                    "source": source,
                    "target": "mean",
                    "value": float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan"),
                    "n_items": len(m.items),
                }
            )
    schema = {
        "setting": pl.String,
        "variant": pl.String,
        "metric": pl.String,
        "source": pl.String,
        "target": pl.String,
        "value": pl.Float64,
        "n_items": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)
