"""Bootstrap 95 % intervals over problems, vectorized with numpy.

The resampling unit is the problem (``(dataset, problem_id)``): every item of
a resampled problem (all its samples, all targets) enters together, so target
pairs stay paired.  One draw is a vector of problem counts; a figure's value
under that draw is a weighted ratio, so all ``n_boot`` draws are one matrix
product.  Accuracy intervals use the real number of rows answered (``n``),
not a nominal test-set size.

Seeds: ``seed`` plus a stable CRC of a label (the setting), so a figure's CI
does not depend on which other settings are in the table.
"""

from __future__ import annotations

import zlib

import numpy as np

ALPHA = 0.05


def rng_for(seed: int, label: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(label.encode("utf-8"))])


def problem_weights(n_problems: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_problems) counts of each problem in each resample."""
    if n_problems == 0:
        return np.zeros((n_boot, 0))
    idx = rng.integers(0, n_problems, size=(n_boot, n_problems))
    flat = idx + (np.arange(n_boot)[:, None] * n_problems)
    return np.bincount(flat.ravel(), minlength=n_boot * n_problems).reshape(n_boot, n_problems).astype(float)


def item_weights(problem_w: np.ndarray, problem_of_item: np.ndarray) -> np.ndarray:
    """Expand problem counts to items (each item inherits its problem's count)."""
    return problem_w[:, problem_of_item]


def percentile_ci(draws: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    d = draws[np.isfinite(draws)]
    if d.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def ratio_draws(w: np.ndarray, num: np.ndarray, den: np.ndarray, extra_den: np.ndarray | None = None) -> np.ndarray:
    """Weighted ratios under each draw.

    ``w``: (B, I) item weights; ``num``/``den``: (P, I) per-item numerators and
    denominators (e.g. agree/valid flags of P pairs); ``extra_den``: (P,) fixed
    amounts added to each pair's denominator, not resampled.  Returns (B, P).
    """
    n = w @ num.T.astype(float)
    d = w @ den.T.astype(float)
    if extra_den is not None:
        d = d + extra_den[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, n / np.where(d > 0, d, 1), np.nan)


def consistency_ci(agree: np.ndarray, valid: np.ndarray, w: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """CI of the mean over pairs of pair agreement rates."""
    if agree.shape[0] == 0:
        return float("nan"), float("nan")
    return pairs_mean_ci(ratio_draws(w, agree, valid), alpha)


def pairs_mean_ci(per_pair: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """CI of the mean over pairs, from (B, P) per-pair draws (NaN: the pair is undefined in that draw)."""
    ok = np.isfinite(per_pair)
    cnt = ok.sum(axis=1)
    # Mean over the pairs defined in this draw (a pair can lose all its valid items).
    means = np.where(cnt > 0, np.where(ok, per_pair, 0).sum(axis=1) / np.maximum(cnt, 1), np.nan)
    return percentile_ci(means, alpha)


def pair_ci(agree: np.ndarray, valid: np.ndarray, w: np.ndarray, alpha: float = ALPHA) -> list[tuple[float, float]]:
    per_pair = ratio_draws(w, agree, valid)
    return [percentile_ci(per_pair[:, p], alpha) for p in range(per_pair.shape[1])]


def accuracy_ci(correct: np.ndarray, present: np.ndarray, w: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """CI of accuracy over the rows actually present (the real n)."""
    draws = ratio_draws(w, correct[None, :] & present[None, :], present[None, :])[:, 0]
    return percentile_ci(draws, alpha)
