"""Human-ratings statistics of the study's user study: pairwise tests between CoT sources, means vs consistency.

Input: the long table of :func:`pipeline.importers.genex_ratings.read_ratings`
(``participant, item, source, criterion, value``; ``Best Overall`` holds the
raw rank, 1 = best).

``ratings_tests`` rows (``criterion, model1, model2, n1, n2, t, p, d, p_bonferroni, method``):

* ``method=paper`` — the study's test: for each criterion (Best Overall on the
  raw rank) and each of the C(4, 2) source pairs, an unpaired two-sided
  Student t-test (equal variances) on all pooled ratings of the two sources,
  Cohen's d with the pooled SD (ddof=1), Bonferroni over every paper test (24).
  It treats the four ratings a participant gave one item as independent.
* ``method=paired`` — item- and participant-matched: the unit is a
  (participant, item) that has both sources.  Ratings: Wilcoxon signed-rank
  (two-sided; zero differences dropped, scipy's default), ``t`` = W,
  ``d`` = d_z = mean(diff) / sd(diff).  Best Overall: Friedman's test over the
  (participant, item) blocks that rank all four sources (one row,
  ``model1 = model2 = "all"``, ``t`` = chi², ``d`` empty), then the same
  pairwise signed-rank tests on the ranks.  Bonferroni over every paired row.

``ratings_sources``: per criterion and source the mean value with a percentile
bootstrap 95 % CI over participants (a resampled participant brings all their
ratings), and the source's consistency when given.  ``ratings_correlation``:
Pearson and Spearman across sources of consistency vs mean preference
(:func:`pipeline.scoring.preference.preference_consistency_correlation`, ranks
negated so higher = preferred), with bootstrap CIs over participants; with
four sources these rest on four points, which the table says in ``warning``.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Mapping

import numpy as np
import polars as pl

from pipeline.importers.genex_ratings import BEST, CRITERIA, SOURCES
from pipeline.scoring import bootstrap as bs

TESTS_SCHEMA = {
    "criterion": pl.String,
    "model1": pl.String,
    "model2": pl.String,
    "n1": pl.Int64,
    "n2": pl.Int64,
    "t": pl.Float64,
    "p": pl.Float64,
    "d": pl.Float64,
    "p_bonferroni": pl.Float64,
    "method": pl.String,
}
SOURCES_SCHEMA = {
    "criterion": pl.String,
    "source": pl.String,
    "mean": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n_ratings": pl.Int64,
    "n_participants": pl.Int64,
    "consistency": pl.Float64,
}
CORR_SCHEMA = {
    "criterion": pl.String,
    "n_sources": pl.Int64,
    "n_participants": pl.Int64,
    "pearson": pl.Float64,
    "pearson_ci_low": pl.Float64,
    "pearson_ci_high": pl.Float64,
    "spearman": pl.Float64,
    "spearman_ci_low": pl.Float64,
    "spearman_ci_high": pl.Float64,
    "warning": pl.String,
}
METHODS = ("paper", "paired")
FEW_SOURCES = 5


def _order(values: list[str], order: tuple[str, ...]) -> list[str]:
    rank = {v: i for i, v in enumerate(order)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), v))


def _criteria(long: pl.DataFrame) -> list[str]:
    return _order(long["criterion"].unique().to_list(), CRITERIA)


def _sources(long: pl.DataFrame) -> list[str]:
    return _order(long["source"].unique().to_list(), SOURCES)


def _bonferroni(rows: list[dict]) -> list[dict]:
    m = len(rows)
    for r in rows:
        r["p_bonferroni"] = min(1.0, r["p"] * m) if np.isfinite(r["p"]) else float("nan")
    return rows


def cohens_d_pooled(x: np.ndarray, y: np.ndarray) -> float:
    n1, n2 = len(x), len(y)
    if n1 < 2 or n2 < 2:
        return float("nan")
    sp = np.sqrt(((n1 - 1) * x.var(ddof=1) + (n2 - 1) * y.var(ddof=1)) / (n1 + n2 - 2))
    return float((x.mean() - y.mean()) / sp) if sp > 0 else float("nan")


def paper_tests(long: pl.DataFrame) -> pl.DataFrame:
    """The study's unpaired t-tests (see module docstring)."""
    from scipy import stats

    rows = []
    for crit in _criteria(long):
        c = long.filter(pl.col("criterion") == crit)
        for a, b in itertools.combinations(_sources(long), 2):
            x = c.filter(pl.col("source") == a)["value"].to_numpy()
            y = c.filter(pl.col("source") == b)["value"].to_numpy()
            if len(x) < 2 or len(y) < 2:
                t = p = float("nan")
            else:
                r = stats.ttest_ind(x, y)
                t, p = float(r.statistic), float(r.pvalue)
            rows.append(
                {
                    "criterion": crit,
                    "model1": a,
                    "model2": b,
                    "n1": len(x),
                    "n2": len(y),
                    "t": t,
                    "p": p,
                    "d": cohens_d_pooled(x, y),
                    "method": "paper",
                }
            )
    return pl.DataFrame(_bonferroni(rows), schema=TESTS_SCHEMA)


def _blocks(long: pl.DataFrame, crit: str, sources: list[str]) -> np.ndarray:
    """(participant, item) blocks × sources matrix of values (nan where not rated)."""
    wide = (
        long.filter(pl.col("criterion") == crit)
        .pivot(on="source", index=["participant", "item"], values="value", aggregate_function="first")
        .sort("participant", "item")
    )
    return np.column_stack(
        [wide[s].to_numpy().astype(float) if s in wide.columns else np.full(wide.height, np.nan) for s in sources]
    )


def paired_tests(long: pl.DataFrame) -> pl.DataFrame:
    """Item- and participant-matched tests (see module docstring)."""
    from scipy import stats

    sources = _sources(long)
    rows = []
    for crit in _criteria(long):
        mat = _blocks(long, crit, sources)
        if crit == BEST:
            full = mat[np.isfinite(mat).all(axis=1)]
            if full.shape[0] >= 2 and len(sources) >= 3:
                r = stats.friedmanchisquare(*full.T)
                chi2, p = float(r.statistic), float(r.pvalue)
            else:
                chi2 = p = float("nan")
            rows.append(
                {
                    "criterion": crit,
                    "model1": "all",
                    "model2": "all",
                    "n1": int(full.shape[0]),
                    "n2": int(full.shape[0]),
                    "t": chi2,
                    "p": p,
                    "d": float("nan"),
                    "method": "paired",
                }
            )
        for i, j in itertools.combinations(range(len(sources)), 2):
            ok = np.isfinite(mat[:, i]) & np.isfinite(mat[:, j])
            x, y = mat[ok, i], mat[ok, j]
            diff = x - y
            n = int(ok.sum())
            if n < 2 or not np.any(diff != 0):
                w = p = float("nan")
            else:
                r = stats.wilcoxon(x, y)
                w, p = float(r.statistic), float(r.pvalue)
            sd = diff.std(ddof=1) if n > 1 else float("nan")
            d = float(diff.mean() / sd) if n > 1 and sd > 0 else float("nan")
            rows.append(
                {
                    "criterion": crit,
                    "model1": sources[i],
                    "model2": sources[j],
                    "n1": n,
                    "n2": n,
                    "t": w,
                    "p": p,
                    "d": d,
                    "method": "paired",
                }
            )
    return pl.DataFrame(_bonferroni(rows), schema=TESTS_SCHEMA)


def ratings_tests(long: pl.DataFrame, methods: tuple[str, ...] = METHODS) -> pl.DataFrame:
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown ratings method(s) {unknown}; use {list(METHODS)}")
    fns = {"paper": paper_tests, "paired": paired_tests}
    return pl.concat([fns[m](long) for m in methods])


def _participant_weights(n: int, n_boot: int, seed: int, label: str) -> np.ndarray:
    return bs.problem_weights(n, n_boot, bs.rng_for(seed, label))


def source_summary(
    long: pl.DataFrame, consistency: Mapping[str, float] | None = None, n_boot: int = 2000, seed: int = 0
) -> pl.DataFrame:
    """Per criterion and source: mean value, bootstrap 95 % CI over participants, n, consistency."""
    parts = sorted(long["participant"].unique().to_list())
    pix = {p: i for i, p in enumerate(parts)}
    rows = []
    for crit in _criteria(long):
        w = _participant_weights(len(parts), n_boot, seed, f"ratings|{crit}") if n_boot > 0 else None
        for src in _sources(long):
            s = long.filter((pl.col("criterion") == crit) & (pl.col("source") == src))
            by = s.group_by("participant").agg(pl.col("value").sum().alias("sum"), pl.len().alias("n"))
            tot, cnt = np.zeros(len(parts)), np.zeros(len(parts))
            for p, sm, n in by.iter_rows():
                tot[pix[p]], cnt[pix[p]] = sm, n
            mean = float(tot.sum() / cnt.sum()) if cnt.sum() else float("nan")
            lo = hi = float("nan")
            if w is not None:
                lo, hi = bs.percentile_ci(bs.ratio_draws(w, tot[None, :], cnt[None, :])[:, 0])
            rows.append(
                {
                    "criterion": crit,
                    "source": src,
                    "mean": mean,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_ratings": int(cnt.sum()),
                    "n_participants": int((cnt > 0).sum()),
                    "consistency": float(consistency[src]) if consistency and src in consistency else None,
                }
            )
    return pl.DataFrame(rows, schema=SOURCES_SCHEMA)


def correlation(
    long: pl.DataFrame, consistency: Mapping[str, float], n_boot: int = 2000, seed: int = 0
) -> pl.DataFrame:
    """Per criterion: consistency vs mean preference across sources (bootstrap CIs over participants)."""
    from pipeline.scoring.preference import preference_consistency_correlation

    rows = []
    for crit in _criteria(long):
        c = long.filter(pl.col("criterion") == crit)
        # preference.py takes 'rank' (1 = best, negated there) or 'score' (higher = better).
        c = c.rename({"value": "rank" if crit == BEST else "score"})
        r = preference_consistency_correlation(c, consistency, criterion=crit, n_boot=n_boot, seed=seed)
        n = int(r["n_sources"])  # type: ignore[arg-type]
        warn = (
            (
                f"rests on {n} sources (one point each): a correlation over {n} points is fragile and its "
                "interval reflects only participant sampling, not the choice of sources"
            )
            if n < FEW_SOURCES
            else ""
        )
        rows.append({k: r[k] for k in CORR_SCHEMA if k in r} | {"criterion": crit, "warning": warn})
    return pl.DataFrame(rows, schema=CORR_SCHEMA)


def consistency_for_sources(
    spec: str | Path, sources: tuple[str, ...] = SOURCES, metric: str = "paper", variant: str = "full"
) -> dict[str, float]:
    """Consistency per source from a ``consistency_summary.csv`` or ``SRC=VALUE,...``.

    In a summary, a source ``S`` takes the value of setting ``Transfer S`` or
    ``Ensemble S`` (metric ``metric``, variant ``variant``).
    """
    text = str(spec)
    if Path(text).is_file():
        with open(text, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("metric") == metric and r.get("variant") == variant]
        by_setting = {r["setting"]: float(r["mean"]) for r in rows}
        out = {s: by_setting[k] for s in sources for k in (f"Transfer {s}", f"Ensemble {s}") if k in by_setting}
        if not out:
            raise ValueError(
                f"{text}: no Transfer/Ensemble setting for the sources {list(sources)} "
                f"(metric {metric}, variant {variant}); pass a MedCalc run's tables/consistency_summary.csv"
            )
        return out
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        k, sep, v = part.rpartition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            sep = ""
        if not sep or not k.strip():
            raise ValueError(f"consistency {part!r} is not SOURCE=VALUE (e.g. OSS=0.733) and {text!r} is not a file")
    return out
