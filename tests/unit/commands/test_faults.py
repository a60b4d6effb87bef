"""The bad-input corpus (the quick form of `make faults`): every case answered with one clear line, exit 2."""

from __future__ import annotations

import argparse

import pytest

from pipeline.commands import faults


def test_classify_demands_exit_2_one_line_with_fix_and_no_traceback():
    assert faults.classify(2, "INFO x\ncrosscot: error: a=b: unknown; choose c\n")["clear"]
    assert not faults.classify(1, "crosscot: error: a=b: unknown; choose c")["clear"]
    assert not faults.classify(2, "crosscot: error: something broke")["clear"]  # no fix named
    assert not faults.classify(2, "Traceback (most recent call last):\ncrosscot: error: x; y")["clear"]


def test_corpus_covers_the_kinds_the_issue_lists():
    names = " ".join(c["name"] for c in faults.load_cases(faults.CORPUS))
    for kind in ("malformed row", "wrong types", "empty data file", "unknown", "over-long prompt",
                 "unparsable override", "wrong type override"):
        assert kind in names, kind


@pytest.mark.slow
def test_every_bad_input_is_answered_with_a_clear_error(capsys, tmp_path):
    args = argparse.Namespace(corpus=faults.CORPUS, engines=False, jobs=2, only=None, json=str(tmp_path / "f.json"))
    rc = faults.run(args)
    out = capsys.readouterr().out
    assert rc == 0, out
    n = len([c for c in faults.load_cases(faults.CORPUS) if not c.get("engines")])
    assert f"bad inputs answered with a clear error: {n}/{n}" in out
