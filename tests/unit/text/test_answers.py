"""Rule-based answer filter: answer statements in real-style CoT sentences, leakage audit, kept ratio.

The snippets mimic sentences of the reference study's MedCalc CoTs; the
last test runs the filter over the released Default CoTs themselves (read in
place from the shared data folder; skipped when it is absent).
"""

from __future__ import annotations

import json

import pytest

from pipeline.text.answers import (
    answer_forms,
    is_distinctive,
    leaks,
    remove_answer_statements,
    states_answer,
)
from pipeline.text.sentences import split_sentences


@pytest.mark.parametrize(
    "answer,forms",
    [
        ("4", ["4"]),
        ("5.0", ["5.0", "5"]),
        ("0.36700000000000005", ["0.36700000000000005", "0.367"]),
        ("7.50", ["7.50", "7.5"]),
        ("12/31/2017", ["12/31/2017"]),
        ("", []),
        (None, []),
    ],
)
def test_answer_forms(answer, forms):
    assert answer_forms(answer) == forms


def test_distinctive_answers():
    assert not is_distinctive("4") and not is_distinctive("-2") and not is_distinctive("10.0")
    assert is_distinctive("11") and is_distinctive("7.84") and is_distinctive("02/19/2024")
    assert is_distinctive("(4 weeks, 2 days)")
    assert not is_distinctive(None)


@pytest.mark.parametrize(
    "sentence,answer",
    [
        ("Total score = 1 + 1 + 0 + 0 + 0 + 1 + 1 = 4. ", "4"),
        ("So the HAS-BLED score is 4.", "4"),
        ("Yes, that's 4. ", "4"),
        ("Given the symptoms, perhaps it's classified as a 4.", "4"),
        ("Adding that to 7.2 gives 7.84 mg/dL. ", "7.84"),
        ("Probably 507 msec.", "507"),
        ("But according to my calculation, it's 39.2.", "39.2"),
        ("Rounded, the QTc is 449.3 ms.", "449.3"),
        ("The estimated due date is 02/19/2024.", "02/19/2024"),
        ("So the result is 5 points.", "5.0"),  # "5.0" written as "5"
        ("The BSA comes to 0.367 m2.", "0.36700000000000005"),
        ("**Final Answer** \\boxed{12}", "12"),
        ('{"answer": "12"}', "12"),
    ],
)
def test_states_answer(sentence, answer):
    assert states_answer(sentence, answer)


@pytest.mark.parametrize(
    "sentence,answer",
    [
        ("1. **H (Hypertension):** The patient has uncontrolled hypertension. ", "4"),
        ("Heart rate > 100 bpm: +1 point. ", "4"),
        ("According to the scale: 6 obeys commands, 5 localizes pain, 4 withdraws. ", "4"),
        ("The patient is 72 years old, which is > 65 years. ", "3"),
        ("We need the sodium and the glucose. ", "7.84"),
        ("Score 0-2: low risk. ", "2"),
    ],
)
def test_hint_sentences_are_kept(sentence, answer):
    assert not states_answer(sentence, answer)


def test_remove_keeps_hints_verbatim_and_in_order():
    cot = (
        "Let's calculate the HAS-BLED score step-by-step. 1. **H (Hypertension):** The patient has "
        "uncontrolled hypertension. This gives 1 point. 2. **S (Stroke):** No prior stroke. This gives 0 points. "
        "Total score = 1 + 1 + 0 + 0 + 0 + 1 + 1 = 4. So the HAS-BLED score is 4."
    )
    out = remove_answer_statements(cot, "4")
    parts, kept = split_sentences(cot), split_sentences(out)
    assert kept == [p for p in parts if p in kept]  # subsequence, verbatim
    assert "This gives 1 point." in out and "No prior stroke." in out
    assert not leaks(out, "4") and leaks(cot, "4")
    assert len(out) / len(cot) > 0.6


def test_leaks_is_whole_token_and_form_aware():
    assert leaks("the value is 7.84 here", "7.84")
    assert not leaks("the value is 17.845 here", "7.84")
    assert not leaks("version 7.841", "7.84")
    assert leaks("it is 5 points", "5.0")
    assert not leaks("anything", None) and not leaks("anything", "")


def _genex_default_cots(shared_data):
    from pipeline.datasets.medcalc import is_error_text

    folder = shared_data / "genex-medcalc-outputs"
    files = sorted(folder.glob("*_zero_shot_original*.jsonl"))
    if not files:
        pytest.fail(f"no *_zero_shot_original*.jsonl in {folder}")
    rows = []
    for f in files:
        for line in f.open():
            r = json.loads(line)
            cot, ans = (r["LLM Thinking"] or "").strip(), str(r["LLM Answer"] or "").strip()
            if cot and ans and not is_error_text(ans):
                rows.append((f.name, cot, ans))
    return rows


def test_rule_filter_on_released_medcalc_cots(shared_data):
    """Over the 5 models' released Default CoTs: distinctive answers never leak, most text is kept."""
    rows = _genex_default_cots(shared_data)
    assert len(rows) > 400
    outs = [remove_answer_statements(c, a) for _, c, a in rows]
    dist = [(o, a) for (_, _, a), o in zip(rows, outs) if is_distinctive(a)]
    assert dist and sum(leaks(o, a) for o, a in dist) == 0
    leak_all = sum(leaks(o, a) for (_, _, a), o in zip(rows, outs)) / len(rows)
    assert leak_all < 0.25  # the rest are small integers in list numbers / criterion points
    kept = sum(len(o) / len(c) for (_, c, _), o in zip(rows, outs)) / len(rows)
    assert 0.75 < kept < 0.95
    for (_, c, _), o in zip(rows[:50], outs[:50]):
        parts, kept_parts = split_sentences(c), split_sentences(o)
        it = iter(parts)
        assert all(any(k == p for p in it) for k in kept_parts)  # verbatim, in order
