"""Human-ratings statistics: the study's unpaired t-tests reproduced, the matched tests, means vs consistency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.cli import main
from pipeline.importers.genex_ratings import SCHEMA, read_ratings
from pipeline.scoring.ratings import (
    consistency_for_sources,
    correlation,
    paired_tests,
    paper_tests,
    ratings_tests,
    source_summary,
)

# The study's Clarity of Steps tests: (model1, model2) -> (t, d).
CLARITY = {
    ("OSS", "DAPO"): (-6.188, -1.011),
    ("OSS", "QwQ+DAPO/OSS"): (-8.841, -1.449),
    ("OSS", "QwQ+OSS/DAPO"): (-1.398, -0.228),
    ("DAPO", "QwQ+DAPO/OSS"): (-2.973, -0.487),
    ("DAPO", "QwQ+OSS/DAPO"): (4.481, 0.732),
    ("QwQ+DAPO/OSS", "QwQ+OSS/DAPO"): (7.001, 1.147),
}
CONS = {"OSS": 0.733, "DAPO": 0.820, "QwQ+DAPO/OSS": 0.883, "QwQ+OSS/DAPO": 0.797}


@pytest.fixture(scope="module")
def long() -> pl.DataFrame:
    from tests.conftest import SHARED_DATA

    p = SHARED_DATA / "genex-user-study" / "clean_data_all_rows.csv"
    if not p.is_file():
        pytest.fail(f"{p} is absent; the ratings tests reproduce the study's numbers from it")
    return read_ratings(p)


def test_paper_reproduces_study(long: pl.DataFrame) -> None:
    t = paper_tests(long)
    assert t.height == 24 and set(t["method"]) == {"paper"}
    got = {
        (r["model1"], r["model2"]): r for r in t.filter(pl.col("criterion") == "Clarity of Steps").iter_rows(named=True)
    }
    assert list(got) == list(CLARITY)
    for pair, (tv, d) in CLARITY.items():
        assert round(got[pair]["t"], 3) == tv, pair
        assert round(got[pair]["d"], 3) == d, pair
        assert got[pair]["p_bonferroni"] == pytest.approx(min(1.0, 24 * got[pair]["p"]))
    assert set(t["criterion"]) == {"Clarity of Steps", "Ease of Following", "Confidence", "Best Overall"}


def _synthetic() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for p in range(8):
        for item in range(4):
            base = rng.integers(1, 4)
            for src, shift in (("OSS", 0), ("DAPO", 1), ("QwQ+DAPO/OSS", 2)):
                if p == 0 and item == 0 and src == "DAPO":
                    continue  # an unmatched rating: paired tests must leave it out
                rows.append(
                    {
                        "participant": f"P{p}",
                        "item": str(item),
                        "source": src,
                        "colour": "",
                        "criterion": "Confidence",
                        "value": float(base + shift - (rng.random() < 0.2)),
                    }
                )
            for src, r in zip(("OSS", "DAPO", "QwQ+DAPO/OSS"), rng.permutation([1, 2, 3]) if p % 3 == 0 else [3, 2, 1]):
                if p == 1 and item == 0 and src == "OSS":
                    continue  # an incomplete ranking: Friedman leaves the block out
                rows.append(
                    {
                        "participant": f"P{p}",
                        "item": str(item),
                        "source": src,
                        "colour": "",
                        "criterion": "Best Overall",
                        "value": float(r),
                    }
                )
    return pl.DataFrame(rows, schema=SCHEMA)


def test_paired_is_item_and_participant_matched() -> None:
    from scipy import stats

    df = _synthetic()
    t = paired_tests(df)
    conf = {(r["model1"], r["model2"]): r for r in t.filter(pl.col("criterion") == "Confidence").iter_rows(named=True)}
    r = conf[("OSS", "DAPO")]
    assert r["n1"] == r["n2"] == 31  # 32 (participant, item) blocks minus the unmatched one
    c = df.filter(pl.col("criterion") == "Confidence").pivot(on="source", index=["participant", "item"], values="value")
    c = c.drop_nulls(["OSS", "DAPO"]).sort("participant", "item")
    w = stats.wilcoxon(c["OSS"].to_numpy(), c["DAPO"].to_numpy())
    assert r["t"] == pytest.approx(w.statistic) and r["p"] == pytest.approx(w.pvalue)
    diff = (c["OSS"] - c["DAPO"]).to_numpy()
    assert r["d"] == pytest.approx(diff.mean() / diff.std(ddof=1))
    best = t.filter(pl.col("criterion") == "Best Overall")
    fr = best.filter(pl.col("model1") == "all").row(0, named=True)
    b = df.filter(pl.col("criterion") == "Best Overall").pivot(
        on="source", index=["participant", "item"], values="value"
    )
    b = b.drop_nulls()
    ref = stats.friedmanchisquare(b["OSS"], b["DAPO"], b["QwQ+DAPO/OSS"])
    assert fr["t"] == pytest.approx(ref.statistic) and fr["p"] == pytest.approx(ref.pvalue) and fr["n1"] == 31
    assert best.height == 1 + 3
    assert (t["p_bonferroni"].drop_nans() >= t["p"].drop_nans()).all()


def test_paired_on_study_data_and_source_means(long: pl.DataFrame) -> None:
    t = ratings_tests(long)
    assert t.filter(pl.col("method") == "paired").height == 25
    s = source_summary(long, CONS, n_boot=300, seed=0)
    for r in s.iter_rows(named=True):
        assert r["ci_low"] <= r["mean"] <= r["ci_high"]
        assert r["n_participants"] == 15 and r["consistency"] == CONS[r["source"]]
    clar = {r["source"]: r["mean"] for r in s.filter(pl.col("criterion") == "Clarity of Steps").iter_rows(named=True)}
    oss = long.filter((pl.col("criterion") == "Clarity of Steps") & (pl.col("source") == "OSS"))["value"].mean()
    assert clar["OSS"] == pytest.approx(oss)
    c = correlation(long, CONS, n_boot=300, seed=0)
    assert c.height == 4 and all("4 sources" in w for w in c["warning"])
    assert all(lo <= v <= hi for v, lo, hi in c.select("pearson", "pearson_ci_low", "pearson_ci_high").iter_rows())


def test_consistency_from_summary_csv(tmp_path: Path) -> None:
    p = tmp_path / "consistency_summary.csv"
    pl.DataFrame(
        {
            "setting": ["Transfer OSS", "Ensemble QwQ+DAPO/OSS", "Transfer OSS"],
            "variant": ["full"] * 3,
            "metric": ["paper", "paper", "strict"],
            "mean": [0.7, 0.9, 0.1],
        }
    ).write_csv(p)
    assert consistency_for_sources(p) == {"OSS": 0.7, "QwQ+DAPO/OSS": 0.9}
    assert consistency_for_sources("OSS=0.5,QwQ+OSS/DAPO=0.25") == {"OSS": 0.5, "QwQ+OSS/DAPO": 0.25}
    with pytest.raises(ValueError, match="SOURCE=VALUE"):
        consistency_for_sources("OSS:0.5")


def test_ratings_cli_writes_tables_and_report(study_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ratings"
    csv_path = study_data / "genex-user-study" / "clean_data_all_rows.csv"
    cons = ",".join(f"{k}={v}" for k, v in CONS.items())
    assert main(["ratings", str(csv_path), "--out", str(out), "--consistency", cons, "--n-boot", "200"]) == 0
    t = pl.read_csv(out / "tables" / "ratings_tests.csv")
    assert t.columns == ["criterion", "model1", "model2", "n1", "n2", "t", "p", "d", "p_bonferroni", "method"]
    assert set(t["method"]) == {"paper", "paired"}
    md = (out / "report.md").read_text()
    assert "## Human ratings" in md and "-6.188" in md and "rests on 4 sources" in md
    assert (out / "plots" / "ratings_means.png").is_file() and (out / "plots" / "ratings_vs_consistency.png").is_file()
    assert main(["ratings", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("crosscot: error: ratings CSV not found")
