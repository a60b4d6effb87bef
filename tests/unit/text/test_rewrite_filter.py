"""The study's answer removal (truncate.filter=rewrite): prompt verbatim, reply parsing, per-CoT stage wiring."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from pipeline.engine.fake import FakePool
from pipeline.engine.protocol import GenerateRequest, GenerateResult
from pipeline.stages.dag import run
from pipeline.store.artifacts import read_table
from pipeline.text.rewrite_filter import REMOVE_ANSWER_PROMPT, rewrite_one, rewrite_prompt, think_text

_GREEDY = SimpleNamespace(temperature=0.0, top_p=1.0, top_k=-1, min_p=0.0, repetition_penalty=1.0, seed=0)


def test_prompt_is_the_studys_and_replies_are_parsed() -> None:
    p = rewrite_prompt("<think>Add 2. The score is 5.</think> {json}")
    assert p.startswith("\nTask: Keep only the hints from the text and remove answer sentences.\n")
    assert p.endswith("Original text:\nAdd 2. The score is 5.\n")
    assert "5. Output only the hints." in REMOVE_ANSWER_PROMPT
    assert think_text("no tags") == "no tags"
    model = SimpleNamespace(name="M", greedy=_GREEDY, max_model_len=1024)
    sent: list[GenerateRequest] = []

    def replying(text):
        async def call(req: GenerateRequest) -> GenerateResult:
            sent.append(req)
            return GenerateResult(cot="", cot_tokens=0, cot_finish_reason="stop", forced_close=False, answer_text=text)

        return call

    out = [
        asyncio.run(rewrite_one(replying(t), model, c))
        for t, c in (("<think>keep hints</think>", "a"), ("Add 2.", "b"), (None, "c"))
    ]
    assert out == [("keep hints", "rewrite"), ("Add 2.", "rewrite"), ("", "rewrite")]
    assert all(r.cot is None for r in sent)  # the filter model thinks first, then rewrites
    assert (sent[0].thought_budget, sent[0].answer_budget) == (256, 512)  # the study's, capped to the context
    assert "the answer" not in sent[0].prompt.split("Original text:")[1]  # never told the answer
    big = SimpleNamespace(name="M", greedy=_GREEDY, max_model_len=32768)
    asyncio.run(rewrite_one(replying("x"), big, "a"))
    assert (sent[-1].thought_budget, sent[-1].answer_budget) == (2048, 4096)


def test_engine_error_raises() -> None:
    async def failing(req: GenerateRequest) -> GenerateResult:
        return GenerateResult(
            cot="",
            cot_tokens=0,
            cot_finish_reason="stop",
            forced_close=False,
            error="answer: prompt exceeds max_model_len=1024",
        )

    model = SimpleNamespace(name="M", greedy=_GREEDY, max_model_len=1024)
    with pytest.raises(RuntimeError, match="max_model_len"):
        asyncio.run(rewrite_one(failing, model, "a"))


def _rewrites(pool, model: str, broken: bool = False) -> list[str]:
    """Record (or break) the filter model's generate items that carry the rewrite prompt."""
    eng = pool.engines[model]
    real, seen = eng.generate, []

    async def generate(r: GenerateRequest) -> GenerateResult:
        if r.prompt.startswith(REMOVE_ANSWER_PROMPT.split("{text}")[0]):
            seen.append(r.prompt)
            if broken:
                raise RuntimeError("filter engine died")
        return await real(r)

    eng.generate = generate
    return seen


def test_truncate_stage_rewrites_each_cot(tiny_cfg) -> None:
    cfg = tiny_cfg("truncate.filter=rewrite", "truncate.filter_model=tiny-think", "stages=[generate,truncate]")
    pool = FakePool(cfg)
    seen = _rewrites(pool, "tiny-think")
    ctx = run(cfg, pool_factory=lambda: pool)
    rows = read_table(ctx.outputs["truncate"][0]).to_pylist()
    wo = [r for r in rows if r["variant"] == "without_answer" and not r["error"]]
    assert wo and all(r["filter"] == "rewrite" for r in wo)
    assert len(seen) == len(wo)  # one generate item per CoT
    # The fake filter model answers after its own thinking: its answer is the rewritten CoT.
    assert all(r["cot"].startswith("Answer:") for r in wo)


def test_truncate_rewrite_failure_is_loud_unless_asked(tiny_cfg, tmp_path) -> None:
    cfg = tiny_cfg(
        "truncate.filter=rewrite",
        "truncate.filter_model=tiny-think",
        "stages=[generate,truncate]",
        f"run_dir={tmp_path / 'r'}",
    )
    pool = FakePool(cfg)
    _rewrites(pool, "tiny-think", broken=True)
    with pytest.raises(RuntimeError, match="rerun"):
        run(cfg, pool_factory=lambda: pool)
    assert not list((tmp_path / "r" / "store").glob("truncate-*.arrow")), "no truncate artifact from a failed filter"
    cfg2 = tiny_cfg(
        "truncate.filter=rewrite",
        "truncate.filter_model=tiny-think",
        "stages=[generate,truncate]",
        "truncate.on_filter_error=rule",
    )
    pool2 = FakePool(cfg2)
    _rewrites(pool2, "tiny-think", broken=True)
    rows = read_table(run(cfg2, pool_factory=lambda: pool2).outputs["truncate"][0]).to_pylist()
    wo = [r for r in rows if r["variant"] == "without_answer" and not r["error"]]
    assert wo and {r["filter"] for r in wo} == {"rule(filter error)"}
