"""The bad-input corpus (the quick form of `make faults`): every case answered with one clear line, exit 2."""

from __future__ import annotations

import argparse

import pytest

from pipeline.commands import faults

CATEGORIES = (
    "file system",
    "silent-empty",
    "overwrite",
    "late check",
    "cluster",
    "corrupted store",
    "encoding",
    "syntax",
)


def test_classify_demands_exit_2_the_whole_stderr_one_line_with_fix_and_the_expected_message():
    assert faults.classify(2, "crosscot: error: a=b: unknown; choose c\n", "unknown")["clear"]
    assert not faults.classify(2, "INFO x\ncrosscot: error: a=b: unknown; choose c\n")["clear"]  # two lines
    assert faults.classify(2, "INFO x\ncrosscot: error: a=b: unknown; choose c\n", one_line=False)["clear"]
    assert not faults.classify(2, "crosscot: error: a=b: unknown; choose c", "no such")["clear"]  # wrong message
    assert not faults.classify(1, "crosscot: error: a=b: unknown; choose c")["clear"]
    assert not faults.classify(2, "crosscot: error: something broke")["clear"]  # no fix named
    assert not faults.classify(2, "Traceback (most recent call last):\ncrosscot: error: x; y")["clear"]


def test_corpus_covers_the_kinds_the_issue_lists():
    cases = faults.load_cases(faults.CORPUS)
    names = " ".join(c["name"] for c in cases)
    for kind in (
        "malformed row",
        "wrong types",
        "empty data file",
        "unknown",
        "over-long prompt",
        "unparsable override",
        "wrong type override",
    ):
        assert kind in names, kind
    for cat in CATEGORIES:  # several cases of each category, each stating the message it expects
        mine = [c for c in cases if c.get("category") == cat]
        assert len(mine) >= 4, cat
        assert all(c.get("expect") for c in mine), cat
    overwrite = [c for c in cases if c["category"] == "overwrite"]
    assert all(c.get("checksum") for c in overwrite), "every overwrite case checksums what was there"


def test_a_changed_pre_existing_file_fails_the_case(tmp_path):
    """The runner itself catches a command that replaced what it should have left alone."""
    case = {
        "name": "t",
        "category": "overwrite",
        "argv": ["import-genex", "{dir}/genex_ok", "--out", "{tmp}/imp", "--force"],
        "expect": "x",
        "setup": {
            "before": [["import-genex", "{dir}/genex_ok", "--out", "{tmp}/imp"]],
            # the import is deterministic: damage what it made, so --force really rewrites it
            "truncate": {"imp/*.arrow": -1},
        },
        "checksum": ["imp/*"],
    }
    r = faults.run_case(case, faults.CORPUS)
    assert not r["clear"] and any("changed" in p for p in r["problems"]), r


def test_category_table_counts_per_category():
    t = faults.category_table(
        [
            {"category": "syntax", "clear": True, "checksummed": 0},
            {"category": "syntax", "clear": False, "checksummed": 0},
            {"category": "overwrite", "clear": True, "checksummed": 3},
        ]
    )
    lines = t.splitlines()
    assert lines[0].split()[:3] == ["category", "cases", "clear"]
    assert lines[1].split() == ["overwrite", "1", "1", "0", "3"] and lines[2].split() == ["syntax", "2", "1", "1", "0"]


@pytest.mark.slow
def test_every_bad_input_is_answered_with_a_clear_error(capsys, tmp_path):
    args = argparse.Namespace(corpus=faults.CORPUS, engines=False, jobs=2, only=None, json=str(tmp_path / "f.json"))
    rc = faults.run(args)
    out = capsys.readouterr().out
    assert rc == 0, out
    n = len([c for c in faults.load_cases(faults.CORPUS) if not c.get("engines")])
    assert f"bad inputs answered with a clear error: {n}/{n}" in out
    for cat in CATEGORIES:
        assert any(line.startswith(cat) for line in out.splitlines()), cat
