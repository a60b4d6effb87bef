"""Thinking formats: opening tags never doubled, CoTs placed so the model answers after them."""

from __future__ import annotations

import pytest

from pipeline.engine.formats import FORMATS, get_format


def test_registered_formats():
    assert {"think_tags", "openthoughts", "harmony", "plain"} <= set(FORMATS.names())


def test_open_not_doubled_when_template_adds_it():
    f = get_format("think_tags")
    qwq_prompt = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert f.open_thinking(qwq_prompt).count("<think>") == 1
    plain_prompt = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    assert f.open_thinking(plain_prompt).endswith("assistant\n<think>\n")


@pytest.mark.parametrize(
    "name,tail",
    [
        ("think_tags", "step one.\n</think>\n\n"),
        ("openthoughts", "step one.\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n"),
        ("harmony", "step one.<|end|><|start|>assistant<|channel|>final<|message|>"),
        ("plain", "step one.\n\nFinal answer: "),
    ],
)
def test_place_cot(name, tail):
    f = get_format(name)
    out = f.place_cot("PROMPT:", "step one.")
    assert out.startswith("PROMPT:" + f.open)
    assert out.endswith(tail)


def test_foreign_tags_are_cleaned_before_placing():
    f = get_format("harmony")
    cot = "<think> a. </think> b <|end_of_thought|> c"
    placed = f.place_cot("P", cot)
    body = placed[len("P" + f.open) : -len(f.close + f.answer_prefix)]
    assert "<think>" not in body and "<|end_of_thought|>" not in body and "a." in body and "c" in body


def test_unknown_format_error_lists_known():
    with pytest.raises(KeyError, match="think_tags"):
        get_format("think-tags")
