"""Sentence splitting: lossless, abbreviation- and decimal-aware; prefix keeping; candidate cut-back."""

from __future__ import annotations

from pipeline.text.sentences import cut_to_sentence, keep_prefix, split_sentences


def test_lossless_and_decimals_abbreviations():
    text = "The dose is 3.5 mg/dL. Dr. Smith agreed, e.g. for adults. Then we add 2. Done!\n\nNext part"
    parts = split_sentences(text)
    assert "".join(parts) == text
    assert parts[0] == "The dose is 3.5 mg/dL. "
    assert parts[1].startswith("Dr. Smith agreed, e.g. for adults.")
    assert parts[-1] == "Next part"


def test_cut_to_sentence():
    assert cut_to_sentence("First one. Second half") == "First one. "
    assert cut_to_sentence("no sentence end here") == "no sentence end here"
    assert cut_to_sentence("Ends. ") == "Ends. "


def test_keep_prefix():
    cot = "A. B. C. D."
    assert keep_prefix(cot, 0.5) == "A. B. "
    assert keep_prefix(cot, 0.01) == "A. "
    assert keep_prefix("", 0.5) == ""
