"""The paper metric on live answers: extracted, normalized forms plus correctness, the study's drop rule."""

from __future__ import annotations

import json

import polars as pl

from pipeline.datasets.medcalc import make_gold
from pipeline.schema import ANSWERS, from_rows
from pipeline.scoring.consistency import consistency, paper_dropped
from pipeline.scoring.judge import score_answers

# Calculator 4 (integer, gold 4) and 13 (date, gold 09/23/2014).
G_INT = json.dumps(make_gold("4", "4", "4", "4", "CHA2DS2-VASc", "integer"))
G_DATE = json.dumps(make_gold("09/23/2014", "09/23/2014", "09/23/2014", "13", "Due date", "date"))


def _rows(texts: dict[str, list[str]]) -> list[dict]:
    rows = []
    for target, per_problem in texts.items():
        for pid, (gold, text) in enumerate(per_problem):
            rows.append(
                {
                    "dataset": "medcalc",
                    "problem_id": str(pid),
                    "method": "transfer",
                    "source": "S",
                    "variant": "full",
                    "sample": 0,
                    "target": target,
                    "answer_text": text,
                    "gold": gold,
                }
            )
    return rows


def _summary(rows: list[dict], checker: str) -> tuple[dict, pl.DataFrame]:
    scored = score_answers(from_rows(rows, ANSWERS), "ours", checker=checker)
    df = pl.from_arrow(scored)
    c = consistency(df, ("paper",)).row(0, named=True)
    return c, df


def test_live_paper_metric_compares_normalized_answers_and_drops_evaluator_errors() -> None:
    j = lambda a: json.dumps({"step_by_step_thinking": "...", "answer": a})  # noqa: E731
    rows = _rows(
        {
            # problem 0: "4 points" vs "4.0" vs "five" -> lenient forms "4"/"4"/None
            # problem 1: date written differently; problem 2: wrong in the same way ("3" and "3.0")
            "A": [(G_INT, j("4 points")), (G_DATE, j("9/23/2014")), (G_INT, j("3"))],
            "B": [(G_INT, j("4.0")), (G_DATE, j("The due date is 09/23/2014")), (G_INT, j("3.0"))],
        }
    )
    lenient, df = _summary(rows, "lenient")
    assert df.filter(pl.col("target") == "A")["answer"].to_list() == ["4", "09/23/2014", "3"]
    # Raw strings would agree on nothing; normalized forms agree on all three problems.
    assert lenient["mean"] == 1.0
    official, df = _summary(rows, "official")
    b = df.filter(pl.col("target") == "B")["answer"].to_list()
    assert b[1] == "time data 'N/A' does not match format '%m/%d/%Y'"  # the study's stored error text
    # official forms: "4 points"->"4" vs "4.0" (both correct: agree); the date row is dropped
    # (B's answer is an evaluator error); "3" vs "3.0": different strings, both wrong: disagree.
    assert official["mean"] == 0.5


def test_drop_rule_is_explicit() -> None:
    assert paper_dropped("name 'N' is not defined")
    assert paper_dropped("N/A")
    assert paper_dropped("leading zeros in decimal integer literals are not permitted; use an 0o prefix")
    assert not paper_dropped("4") and not paper_dropped(None)  # a failed generation is compared, not dropped
