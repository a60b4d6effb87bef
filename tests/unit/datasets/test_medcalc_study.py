"""The study's MedCalc protocol in the plug-in: its 100 problems (sample=genex) and its messages."""

from __future__ import annotations

import json
from pathlib import Path
from pipeline.config import DatasetConfig

import pytest

from pipeline.datasets.medcalc import MedCalc, MedCalcLoadError
from pipeline.datasets.medcalc_study import GENEX_ROW_NUMBERS, STUDY_SYSTEM, genex_sample, study_messages

REPO = Path(__file__).resolve().parents[3]
DATA = (REPO / ".." / "shared" / "data").resolve()
CSV = DATA / "medcalc-bench" / "test_data.csv"
RELEASED = DATA / "genex-medcalc-outputs"


def _cfg(**options) -> DatasetConfig:
    assert CSV.is_file(), f"shared data missing: {CSV}"
    return DatasetConfig(name="medcalc", path=str(CSV), options=options)


def test_genex_sample_is_the_released_set_in_order() -> None:
    t = MedCalc().load(_cfg(sample="genex"))
    ids = t.column("problem_id").to_pylist()
    assert len(ids) == 100
    # Computed (numpy's RandomState(42) permutation, as pandas' sample draws) == the list we keep ...
    assert [int(i) for i in ids] == list(GENEX_ROW_NUMBERS)
    # ... == the Row Numbers of every released file (each holds the same 100 problems).
    files = sorted(RELEASED.glob("*.jsonl"))
    assert len(files) >= 50
    for f in files:
        released = {str(json.loads(x)["Row Number"]) for x in f.read_text().splitlines()}
        assert released == set(ids), f.name
    order = [
        str(json.loads(x)["Row Number"])
        for x in (RELEASED / "openai_gpt-oss-20b_zero_shot_original_low.jsonl").read_text().splitlines()
    ]
    assert order == ids


def test_genex_sample_needs_the_full_file() -> None:
    with pytest.raises(ValueError, match="samples 100 rows but the file has only 50"):
        genex_sample(50)


def test_study_prompt_style_is_verbatim() -> None:
    t = MedCalc().load(_cfg(sample="genex", prompt="study"))
    row = t.slice(0, 1).to_pylist()[0]
    assert row["system"] == STUDY_SYSTEM
    assert STUDY_SYSTEM.startswith("You are a helpful assistant for calculating a score for a given patient note.")
    assert "str(your_step_by_step_thinking_procress_to_solve_the_question)" in STUDY_SYSTEM  # the benchmark's typo
    assert row["prompt"].startswith("Here is the patient note:\n")
    assert "\n\nHere is the task:\nWhat is the patient's HAS-BLED score?\n\n" in row["prompt"]
    assert row["prompt"].endswith('"answer": str(short_and_direct_answer_of_the_question)}:')
    msgs = study_messages("NOTE", "Q?")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[1]["content"] == (
        "Here is the patient note:\nNOTE\n\nHere is the task:\nQ?\n\nPlease directly output the JSON dict formatted "
        'as {"step_by_step_thinking": str(your_step_by_step_thinking_procress_to_solve_the_question), '
        '"answer": str(short_and_direct_answer_of_the_question)}:'
    )
    ours = MedCalc().load(_cfg()).slice(0, 1).to_pylist()[0]
    assert ours["system"] is None and ours["problem_id"] == "1"


def test_bad_options_are_named() -> None:
    for opt in ("sample", "prompt", "checker"):
        with pytest.raises(MedCalcLoadError, match=f"dataset.options.{opt}='nope' is unknown"):
            MedCalc().load(_cfg(**{opt: "nope"}))
