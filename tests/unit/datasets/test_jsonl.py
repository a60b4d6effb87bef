"""Generic JSONL/Parquet dataset: column mapping, templates, numeric/exact checks, malformed rows."""

from __future__ import annotations

import json
from pipeline.config import DatasetConfig

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.datasets import get_dataset
from pipeline.datasets.jsonl import JsonlDataset, normalize_text
from pipeline.datasets.protocol import DatasetError


def cfg(path, **options):
    return DatasetConfig(name="jsonl", path=str(path) if path else None, limit=None, seed=0, options=options)


def write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_column_mapping_template_and_meta(tmp_path):
    p = write(
        tmp_path / "p.jsonl",
        [
            {"uid": "a1", "problem": "2+2?", "sol": "4", "topic": "add"},
            {"uid": "a2", "problem": "3*3?", "sol": "9", "topic": "mul"},
        ],
    )
    t = get_dataset("jsonl").load(
        cfg(
            p,
            id="uid",
            question="problem",
            answer="sol",
            prompt_template="[{topic}] {question} Reply 'Answer: <n>'.",
            meta=["topic"],
        )
    )
    rows = t.to_pylist()
    assert [r["problem_id"] for r in rows] == ["a1", "a2"]
    assert rows[0]["prompt"] == "[add] 2+2? Reply 'Answer: <n>'."
    assert json.loads(rows[1]["gold"]) == {"answer": "9", "check": "numeric", "rel_tol": 1e-6}
    assert json.loads(rows[1]["meta"])["topic"] == "mul"
    assert rows[0]["dataset"] == "jsonl"


def test_default_columns_row_index_ids_and_parquet(tmp_path):
    p = tmp_path / "p.parquet"
    pq.write_table(pa.table({"question": ["q0", "q1"], "answer": [1, 2]}), p)
    t = JsonlDataset().load(cfg(p))
    assert t.column("problem_id").to_pylist() == ["0", "1"]
    assert t.column("prompt").to_pylist() == ["q0", "q1"]


def test_answer_regex(tmp_path):
    p = write(tmp_path / "g.jsonl", [{"question": "q", "answer": "work...\n#### 1,200"}])
    t = JsonlDataset().load(cfg(p, answer_regex=r"####\s*(.+)$"))
    assert json.loads(t.column("gold")[0].as_py())["answer"] == "1,200"


def test_numeric_and_exact_checks():
    ds = JsonlDataset()
    num = {"answer": "1,200", "check": "numeric", "rel_tol": 1e-6}
    assert ds.check(ds.extract("We get 1200 in total.\nAnswer: 1200 apples"), num)
    assert ds.check(ds.extract("so \\boxed{1200}"), num)
    assert ds.check(ds.extract("blah\nThe total is $1,200."), num)
    assert not ds.check(ds.extract("Answer: 1201"), num)
    assert not ds.check(None, num)
    ex = {"answer": "Paris", "check": "exact"}
    assert ds.check(ds.extract("Let me think.\nAnswer: paris."), ex)
    assert ds.check(ds.extract('Thinking...\n"Paris"'), ex)
    assert not ds.check(ds.extract("Answer: Lyon"), ex)
    assert normalize_text("  The  END. ") == "the end"


def test_malformed_rows_raise_with_file_row_field(tmp_path):
    p = write(tmp_path / "bad.jsonl", [{"question": "q", "answer": "1"}, {"question": "q2"}])
    with pytest.raises(DatasetError) as e:
        JsonlDataset().load(cfg(p))
    assert "bad.jsonl: row 2: field 'answer' is missing" in str(e.value)

    p2 = write(tmp_path / "empty.jsonl", [{"question": "", "answer": "1"}])
    with pytest.raises(DatasetError, match="row 1: field 'question' is empty"):
        JsonlDataset().load(cfg(p2))

    p3 = write(tmp_path / "nonum.jsonl", [{"question": "q", "answer": "blue"}])
    with pytest.raises(DatasetError, match="has no number"):
        JsonlDataset().load(cfg(p3))
    assert JsonlDataset().load(cfg(p3, check="exact")).num_rows == 1

    p4 = write(tmp_path / "tpl.jsonl", [{"question": "q", "answer": "1"}])
    with pytest.raises(DatasetError, match="prompt_template names field 'topic'"):
        JsonlDataset().load(cfg(p4, prompt_template="{topic}: {question}"))


def test_duplicate_ids_and_skip_mode(tmp_path):
    p = write(
        tmp_path / "d.jsonl",
        [
            {"id": 1, "question": "a", "answer": "1"},
            {"id": 1, "question": "b", "answer": "2"},
            {"id": 2, "question": "c"},
            {"id": 3, "question": "d", "answer": "4"},
        ],
    )
    with pytest.raises(DatasetError, match="duplicate id"):
        JsonlDataset().load(cfg(p, id="id"))
    ds = JsonlDataset()
    with pytest.warns(UserWarning, match="skipped 2"):
        t = ds.load(cfg(p, id="id", on_bad_row="skip"))
    assert t.column("problem_id").to_pylist() == ["1", "3"]
    assert [s["row"] for s in ds.skipped] == [2, 3]


def test_requires_path_and_valid_options(tmp_path):
    with pytest.raises(DatasetError, match="dataset.path is required"):
        JsonlDataset().load(cfg(None))
    p = write(tmp_path / "p.jsonl", [{"question": "q", "answer": "1"}])
    with pytest.raises(DatasetError, match="options.check"):
        JsonlDataset().load(cfg(p, check="fuzzy"))
    t = JsonlDataset().load(DatasetConfig(name="jsonl", path=str(p)))
    assert t.num_rows == 1


def test_config_composes():
    from pipeline.config import compose

    r = compose(["dataset=jsonl", "dataset.path=/data/x.jsonl"])
    assert r.dataset.name == "jsonl" and r.dataset.options["check"] == "numeric"
