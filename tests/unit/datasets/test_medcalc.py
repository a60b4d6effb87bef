"""MedCalc-Bench plug-in: loading, malformed rows, extraction and answer checking."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from pipeline.config import DatasetConfig

import pytest

from pipeline.datasets import get_dataset
from pipeline.datasets.medcalc import (
    MedCalc,
    MedCalcLoadError,
    check_answer,
    extract_answer,
    make_gold,
    normalize,
)

DATA = Path(__file__).resolve().parents[3] / "../shared/data"
CSV = DATA / "medcalc-bench" / "test_data.csv"

HEADER = [
    "Row Number",
    "Calculator ID",
    "Calculator Name",
    "Category",
    "Output Type",
    "Note ID",
    "Patient Note",
    "Question",
    "Ground Truth Answer",
    "Lower Limit",
    "Upper Limit",
    "Ground Truth Explanation",
]


def _write_csv(path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in header})
    return path


def _row(rn: str, **kw: str) -> dict[str, str]:
    base = {
        "Row Number": rn,
        "Calculator ID": "4",
        "Calculator Name": "CHA2DS2-VASc Score",
        "Category": "risk",
        "Output Type": "integer",
        "Note ID": "n1",
        "Patient Note": f"Patient {rn} note.",
        "Question": "What is the score?",
        "Ground Truth Answer": "3",
        "Lower Limit": "3",
        "Upper Limit": "3",
        "Ground Truth Explanation": "...",
    }
    base.update(kw)
    return base


def test_registered_and_named() -> None:
    ds = get_dataset("medcalc")
    assert isinstance(ds, MedCalc)
    assert ds.name == "medcalc"


@pytest.mark.shared_data(CSV)
def test_load_real_csv_first_rows() -> None:
    t = MedCalc().load(DatasetConfig(name="medcalc", path=str(CSV), limit=25, seed=0))
    assert t.num_rows == 25
    first = t.to_pylist()[0]
    assert first["dataset"] == "medcalc"
    assert first["problem_id"].isdigit()
    gold = json.loads(first["gold"])
    assert set(gold) >= {"answer", "lower", "upper", "calculator_id", "calculator_name"}
    assert "step_by_step_thinking" in first["prompt"] and '"answer"' in first["prompt"]
    full = MedCalc().load(DatasetConfig(name="medcalc", path=str(CSV), limit=None, seed=0))
    assert full.num_rows == 1047


def test_prompt_contains_note_and_question(tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "t.csv", [_row("1", **{"Patient Note": "A 70 year old man.", "Question": "What is X?"})])
    rec = MedCalc().load(DatasetConfig(name="medcalc", path=str(p))).to_pylist()[0]
    assert "A 70 year old man." in rec["prompt"] and "What is X?" in rec["prompt"]
    assert json.loads(rec["gold"])["output_type"] == "integer"


def test_malformed_rows_are_recorded_skips(tmp_path: Path) -> None:
    rows = [
        _row("1"),
        _row("x2"),  # bad row number
        _row("1"),  # duplicate
        _row("4", **{"Ground Truth Answer": ""}),
        _row("5", **{"Output Type": "decimal", "Ground Truth Answer": "2.5", "Lower Limit": "abc", "Upper Limit": "3"}),
        _row("6"),
    ]
    p = _write_csv(tmp_path / "t.csv", rows)
    ds = MedCalc()
    t = ds.load(DatasetConfig(name="medcalc", path=str(p), limit=None, seed=0))
    assert t.column("problem_id").to_pylist() == ["1", "6"]
    cols = [s["field"] for s in ds.skipped]
    assert cols == ["Row Number", "Row Number", "Ground Truth Answer", "Lower Limit"]
    assert all(s["file"] == str(p) and s["row"].isdigit() for s in ds.skipped)
    with pytest.raises(MedCalcLoadError, match=r"line 3, column 'Row Number'"):
        MedCalc().load(DatasetConfig(name="medcalc", path=str(p), options={"on_bad_row": "raise"}))


def test_missing_column_and_file_errors(tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "t.csv", [_row("1")], header=[h for h in HEADER if h != "Upper Limit"])
    with pytest.raises(MedCalcLoadError, match="Upper Limit"):
        MedCalc().load(DatasetConfig(name="medcalc", path=str(p), limit=None, seed=0))
    with pytest.raises(MedCalcLoadError, match="not found"):
        MedCalc().load(DatasetConfig(name="medcalc", path=str(tmp_path / "nope.csv"), limit=None, seed=0))


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"step_by_step_thinking": "a, b", "answer": "4"}', "4"),
        ('blah {"step_by_step_thinking": "x"} then {"step_by_step_thinking": "y", "answer": 12.5}', "12.5"),
        ('{"step_by_step_thinking": "unterminated "quote", "answer": "7 points"}', "7 points"),  # malformed JSON
        ("reasoning...\nAnswer: 38.2 mL/min", "38.2 mL/min"),
        ("so the result is \\boxed{17}", "17"),
        ("The score comes to 3 and then 5", "5"),
        ("(29, 3)", "(29, 3)"),
        ("The gestational age is 4 weeks and 2 days.", "(4, 2)"),
        ("name 'N' is not defined", None),
        ('{"answer": "str(short_and_direct_answer_of_the_question)"}', None),
        ("", None),
        (None, None),
    ],
)
def test_extract(text: str | None, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_check_integer_decimal_date_tuple() -> None:
    ig = make_gold("4", "4", "4", "4", "CHA2DS2-VASc", "integer")
    assert check_answer("4", ig) and check_answer("4.0 points", ig) and not check_answer("5", ig)
    dg = make_gold("25.238", "23.9761", "26.4999", "2", "Creatinine Clearance", "decimal")
    assert check_answer("24.0 mL/min", dg) and check_answer("26.4999", dg)
    assert not check_answer("26.5", dg) and not check_answer("abc", dg)
    date_g = make_gold("09/23/2014", "09/23/2014", "09/23/2014", "13", "Estimated Due Date", "date")
    assert check_answer("9/23/2014", date_g) and not check_answer("09/24/2014", date_g)
    wd = make_gold("('4 weeks', '2 days')", None, None, "69", "Estimated Gestational Age", "integer")
    assert wd["output_type"] == "weeks_days"
    assert check_answer("(4, 2)", wd) and check_answer("4 weeks, 2 days", wd) and not check_answer("(2, 4)", wd)
    # No limits known: the benchmark's ±5 % window is rebuilt.
    nolim = make_gold("100", None, None, "5", "MAP")
    assert nolim["output_type"] == "integer"
    dec_nolim = make_gold("100.5", None, None, "5", "MAP")
    assert check_answer("104", dec_nolim) and not check_answer("106", dec_nolim)
    assert not check_answer(None, ig) and not check_answer("name 'N' is not defined", ig)


def test_normalize_and_tolerance() -> None:
    assert normalize("9/3/2014", "date") == "09/03/2014"
    assert normalize("('4 weeks', '2 days')", "weeks_days") == "(4, 2)"
    assert normalize("3.6 points", "integer") == "4"
    dg = make_gold("20", "19", "21", "23", "MELD Na", "decimal")
    assert MedCalc().tolerance(dg) == pytest.approx(1.0)
    assert MedCalc().tolerance(make_gold("4", "4", "4", "4", "x", "integer")) == 0.0
