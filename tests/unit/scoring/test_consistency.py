"""Consistency metrics on hand-built answer matrices whose agreement is known."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from pipeline.datasets.medcalc import make_gold
from pipeline.schema import SCORED, from_rows
from pipeline.scoring.consistency import (
    METRICS,
    consistency,
    group_matrices,
    pair_matrix,
    rl_agreement,
    setting_consistency,
)

INT_GOLD = json.dumps(make_gold("4", "4", "4", "4", "score", "integer"))
DEC_GOLD = json.dumps(make_gold("20", "19", "21", "23", "MELD", "decimal"))


def _rows(
    method: str,
    source: str,
    answers: dict[str, list],
    correct: dict[str, list] | None = None,
    gold: str = INT_GOLD,
    extracted: dict[str, list] | None = None,
) -> list[dict]:
    out = []
    for t, col in answers.items():
        for i, a in enumerate(col):
            out.append(
                {
                    "dataset": "medcalc",
                    "problem_id": str(i + 1),
                    "method": method,
                    "source": source,
                    "variant": "full",
                    "sample": 0,
                    "target": t,
                    "gold": gold,
                    "answer": a,
                    "extracted": (extracted or answers)[t][i],
                    "correct": bool(correct[t][i]) if correct else False,
                    "judge": "stored",
                }
            )
    return out


def _df(rows: list[dict]) -> pl.DataFrame:
    return pl.from_arrow(from_rows(rows, SCORED))


def test_registry_names() -> None:
    assert {"paper", "strict"} <= set(METRICS.names())


def test_paper_rule_identity_both_correct_and_drops() -> None:
    answers = {
        "A": ["4", "5", "N/A", "7", None, "4.0"],
        "B": ["4", "6", "4", "8", None, "4"],
        "C": ["3", "6", "4", "name 'N' is not defined", "4", "4"],
    }
    correct = {"A": [1, 0, 0, 1, 0, 1], "B": [1, 0, 1, 1, 0, 1], "C": [0, 0, 1, 0, 1, 1]}
    m = group_matrices(_df(_rows("transfer", "QwQ", answers, correct)))[0]
    res = {(a, b): (v, n) for a, b, v, n in setting_consistency(m, "paper")["pairs"]}
    # A-B: item1 same, 2 differ, 3 dropped (N/A), 4 both correct, 5 None==None, 6 both correct -> 4/5
    assert res[("A", "B")] == (pytest.approx(4 / 5), 5)
    # A-C: 1 differ, 2 differ, 3 dropped, 4 dropped (not defined), 5 None vs "4" differ, 6 both correct -> 1/4
    assert res[("A", "C")] == (pytest.approx(1 / 4), 4)
    # B-C: 1 differ, 2 same, 3 same, 4 dropped, 5 differ, 6 same -> 3/5
    assert res[("B", "C")] == (pytest.approx(3 / 5), 5)
    s = setting_consistency(m, "paper")
    vals = np.array([4 / 5, 1 / 4, 3 / 5])
    assert s["mean"] == pytest.approx(vals.mean()) and s["std"] == pytest.approx(vals.std(ddof=0))
    targets, mat = pair_matrix(m, "paper")
    assert targets == ["A", "B", "C"] and mat[0, 1] == mat[1, 0] == pytest.approx(0.8) and mat[2, 2] == 1


def test_strict_normalizes_and_uses_tolerance() -> None:
    answers = {"A": ["20.0", "20", "abc", "19.5"], "B": ["20 mL", "20.9", "abc", "21.6"]}
    correct = {"A": [1, 1, 0, 1], "B": [1, 1, 0, 0]}
    m = group_matrices(_df(_rows("transfer", "X", answers, correct, gold=DEC_GOLD)))[0]
    ((_, _, v, n),) = setting_consistency(m, "strict")["pairs"]
    # 20.0~20 (same), 20 vs 20.9 within ±1, unparseable never agrees, 19.5 vs 21.6 > 1 apart.
    assert (v, n) == (pytest.approx(2 / 4), 4)
    ((_, _, vp, _),) = setting_consistency(m, "paper")["pairs"]
    # paper: item 1 and 2 both correct, item 3 identical strings -> 3/4
    assert vp == pytest.approx(3 / 4)


def test_consistency_groups_by_setting() -> None:
    rows = _rows("default", "A", {"A": ["1", "2"]}) + _rows("default", "B", {"B": ["1", "3"]})
    rows += _rows("transfer", "A", {"A": ["1", "2"], "B": ["1", "2"]})
    df = consistency(_df(rows), metrics=("paper",))
    got = {r["setting"]: r["mean"] for r in df.iter_rows(named=True)}
    assert got == {"Default": pytest.approx(0.5), "Transfer A": pytest.approx(1.0)}


def test_duplicate_cells_rejected() -> None:
    rows = _rows("default", "A", {"A": ["1"]}) * 2
    with pytest.raises(ValueError, match="two rows"):
        group_matrices(_df(rows))


def test_rl_agreement_against_source_default() -> None:
    rows = _rows("default", "S", {"S": ["1", "2", "3", "4"]})
    rows += _rows("transfer", "S", {"S": ["1", "2", "3", "9"], "T": ["1", "0", "0", "0"]})
    df = rl_agreement(_df(rows), metrics=("paper",))
    got = {r["target"]: r["value"] for r in df.iter_rows(named=True)}
    assert got["S"] == pytest.approx(0.75) and got["T"] == pytest.approx(0.25)
    assert got["mean"] == pytest.approx(0.5)
