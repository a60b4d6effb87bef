"""The study's Instruction Induction protocol checked against its released comparisons.

Data tests: they fail (not skip) when ../shared/data is missing.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from pipeline.config import DatasetConfig

import pytest

from pipeline.datasets.protocol import DatasetError
from pipeline.datasets.ii_study import (
    FORCED_PREFIX,
    STUDY_TASKS,
    normalize_answer,
    study_keys,
    too_short,
)
from pipeline.datasets.instruction_induction import InstructionInduction

REPO = Path(__file__).resolve().parents[3]
DATA = (REPO / ".." / "shared" / "data").resolve()
II = DATA / "instruction-induction"
RELEASED = DATA / "genex-ii-comparisons"


@lru_cache(maxsize=1)
def released() -> tuple[tuple[str, str, str, dict], ...]:
    """(setting, task, item key, item) of every released comparison item."""
    assert RELEASED.is_dir() and II.is_dir(), f"shared data missing: {RELEASED} / {II}"
    out = []
    for f in sorted(RELEASED.glob("*/*.json")):
        if f.name.startswith("summary_"):
            continue
        d = json.loads(f.read_text())
        out += [(f.parent.name, d["task_name"], k, v) for k, v in d.items() if k.isdigit()]
    assert len(out) == 11000
    return tuple(out)


def _cfg(**options) -> DatasetConfig:
    return DatasetConfig(name="instruction_induction", path=str(II), limit=None, seed=0, options=options)


def test_tasks_and_prompt_keys_are_the_released_ones() -> None:
    keys = defaultdict(set)
    for setting, task, k, _ in released():
        if setting == "default":
            keys[task].add(k)
    assert sorted(keys) == sorted(STUDY_TASKS) and len(STUDY_TASKS) == 20
    for task in STUDY_TASKS:
        ex = json.loads((II / "induction_input" / f"{task}.json").read_text())["examples"]
        assert set(study_keys(sorted(ex, key=int))) == keys[task], task


def test_study_rows_prompt_and_forced_prefix() -> None:
    t = InstructionInduction().load(_cfg(protocol="study")).to_pylist()
    assert len(t) == 100
    assert {r["answer_prefix"] for r in t} == {FORCED_PREFIX}
    for r in t:
        g = json.loads(r["gold"])
        task, k = json.loads(r["meta"])["task"], json.loads(r["meta"])["example"]
        src = json.loads((II / "induction_input" / f"{task}.json").read_text())["examples"][k]["input"]
        assert r["prompt"] == src and r["prompt"].endswith("The instruction was")  # verbatim, typos kept
        assert g["protocol"] == "study" and g["answer_prefix"] == FORCED_PREFIX
    # The released "sampling" outputs of QwQ echo the conversation it was sent: the same user turn.
    prompts = {(json.loads(r["meta"])["task"], json.loads(r["meta"])["example"]): r["prompt"] for r in t}
    echoed = 0
    for setting, task, k, v in released():
        for name, out in ((v["model1_name"], v["model1_output"]), (v["model2_name"], v["model2_output"])):
            m = re.match(
                r"<\|im_start\|>user\n(.*?)<\|im_end\|>\n<\|im_start\|>assistant\n<think>\n The instruction is:",
                out,
                re.S,
            )
            if name == "Qwen_QwQ-32B" and m:
                assert m.group(1) == prompts[(task, k)]
                echoed += 1
    assert echoed >= 100
    sub = InstructionInduction().load(_cfg(protocol="study", tasks=["rhymes", "synonyms"])).to_pylist()
    assert [r["problem_id"] for r in sub] == [
        f"ii-{t}-{k:03d}" for t in ("rhymes", "synonyms") for k in (4, 15, 36, 82, 95)
    ]
    with pytest.raises(DatasetError, match="protocol"):
        InstructionInduction().load(_cfg(protocol="paper"))
    with pytest.raises(DatasetError, match="unknown"):
        InstructionInduction().load(_cfg(protocol="study", tasks=["antonyms"]))  # not one of the study's


def test_normalization_cases_from_the_released_data() -> None:
    # (raw answer as released, normalized) — each raw string occurs in genex-ii-comparisons.
    cases = [
        (
            'The instruction is: "Rewrite the sentence by changing its meaning to the opposite using antonyms and '
            'contrasting words."<|endoftext|>',
            "rewrite the sentence by changing its meaning to the opposite using antonyms and contrasting words.",
        ),
        ('<|begin_of_solution|> The instruction is:  \n**"For each input, extract', '**"for each input, extract'),
        ("The instruction is: Extract all words.\n\nThe instruction is:", ""),  # the last marker wins
        ('The instruction is: "', ""),
        (
            "The instruction is: Translate the given word into French.\n\nAssistant\nThe instruction is to translate "
            "the given word into French.<|endoftext|>",
            "translate the given word into french. assistant the "
            "instruction is to translate the given word into french.",
        ),  # case-sensitive marker; whitespace collapsed
        # The script does not cut at </think> (its answers were extracted after the thinking before).
        (
            'The instruction is: "Move the first letter."\n</think>\n\nOkay, let me try',
            'move the first letter." </think> okay, let me try',
        ),
        ("The instruction is: **Reverse** the *word*, 'then' stop", "reverse the word, 'then' stop"),
        ("The instruction is: 'Sort them.'", "sort them."),
        ("<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n The instruction is: Swap words.", "swap words."),
        ("", ""),
        (None, ""),
    ]
    for raw, want in cases:
        assert normalize_answer(raw) == want, raw
    assert normalize_answer("The instruction is: **Count** the `words`", strip_markdown=True) == "count the words"
    assert too_short("ab", "a longer answer") and too_short(None, "abc") and not too_short("abc", "xyz")


def test_normalized_strings_are_the_stored_scores_inputs() -> None:
    """Identical normalized pairs score F1 = 1 and only they do; a pair scores 0 iff an answer is < 3 chars."""
    ones = zeros = 0
    zero_mismatch = []
    for setting, task, k, v in released():
        a, b = normalize_answer(v["model1_output"]), normalize_answer(v["model2_output"])
        short = too_short(a, b)
        assert (a == b and not short) == (v["bert_score"] > 0.99999), (setting, task, k, a, b, v["bert_score"])
        ones += a == b and not short
        zeros += short
        if short != (v["bert_score"] == 0):
            zero_mismatch.append((setting, task, k, v["model1_name"], v["model2_name"]))
    # The script's normalization (compare_models_bert.py) explains every stored score: the 13 F1 = 1
    # pairs are exactly the identical normalized pairs, the 24 F1 = 0 pairs exactly the short ones.
    assert ones == 13 and zeros == 24
    assert zero_mismatch == []


def test_judge_puts_the_forced_prefix_back_and_normalizes() -> None:
    p = InstructionInduction()
    gold = {
        "protocol": "study",
        "answer_prefix": FORCED_PREFIX,
        "annotations": ["Write the opposite."],
        "similarity": "exact",
        "threshold": 1.0,
    }
    j = p.judge(' "Write the opposite."<|im_end|>', None, gold, "official")
    assert (j.answer, j.extracted, j.correct) == ("write the opposite.", "write the opposite.", True)
    j = p.judge(" x", None, gold, "official")
    assert (j.answer, j.extracted, j.correct) == ("x", None, False)
    j = p.judge(' "Write the opposite."', None, gold, "lenient")  # ours extracts; the compared form stays the study's
    assert j.answer == "write the opposite." and j.extracted == "Write the opposite." and j.correct
    j = p.judge(" Reverse it.\nExample: abc -> cba", None, gold, "lenient")  # the prefix is put back first
    assert j.extracted == "Reverse it."
    with pytest.raises(ValueError, match="no checker"):
        p.judge("x", None, gold, "strict")
