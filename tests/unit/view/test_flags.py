"""The viewer's vectorized agreement flags equal the tables' own matrix code, and its counts equal the tables."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.scoring.consistency import build_matrix, pair_flags, rl_matrices, with_setting
from pipeline.scoring.tables import compute_tables
from pipeline.store.artifacts import read_table, write_table
from pipeline.view.data import Filters, RunData
from pipeline.view.flags import fast_flags
from pipeline.view.synthetic import synthetic_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = synthetic_run(tmp_path_factory.mktemp("syn") / "run", rows=2990, tables=False)
    t = pl.from_arrow(read_table(d / "scored.arrow"))
    rng = np.random.default_rng(1)
    n = t.height
    # The edge cases the metrics treat specially: missing answers, the study's evaluator errors,
    # unknown correctness, and answers written differently ("12.0" vs "12").
    answer = t["answer"].to_list()
    for i in rng.choice(n, 200, replace=False):
        answer[i] = None
    for i in rng.choice(n, 100, replace=False):
        answer[i] = "N/A"
    for i in rng.choice(n, 100, replace=False):
        answer[i] = (answer[i] or "0") + ".0"
    correct = t["correct"].to_list()
    for i in rng.choice(n, 100, replace=False):
        correct[i] = None
    t = t.with_columns(pl.Series("answer", answer), pl.Series("extracted", answer), pl.Series("correct", correct))
    t = t.filter(pl.int_range(pl.len()) % 37 != 5)  # some items lose a target
    write_table(d / "scored.arrow", t.to_arrow())
    from pipeline.scoring.tables import write_frames

    write_frames(compute_tables(t, n_boot=0), d / "tables")
    return d


def _ref(scored: pl.DataFrame, metric: str) -> dict:
    out = {}
    df = with_setting(scored)
    for (s, v), rows in df.group_by(["setting", "variant"]):
        m = build_matrix(rows, s, v)
        names, agree, valid = pair_flags(m, metric)
        for p, (a, b) in enumerate(names):
            for i, it in enumerate(m.items):
                if m.present[i, m.targets.index(a)] and m.present[i, m.targets.index(b)]:
                    out[(s, v, *it, a, b)] = (bool(agree[p, i]), bool(valid[p, i]))
    for src, v, m in rl_matrices(df):
        own = m.targets.index(f"{src} (own)")
        names, agree, valid = pair_flags(m, metric)
        for p, (a, b) in enumerate(names):
            if f"{src} (own)" not in (a, b):
                continue
            t = b if a.endswith("(own)") else a
            for i, it in enumerate(m.items):
                if m.present[i, own] and m.present[i, m.targets.index(t)]:
                    out[(f"Transfer {src}", v, *it, t, "source")] = (bool(agree[p, i]), bool(valid[p, i]))
    return out


@pytest.mark.parametrize("metric", ["paper", "strict"])
def test_fast_flags_equal_the_tables_code(run, metric):
    scored = pl.from_arrow(read_table(run / "scored.arrow"))
    rd = RunData(run)
    fl = fast_flags(rd.scored, metric).join(rd.index, on="iid")
    got = {
        (r["setting"], r["variant"], r["dataset"], r["problem_id"], r["sample"], r["a"], r["b"]): (
            r["agree"],
            r["valid"],
        )
        for r in fl.iter_rows(named=True)
    }
    assert len(got) == fl.height
    ref = _ref(scored, metric)
    assert got.keys() == ref.keys()
    diff = [k for k in ref if got[k] != ref[k]]
    assert not diff, diff[:5]
    # The cases are exercised: agreements and disagreements, and (paper) dropped pairs.
    assert any(a for a, _ in ref.values()) and any(v and not a for a, v in ref.values())
    assert metric != "paper" or any(not v for _, v in ref.values())


def test_disagreement_counts_equal_the_tables(run):
    rd = RunData(run)
    pairs = pl.read_csv(run / "tables" / "consistency_pairs.csv")
    for r in pairs.iter_rows(named=True):
        f = Filters(
            setting=r["setting"], variant=r["variant"], metric=r["metric"], pair=f"{r['model_a']}|{r['model_b']}"
        )
        dis = rd.items(Filters(**{**f.__dict__, "agree": "disagree"}))["total"]
        agr = rd.items(Filters(**{**f.__dict__, "agree": "agree"}))["total"]
        assert agr + dis == r["n_items"]
        assert agr == round(r["value"] * r["n_items"])
    rl = pl.read_csv(run / "tables" / "rl_agreement.csv").filter(pl.col("target") != "mean")
    for r in rl.iter_rows(named=True):
        agr = rd.items(
            Filters(
                setting=r["setting"],
                variant=r["variant"],
                metric=r["metric"],
                pair=f"{r['target']}|source",
                agree="agree",
            )
        )["total"]
        assert agr == round(r["value"] * r["n_items"]), r
    acc = pl.read_csv(run / "tables" / "accuracy.csv")
    for r in acc.iter_rows(named=True):
        ok = rd.items(Filters(setting=r["setting"], variant=r["variant"], target=r["target"], correct="correct"))[
            "total"
        ]
        assert ok == round(r["accuracy"] * r["n"])
