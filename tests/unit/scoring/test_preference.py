"""Human-preference analysis on synthetic ratings with a known answer."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.scoring.preference import (
    pairwise_tests,
    preference_consistency_correlation,
    source_means,
)


def _ratings(seed: int = 0, n_part: int = 40, n_items: int = 6) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    true = {"QwQ": 4.0, "DAPO": 3.0, "NRR": 2.0, "OSS": 3.0}
    rows = []
    for p in range(n_part):
        bias = rng.normal(0, 0.5)  # participant leniency, shared across sources
        for i in range(n_items):
            for s, mu in true.items():
                rows.append(
                    {
                        "participant": f"p{p}",
                        "item": f"i{i}",
                        "source": s,
                        "criterion": "clarity",
                        "score": mu + bias + rng.normal(0, 0.6),
                    }
                )
    return pl.DataFrame(rows)


def test_means_and_pairwise() -> None:
    r = _ratings()
    means = {row["source"]: row["mean"] for row in source_means(r).iter_rows(named=True)}
    assert means["QwQ"] == pytest.approx(4.0, abs=0.2) and means["NRR"] == pytest.approx(2.0, abs=0.2)
    t = pairwise_tests(r, test="t")
    assert t.height == 6 and set(t["n_comparisons"]) == {6}
    get = {(x["source_a"], x["source_b"]): x for x in t.iter_rows(named=True)}
    strong = get[("NRR", "QwQ")]
    assert strong["p_bonferroni"] < 1e-6 and strong["cohens_d"] < -2  # NRR - QwQ ≈ -2 points
    null = get[("DAPO", "OSS")]  # same true mean
    assert null["p_bonferroni"] > 0.05
    assert null["p_bonferroni"] == pytest.approx(min(1.0, null["p"] * 6))
    w = pairwise_tests(r, test="wilcoxon")
    assert set(w["test"]) == {"wilcoxon"}
    assert {(x["source_a"], x["source_b"]): x for x in w.iter_rows(named=True)}[("NRR", "QwQ")]["p"] < 1e-4


def test_rank_input_is_flipped() -> None:
    r = pl.DataFrame(
        {
            "participant": ["a", "a", "b", "b"],
            "item": ["1"] * 4,
            "source": ["X", "Y"] * 2,
            "criterion": ["c"] * 4,
            "rank": [1, 2, 1, 2],
        }
    )
    m = {row["source"]: row["mean"] for row in source_means(r).iter_rows(named=True)}
    assert m["X"] > m["Y"]


def test_correlation_known_monotone() -> None:
    r = _ratings()
    cons = {"QwQ": 0.9, "DAPO": 0.7, "NRR": 0.5, "OSS": 0.72}
    res = preference_consistency_correlation(r, cons, n_boot=500, seed=0)
    assert res["n_sources"] == 4 and res["n_participants"] == 40
    assert res["pearson"] > 0.9
    assert res["pearson_ci_low"] <= res["pearson"] <= res["pearson_ci_high"]
    assert res["spearman"] >= 0.8 and res["spearman_ci_high"] <= 1.0
    anti = preference_consistency_correlation(r, {k: -v for k, v in cons.items()}, n_boot=200)
    assert anti["pearson"] == pytest.approx(-res["pearson"])


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="score"):
        source_means(pl.DataFrame({"participant": ["a"], "item": ["1"], "source": ["X"], "criterion": ["c"]}))
    with pytest.raises(ValueError, match="at least 3"):
        preference_consistency_correlation(_ratings(n_part=5), {"QwQ": 1.0, "NRR": 0.5})
