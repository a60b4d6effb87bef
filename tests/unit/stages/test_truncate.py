"""Stage `truncate` with the rule and the LLM answer filter (fake engine): filter column, artifact key."""

from __future__ import annotations

import pytest

from pipeline.engine.fake import FakePool
from pipeline.schema import COTS
from pipeline.stages.dag import run
from pipeline.store.artifacts import read_provenance, read_table


def _truncate(cfg, pool):
    ctx = run(cfg, pool_factory=lambda: pool)
    [path] = ctx.outputs["truncate"]
    return path, read_table(path).to_pylist()


def test_cots_schema_has_filter_last():
    assert COTS.names[-1] == "filter" and COTS.field("filter").nullable


def test_rule_filter_records_rule(tiny_cfg):
    cfg = tiny_cfg("stages=[truncate]")
    pool = FakePool(cfg)
    path, rows = _truncate(cfg, pool)
    wa = [r for r in rows if r["variant"] == "without_answer" and not r["error"]]
    assert wa and {r["filter"] for r in wa} == {"rule"}
    assert {r["filter"] for r in rows if r["variant"] == "full"} == {None}
    assert not getattr(pool.engines["tiny-think"], "filter_batches", [])  # no engine work for the rule filter


def test_llm_filter_uses_filter_model_one_item_per_cot(tiny_cfg):
    cfg = tiny_cfg("stages=[truncate]", "truncate.filter=llm", "truncate.filter_model=tiny-think")
    pool = FakePool(cfg)
    path, rows = _truncate(cfg, pool)
    wa = [r for r in rows if r["variant"] == "without_answer" and not r["error"]]
    full = {(r["problem_id"], r["method"], r["source"], r["sample"]): r["cot"] for r in rows if r["variant"] == "full"}
    assert wa and {r["filter"] for r in wa} == {"llm"}
    assert not any(r["leak"] for r in wa)
    for r in wa:  # fake CoTs end "So the answer is N.": dropped, the steps kept verbatim
        src = full[(r["problem_id"], r["method"], r["source"], r["sample"])]
        assert "answer is" not in r["cot"] and src.startswith(r["cot"])
    assert pool.engines["tiny-think"].filter_batches == [1] * len(wa)  # one window item per (short) CoT
    assert not getattr(pool.engines["tiny-thought"], "filter_batches", [])
    prov = read_provenance(path)
    assert "tiny-think" in str(prov)


def test_llm_filter_key_includes_filter_model(tiny_cfg):
    base = ["stages=[truncate]", "truncate.filter=llm"]
    p_rule, _ = _truncate(tiny_cfg("stages=[truncate]"), FakePool(tiny_cfg("stages=[truncate]")))
    cfg_a = tiny_cfg(*base, "truncate.filter_model=tiny-think")
    p_a, _ = _truncate(cfg_a, FakePool(cfg_a))
    cfg_b = tiny_cfg(*base, "truncate.filter_model=tiny-thought")
    p_b, _ = _truncate(cfg_b, FakePool(cfg_b))
    assert len({p_rule, p_a, p_b}) == 3  # filter model's hash fields are part of the key
    from pipeline.config import hash_fields

    assert read_provenance(p_a)["args"]["filter_model"] == hash_fields(cfg_a.model("tiny-think"))
    cfg_c = tiny_cfg(*base, "truncate.filter_model=tiny-think", "models.a.max_num_seqs=3")
    p_c, _ = _truncate(cfg_c, FakePool(cfg_c))
    assert p_c == p_a  # ... and fields that do not change results are not


def _broken(requests):
    raise RuntimeError("filter engine died")


async def _broken_item(r):
    _broken([r])


def test_llm_filter_engine_failure_is_an_error_never_cached(tiny_cfg, tmp_path):
    cfg = tiny_cfg(
        "stages=[truncate]", "truncate.filter=llm", "truncate.filter_model=tiny-think", f"run_dir={tmp_path / 'r'}"
    )
    pool = FakePool(cfg)
    pool.engines["tiny-think"].complete = _broken_item
    with pytest.raises(RuntimeError, match="rerun the same command"):
        _truncate(cfg, pool)
    assert not list((tmp_path / "r" / "store").glob("truncate-*.arrow")), "no truncate artifact from a failed filter"
    # A rerun with a working filter model finishes, and every row is LLM-filtered.
    _, rows = _truncate(cfg, FakePool(cfg))
    wa = [r for r in rows if r["variant"] == "without_answer" and not r["error"]]
    assert wa and {r["filter"] for r in wa} == {"llm"}


def test_llm_filter_engine_failure_falls_back_only_when_asked(tiny_cfg):
    cfg = tiny_cfg(
        "stages=[truncate]", "truncate.filter=llm", "truncate.filter_model=tiny-think", "truncate.on_filter_error=rule"
    )
    pool = FakePool(cfg)
    pool.engines["tiny-think"].complete = _broken_item
    path, rows = _truncate(cfg, pool)
    wa = [r for r in rows if r["variant"] == "without_answer" and not r["error"]]
    assert wa and {r["filter"] for r in wa} == {"rule(filter error)"}
    assert not any(r["leak"] for r in wa)
    plain = tiny_cfg("stages=[truncate]", "truncate.filter=llm", "truncate.filter_model=tiny-think")
    p2, _ = _truncate(plain, FakePool(plain))
    assert p2 != path, "the fallback choice is part of the artifact key"


def test_rule_variants_unchanged_by_llm_plumbing():
    """`variants` without an LLM result is the rule filter, as before."""
    from pipeline.datasets import get_dataset
    from pipeline.stages.truncate import TruncateStage

    class T:
        prefix_fractions = []

    r = {
        "dataset": "toy_arith",
        "problem_id": "p",
        "method": "default",
        "source": "m",
        "sample": 0,
        "cot": "We add 17 and 25. That gives 42 in total. Therefore the answer is 42.",
        "answer_text": "Answer: 42",
    }
    rows = TruncateStage.variants(r, get_dataset("toy_arith"), T())
    wa = rows[1]
    assert (wa["cot"], wa["leak"], wa["filter"]) == ("We add 17 and 25.", False, "rule")
    rows2 = TruncateStage.variants(r, get_dataset("toy_arith"), T(), ("We add 17 and 25. ", "llm"))
    assert (rows2[1]["cot"], rows2[1]["filter"]) == ("We add 17 and 25.", "llm")


@pytest.mark.parametrize("model", ["", "nope"])
def test_llm_filter_needs_a_configured_model(tiny_cfg, model):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="filter_model"):
        tiny_cfg("truncate.filter=llm", f"truncate.filter_model={model}" if model else "truncate.filter_model=null")
