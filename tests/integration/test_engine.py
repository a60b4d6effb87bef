"""Integration: the real vLLM engine in real Ray actors, on tiny random-weight models.

These are the tests that "pass" the backbone: three engines in three thinking
formats run the whole DAG; prompts are built from each model's own chat
template; requests reach each engine concurrently (many in flight at once, never one at a time).
"""

from __future__ import annotations

import json

import polars as pl
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from pipeline.config import compose
    from pipeline.engine.ray_pool import init_ray

    init_ray(compose(["experiment=demo_tiny"]).ray)
    yield
    ray.shutdown()


def test_dag_end_to_end_real_engines(tiny_cfg, ray_session):
    from pipeline.stages.dag import run
    from pipeline.store.artifacts import read_table

    cfg = tiny_cfg("dataset.size=4")
    ctx = run(cfg)
    rd = ctx.run_dir
    summary = pl.read_csv(rd / "tables" / "consistency_summary.csv")
    assert {"Empty", "Default", "Sampled", "Transfer tiny-harmony"} <= set(summary["setting"].to_list())
    answers = pl.from_arrow(read_table(rd / "answers.arrow"))
    # 4 problems: own answers (3 methods x 3 models) + transfers (3 sources x 2 variants x 3 targets)
    # + sampled without_answer (3); rows of CoTs that filtered to empty are skipped with reasons.
    assert answers.height >= 4 * (9 + 9)
    assert answers["error"].null_count() == answers.height
    assert answers["answer_tokens"].max() > 0
    tel = json.loads((rd / "telemetry.json").read_text())
    eng = tel["engines"]
    assert set(eng) == {"tiny-think", "tiny-thought", "tiny-harmony"}
    for name, s in eng.items():
        assert s["generated_tokens"] > 0, name
        # many requests in flight in the engine at once, never one at a time
        assert s["max_in_flight"] >= 4 and s["steps"] < s["generated_tokens"], (name, s)
    # sampled and greedy CoTs differ (the sampler really samples)
    gen = answers.filter(pl.col("source") == pl.col("target"))
    d = gen.filter(pl.col("method") == "default").sort("problem_id")["cot"].to_list()
    s_ = gen.filter(pl.col("method") == "sampled").sort("problem_id")["cot"].to_list()
    assert d != s_
    assert 0 <= tel["outside_engine_share"] < 1


def test_engine_builds_prompts_in_own_format():
    """In-process engine (no Ray): template-added <think> is not doubled; Harmony channels are real tokens."""
    from pipeline.config import compose
    from pipeline.engine.protocol import GREEDY, GenerateRequest
    from pipeline.engine.vllm_engine import ModelEngine

    cfg = compose(["experiment=demo_tiny"])
    e = ModelEngine(cfg.model("tiny-harmony"))
    p = e.answer_prompt("What is 1 + 1?", "one plus one")
    assert p.endswith("one plus one<|end|><|start|>assistant<|channel|>final<|message|>")
    ids = e.encode("<|channel|>")
    assert len(ids) == 1  # a special token, not text
    reqs = [
        GenerateRequest(prompt=q, sampling=GREEDY, thought_budget=8, answer_budget=4)
        for q in ("What is 1 + 1?", "x " * 600)
    ]
    out = [r.row() for r in e.run_batch([e.generate(r) for r in reqs])]
    assert out[0]["error"] is None and out[0]["cot_tokens"] > 0
    assert "max_model_len=1024" in out[1]["error"] and "tiny-harmony" in out[1]["error"]


def test_think_tags_template_opening_not_doubled():
    from transformers import AutoTokenizer

    from pipeline.config import compose
    from pipeline.engine.formats import get_format
    from pipeline.provision.models import ensure_model

    m = compose(["experiment=demo_tiny"]).model("tiny-think")
    tok = AutoTokenizer.from_pretrained(ensure_model(m))
    gp = tok.apply_chat_template([{"role": "user", "content": "Q"}], tokenize=False, add_generation_prompt=True)
    assert gp.endswith("<think>\n")  # this family's template opens the thinking itself
    placed = get_format("think_tags").place_cot(gp, "my thoughts")
    assert placed.count("<think>") == 1 and placed.endswith("my thoughts\n</think>\n\n")
