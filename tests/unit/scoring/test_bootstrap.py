"""Bootstrap intervals: seeded, correct width for the real n, fast."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline.scoring import bootstrap as bs


def test_weights_are_counts_and_seeded() -> None:
    w1 = bs.problem_weights(50, 300, bs.rng_for(0, "x"))
    w2 = bs.problem_weights(50, 300, bs.rng_for(0, "x"))
    w3 = bs.problem_weights(50, 300, bs.rng_for(1, "x"))
    assert w1.shape == (300, 50) and np.all(w1.sum(axis=1) == 50)
    assert np.array_equal(w1, w2) and not np.array_equal(w1, w3)


@pytest.mark.parametrize("n", [100, 1047])
def test_accuracy_ci_width_follows_real_n(n: int) -> None:
    rng = np.random.default_rng(3)
    correct = rng.random(n) < 0.4
    present = np.ones(n, bool)
    w = bs.problem_weights(n, 2000, bs.rng_for(0, "acc"))
    lo, hi = bs.accuracy_ci(correct, present, w)
    p = correct.mean()
    assert lo < p < hi
    # Normal-approximation width 2·1.96·sqrt(p(1-p)/n): ~0.19 at n=100, ~0.06 at n=1047.
    expected = 2 * 1.96 * np.sqrt(p * (1 - p) / n)
    assert hi - lo == pytest.approx(expected, rel=0.2)


def test_absent_rows_do_not_count() -> None:
    correct = np.array([1, 1, 0, 0, 1, 0], bool)
    present = np.array([1, 1, 1, 1, 0, 0], bool)
    w = np.ones((1, 6))
    assert bs.ratio_draws(w, (correct & present)[None], present[None])[0, 0] == pytest.approx(0.5)


def test_consistency_ci_is_fast_and_brackets() -> None:
    rng = np.random.default_rng(0)
    agree = rng.random((10, 100)) < 0.8
    valid = rng.random((10, 100)) < 0.95
    agree &= valid
    t0 = time.perf_counter()
    w = bs.problem_weights(100, 1000, bs.rng_for(0, "c"))
    lo, hi = bs.consistency_ci(agree, valid, w)
    assert time.perf_counter() - t0 < 1.0
    point = np.mean(agree.sum(1) / valid.sum(1))
    assert lo < point < hi and hi - lo < 0.2
