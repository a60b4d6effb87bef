"""The ``official`` MedCalc checker: MedCalc-Bench's extraction and evaluate.py rules.

Evidence, in order of strength: (1) on every answer stored in the reference
study's released files (~14k), our check of the stored answer gives the
stored judgment; (2) a corpus of tricky replies (tests/data/) with the answer
and judgment the study's rules give, judged through ``crosscot judge``;
(3) focused cases of the evaluator.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.datasets import medcalc_official as mo
from pipeline.datasets.medcalc_csv import make_gold, read_benchmark_csv

REPO = Path(__file__).resolve().parents[3]
DATA = (REPO / ".." / "shared" / "data").resolve()
CSV = DATA / "medcalc-bench" / "test_data.csv"
CORPUS = REPO / "tests" / "data" / "medcalc_tricky_replies.jsonl"


def _data() -> Path:
    assert CSV.is_file(), f"shared data missing: {CSV} (tests need ../shared/data)"
    return CSV


def _golds() -> dict[str, dict]:
    rows, _ = read_benchmark_csv(_data())
    return {
        r["Row Number"]: make_gold(
            r["Ground Truth Answer"],
            r["Lower Limit"],
            r["Upper Limit"],
            r["Calculator ID"],
            r["Calculator Name"],
            r["Output Type"],
        )
        for r in rows
    }


def test_check_reproduces_every_stored_judgment_of_the_study() -> None:
    golds = _golds()
    files = sorted((DATA / "genex-medcalc-outputs").glob("*.jsonl")) + sorted(
        (DATA / "genex-medcalc-rl").glob("*.jsonl")
    )
    assert len(files) > 50
    n, bad = 0, []
    for f in files:
        for line in f.read_text().splitlines():
            d = json.loads(line)
            for a, r in (("LLM Answer", "Result"), ("Target Answer", "Target Result")):
                if a not in d or r not in d:
                    continue
                try:
                    ok = mo.check(str(d[a]), golds[str(d["Row Number"])])
                except Exception:  # noqa: BLE001 - a raising answer is wrong, as in the study
                    ok = False
                n += 1
                if ok != (d[r] == "Correct"):
                    bad.append((f.name, d["Row Number"], d[a], d[r]))
    assert n > 14000
    assert bad == [], bad[:5]


def test_corpus_through_crosscot_judge(tmp_path: Path) -> None:
    out = tmp_path / "judged.jsonl"
    rows = [json.loads(x) for x in CORPUS.read_text().splitlines()]
    for checker, key in (("official", "official_correct"), ("lenient", "lenient_correct")):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                "judge",
                "--dataset",
                "medcalc",
                "--data",
                str(_data()),
                "--checker",
                checker,
                "--in",
                str(CORPUS),
                "--out",
                str(out),
                "--force",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        got = [json.loads(x) for x in out.read_text().splitlines()]
        assert [g["problem_id"] for g in got] == [x["problem_id"] for x in rows]  # input order kept
        for want, g in zip(rows, got):
            assert g["correct"] == want[key], (checker, want["why"], g["answer"])
            if checker == "official":
                assert g["answer"] == want["official_answer"], (want["why"], g["answer"])
    # The two checkers really disagree on this corpus (the point of having both).
    assert sum(x["official_correct"] != x["lenient_correct"] for x in rows) >= 8


def test_judge_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem_id": "99999", "text": "{}"}\n')
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "judge",
            "--dataset",
            "medcalc",
            "--data",
            str(_data()),
            "--in",
            str(bad),
            "--out",
            str(tmp_path / "o.jsonl"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.startswith("crosscot: error: row 1: problem_id '99999'")
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(
    ("text", "cid", "want"),
    [
        ('{"answer": "3 + 2 = 5"}', 4, "5"),
        ('{"answer": "40 / 1.66^2 = 14.5"}', 6, "14.5"),
        ('{"answer": "str(40 / 1.66^2)"}', 6, str(40 / 1.66**2)),
        ('{"answer": "str(sqrt(16) + 1)"}', 6, "5.0"),
        ('{"answer": "12/5/2020 (week 3)"}', 13, "12/05/2020"),
        ('{"answer": "(4 weeks, 2 days)"}', 69, "(4, 2)"),
        ('{"answer": "2"} {"answer": "3"}', 4, "3"),
        ('{"step_by_step_thinking": "x", "answer": str(short_and_direct_answer_of_the_question)}', 13, "N/A"),
    ],
)
def test_extract_rules(text: str, cid: int, want: str) -> None:
    assert mo.extract(text, cid) == want


def test_safe_eval_matches_python_messages() -> None:
    # evaluate.py calls plain eval(answer): its messages are the ones the study stored.
    for expr in ("N/A", "08", "(1, 2) + 1", "1 / 0", "5 out"):
        try:
            eval(expr)  # noqa: S307 - the reference behaviour, on constant strings only
            want = None
        except Exception as e:  # noqa: BLE001
            want = (type(e), str(e))
        try:
            mo.safe_eval(expr)
            got = None
        except Exception as e:  # noqa: BLE001
            got = (type(e), str(e))
        assert got == want, expr
    for expr in ("max(1, 2)", "__import__('os')"):  # outside the study's namespace: never evaluated
        with pytest.raises(NameError):
            mo.safe_eval(expr)
    assert mo.safe_eval("round(2.5) + abs(-1) + pow(2, 3) + math.floor(1.7)") == 2 + 1 + 8 + 1


def test_unknown_calculator_raises_like_evaluate_py() -> None:
    v = mo.judge_reply('{"answer": "3"}', {"calculator_id": "999", "answer": "3"})
    assert not v.correct and v.answer == "Unknown calculator ID: 999"
