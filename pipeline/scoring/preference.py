"""Human-preference analysis: which source model's CoTs do people prefer, and does it track consistency?

Input: a ratings table with columns ``participant, item, source, criterion``
and either ``score`` (higher is better, e.g. a Likert rating) or ``rank``
(1 = best; converted to ``score = -rank`` so higher is better everywhere).

* ``source_means`` — per (criterion, source) mean, std and n of the scores.
* ``pairwise_tests`` — for each criterion and each pair of sources, a paired
  test on per-participant mean scores (the participant is the unit, so many
  items from one person do not count as independent evidence):
  ``test="t"`` is scipy's paired t-test (``ttest_rel``), ``test="wilcoxon"``
  the Wilcoxon signed-rank test.  Effect size is Cohen's d for paired data,
  d_z = mean(diff) / sd(diff, ddof=1).  p-values are Bonferroni-corrected over
  the pairs within a criterion (``p_bonferroni = min(1, p · m)``).
* ``preference_consistency_correlation`` — Pearson and Spearman correlation
  across sources between each source's consistency and its mean preference,
  with percentile-bootstrap 95 % CIs from resampling participants (the
  consistency values are fixed; the preference means are recomputed).
"""

from __future__ import annotations

import itertools
from typing import Mapping

import numpy as np
import polars as pl

REQUIRED = ("participant", "item", "source", "criterion")


def _scores(ratings: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in REQUIRED if c not in ratings.columns]
    if missing:
        raise ValueError(f"ratings table lacks column(s) {missing}; need {REQUIRED} plus 'score' or 'rank'")
    if "score" in ratings.columns:
        val = pl.col("score").cast(pl.Float64)
    elif "rank" in ratings.columns:
        # Rank 1 is best; negate so that higher means preferred, as for scores.
        val = -pl.col("rank").cast(pl.Float64)
    else:
        raise ValueError("ratings table needs a 'score' column (higher = better) or a 'rank' column (1 = best)")
    out = ratings.select(*[pl.col(c).cast(pl.String) for c in REQUIRED], val.alias("score")).drop_nulls("score")
    if out.height == 0:
        raise ValueError("ratings table has no non-null scores")
    return out


def source_means(ratings: pl.DataFrame) -> pl.DataFrame:
    """Per (criterion, source): mean, std (ddof=1) and n of the scores."""
    s = _scores(ratings)
    return (
        s.group_by("criterion", "source")
        .agg(pl.col("score").mean().alias("mean"), pl.col("score").std().alias("std"), pl.len().alias("n"))
        .sort("criterion", "mean", descending=[False, True])
    )


def _participant_matrix(s: pl.DataFrame, criterion: str) -> tuple[list[str], list[str], np.ndarray]:
    """participants × sources matrix of per-participant mean scores (nan where not rated)."""
    pm = (
        s.filter(pl.col("criterion") == criterion)
        .group_by("participant", "source")
        .agg(pl.col("score").mean())
        .pivot(on="source", index="participant", values="score")
        .sort("participant")
    )
    sources = sorted(c for c in pm.columns if c != "participant")
    return pm["participant"].to_list(), sources, pm.select(sources).to_numpy().astype(float)


def pairwise_tests(ratings: pl.DataFrame, test: str = "t") -> pl.DataFrame:
    """Paired tests between every two sources per criterion (see module docstring)."""
    from scipy import stats

    if test not in ("t", "wilcoxon"):
        raise ValueError(f"test must be 't' (paired t-test) or 'wilcoxon' (signed-rank), got {test!r}")
    s = _scores(ratings)
    rows = []
    for crit in sorted(s["criterion"].unique().to_list()):
        _, sources, mat = _participant_matrix(s, crit)
        pairs = list(itertools.combinations(range(len(sources)), 2))
        m = len(pairs)
        for a, b in pairs:
            ok = ~np.isnan(mat[:, a]) & ~np.isnan(mat[:, b])
            x, y = mat[ok, a], mat[ok, b]
            diff = x - y
            n = int(ok.sum())
            if n < 2 or np.allclose(diff, diff[0] if n else 0):
                stat, p = float("nan"), float("nan")
            elif test == "t":
                r = stats.ttest_rel(x, y)
                stat, p = float(r.statistic), float(r.pvalue)
            else:
                r = stats.wilcoxon(x, y)
                stat, p = float(r.statistic), float(r.pvalue)
            sd = diff.std(ddof=1) if n > 1 else float("nan")
            d = float(diff.mean() / sd) if n > 1 and sd > 0 else float("nan")
            rows.append(
                {
                    "criterion": crit,
                    "source_a": sources[a],
                    "source_b": sources[b],
                    "test": "paired t" if test == "t" else "wilcoxon",
                    "n_participants": n,
                    "mean_diff": float(diff.mean()) if n else float("nan"),
                    "statistic": stat,
                    "p": p,
                    "p_bonferroni": min(1.0, p * m) if np.isfinite(p) else float("nan"),
                    "cohens_d": d,
                    "n_comparisons": m,
                }
            )
    return pl.DataFrame(rows)


def _rank_rows(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=1)


def _corr_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of x (B, S) with the vector y (S,)."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    den = np.sqrt((xc**2).sum(axis=1) * (yc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc @ yc) / np.where(den > 0, den, 1), np.nan)


def preference_consistency_correlation(
    ratings: pl.DataFrame,
    consistency: Mapping[str, float],
    criterion: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, float | int | list[str]]:
    """Pearson/Spearman across sources of consistency vs mean preference, with bootstrap CIs.

    ``consistency`` maps source → consistency value.  ``criterion`` picks one
    criterion (default: the only one; several raise unless named).
    """
    s = _scores(ratings)
    crits = s["criterion"].unique().to_list()
    if criterion is None:
        if len(crits) != 1:
            raise ValueError(f"ratings have criteria {sorted(crits)}; pass criterion=")
        criterion = crits[0]
    _, sources, mat = _participant_matrix(s, criterion)
    sources_used = [src for src in sources if src in consistency]
    if len(sources_used) < 3:
        raise ValueError(
            f"need consistency values for at least 3 rated sources to correlate; rated {sources}, "
            f"consistency given for {sorted(consistency)}"
        )
    idx = [sources.index(src) for src in sources_used]
    mat = mat[:, idx]
    cons = np.array([consistency[src] for src in sources_used], dtype=float)
    rated = ~np.isnan(mat)
    vals = np.where(rated, mat, 0.0)

    def means(w: np.ndarray) -> np.ndarray:  # w: (B, P) participant weights
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w @ vals) / (w @ rated.astype(float))

    point = means(np.ones((1, mat.shape[0])))
    pearson = float(_corr_rows(point, cons)[0])
    from scipy.stats import rankdata

    spearman = float(_corr_rows(_rank_rows(point), rankdata(cons))[0])
    rng = np.random.default_rng(seed)
    P = mat.shape[0]
    idxs = rng.integers(0, P, size=(n_boot, P))
    w = (
        np.bincount((idxs + np.arange(n_boot)[:, None] * P).ravel(), minlength=n_boot * P)
        .reshape(n_boot, P)
        .astype(float)
    )
    bm = means(w)
    ok = np.isfinite(bm).all(axis=1)
    bp = _corr_rows(bm[ok], cons)
    bsp = _corr_rows(_rank_rows(bm[ok]), rankdata(cons))

    def ci(d: np.ndarray) -> tuple[float, float]:
        d = d[np.isfinite(d)]
        return (float("nan"), float("nan")) if d.size == 0 else tuple(float(v) for v in np.quantile(d, [0.025, 0.975]))  # type: ignore[return-value]

    (plo, phi), (slo, shi) = ci(bp), ci(bsp)
    return {
        "criterion": criterion,
        "sources": sources_used,
        "n_sources": len(sources_used),
        "n_participants": P,
        "pearson": pearson,
        "pearson_ci_low": plo,
        "pearson_ci_high": phi,
        "spearman": spearman,
        "spearman_ci_low": slo,
        "spearman_ci_high": shi,
    }
