"""LLM answer filter: prompt building, reply parsing, fallback, verbatim-and-in-order, windowing.

Fast tests use the fake engine (it answers filter prompts deterministically);
one slow test runs the real vLLM engine on SmolLM2 in-process for 3 real CoTs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

from pipeline.engine.fake import FakeEngine
from pipeline.engine.local import LocalPool
from pipeline.engine.protocol import Completion
from pipeline.text.answers import leaks
from pipeline.text.llm_filter import (
    REPLY_PREFIX,
    FilterSettings,
    build_prompt,
    llm_filter,
    parse_reply,
    window_char_budget,
    windows,
)
from pipeline.text.sentences import split_sentences


@pytest.fixture(scope="module")
def model_cfg():
    from pipeline.commands.models import compose_model

    return compose_model("smollm2")


def _pool(cfg, engine=None):
    return LocalPool({cfg.name: engine or FakeEngine(cfg)})


def _is_subsequence(kept: list[str], original: list[str]) -> bool:
    it = iter(original)
    return all(any(k == o for o in it) for k in kept)


# ------------------------------------------------------------------------------------------ prompt


def test_prompt_numbers_sentences_and_names_the_answer():
    sents = split_sentences("First we add 2 and 3. So the total is 5. Done.")
    p = build_prompt(sents, "5", FilterSettings())
    assert "S1: First we add 2 and 3.\nS2: So the total is 5.\nS3: Done." in p
    assert "The final answer of this reasoning is 5." in p
    assert "none" in p
    p2 = build_prompt(sents, None, FilterSettings())
    assert "reasoning is 5" not in p2 and "concludes with" in p2


def test_prompt_shortens_overlong_sentences_and_flattens_newlines():
    s = FilterSettings(max_sentence_chars=40)
    p = build_prompt(["word " * 50, "a\nb\n"], "1", s)
    line1 = next(ln for ln in p.splitlines() if ln.startswith("S1: "))
    assert " ... " in line1 and len(line1) < 60
    assert "S2: a b" in p


# ----------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "reply,n,want",
    [
        (" S3, S7", 10, {2, 6}),
        (" [S3] and [S7].", 10, {2, 6}),
        ("S2-S4", 10, {1, 2, 3}),
        ("**S4**", 5, {3}),
        (" S12, S15\n\nS1: an echo of the prompt", 20, {11, 14}),
        (" S19. The CURB-65 score is 0.", 20, {18}),  # text after the list is ignored
        (" none", 5, set()),
        (" None of them.", 5, set()),
        (" S3, S99", 5, {2}),  # out-of-range labels ignored
        (" S42", 5, None),  # only out-of-range labels: unusable
        (" 4", 10, None),  # the answer value repeated, not a label
        (" 7.8", 10, None),
        ("\n1. Okay, let's see.\n2. I need the score.", 10, None),  # echo of the CoT
        ("\n\nS1: We need the Caprini score.\nS2: Points", 10, None),  # echo of the prompt
        ("\n\nS2, S3", 10, {1, 2}),  # leading blank lines are fine
        (" The answer is S3", 5, None),  # must start with the list
        (" I think the patient is fine", 5, None),
        ("", 5, None),
        (None, 5, None),
    ],
)
def test_parse_reply(reply, n, want):
    assert parse_reply(reply, n) == want


# --------------------------------------------------------------------------------------- windowing


def test_windows_cover_all_sentences_in_order_within_budget():
    sents = [f"Sentence number {i} has some words in it. " for i in range(100)]
    s = FilterSettings(max_sentences=40)
    ws = windows(sents, 600, s)
    assert ws[0][0] == 0 and ws[-1][1] == 100
    assert all(a < b for a, b in ws) and all(ws[i][1] == ws[i + 1][0] for i in range(len(ws) - 1))
    assert all(sum(len(x) + 8 for x in sents[a:b]) <= 600 for a, b in ws)
    assert len(windows(sents, 10**6, s)) == 3  # capped at 40 sentences per window
    assert windows([], 600, s) == []
    assert windows(["x" * 5000], 600, s) == [(0, 1)]  # an over-long sentence gets a window of its own


def test_window_budget_fits_model_context(model_cfg):
    s = FilterSettings()
    budget = window_char_budget(model_cfg.max_model_len, s)
    assert budget / s.chars_per_token + s.template_tokens + s.max_tokens <= model_cfg.max_model_len


# ------------------------------------------------------------------------------ filter, fake engine


COT = (
    "We need the anion gap. Sodium is 140 and chloride is 100. Bicarbonate is 24. "
    "The formula is Na - (Cl + HCO3). So 140 - 124 = 16. Thus the anion gap is 16. Answer is 16."
)


def test_fake_llm_filter_drops_answer_sentences_verbatim_in_order(model_cfg):
    eng = FakeEngine(model_cfg)
    res = llm_filter(_pool(model_cfg, eng), model_cfg, [COT, "Just one step. Nothing else."], ["16", "3"])
    r = res[0]
    assert r.filter == "llm" and r.note is None
    assert (
        r.cot == "We need the anion gap. Sodium is 140 and chloride is 100. Bicarbonate is 24. "
        "The formula is Na - (Cl + HCO3). "
    )
    assert not leaks(r.cot, "16")
    assert _is_subsequence(split_sentences(r.cot), split_sentences(COT))
    assert res[1].cot == "Just one step. Nothing else." and res[1].dropped == []
    assert eng.filter_batches == [1, 1]  # one window item per CoT


def test_windowed_long_cot_all_windows_and_global_indices(model_cfg):
    filler = [f"Step {i} checks criterion {i}. " for i in range(120)]
    cot = "".join(filler[:50]) + "So the total is 77. " + "".join(filler[50:])
    eng = FakeEngine(model_cfg)
    s = FilterSettings(max_sentences=30)
    [r] = llm_filter(_pool(model_cfg, eng), model_cfg, [cot], ["77"], s)
    assert eng.filter_batches == [1] * 5  # 121 sentences -> 5 windows, one complete item each
    assert r.dropped == [50] and r.filter == "llm"
    assert r.cot == "".join(filler)


def test_garbage_reply_falls_back_to_rule_for_that_window(model_cfg):
    cot = "GARBAGE intro sentence. So the total is 9. Another step."
    res = llm_filter(_pool(model_cfg), model_cfg, [cot, COT], ["9", "16"])
    assert res[0].filter == "llm->rule" and "unparseable" in res[0].note
    assert (res[0].windows, res[0].windows_rule, res[1].windows_rule) == (1, 1, 0)
    assert res[0].cot == "GARBAGE intro sentence. Another step."  # the rule filter's result
    assert res[1].filter == "llm"  # other CoTs keep the model's judgement


def test_implausible_reply_falls_back(model_cfg):
    cot = "EVERYTHING one. Two. Three. Four. So the total is 5."
    [r] = llm_filter(_pool(model_cfg), model_cfg, [cot], ["5"])
    assert r.filter == "llm->rule" and "implausible" in r.note
    assert r.cot == "EVERYTHING one. Two. Three. Four. "


def test_engine_failure_is_loud(model_cfg):
    """A failed filter call is never papered over by the rule filter here (the stage decides)."""

    class Broken(FakeEngine):
        async def complete(self, r):
            raise RuntimeError("engine died")

    with pytest.raises(RuntimeError, match="engine died"):
        llm_filter(_pool(model_cfg, Broken(model_cfg)), model_cfg, [COT, "So the total is 3."], ["16", "3"])


def test_template_is_rendered_once_and_prompt_primed(model_cfg):
    seen = []

    class Spy(FakeEngine):
        async def complete(self, r):
            seen.append(r.text)
            return await super().complete(r)

    llm_filter(_pool(model_cfg, Spy(model_cfg)), model_cfg, [COT, COT], ["16", "16"])
    assert len(seen) == 2
    assert all(t.startswith("<user>") and t.endswith("<assistant>" + REPLY_PREFIX) for t in seen)


def test_any_reply_keeps_original_sentences_verbatim_in_order(model_cfg):
    """Whatever the model answers, the result is a subsequence of the original sentences."""
    import random

    rng = random.Random(0)
    replies = [" S1, S3", " none", " S2-S4", " S40, S1", " ???", " S5,S2", "", " 3"]

    class Random(FakeEngine):
        async def complete(self, r):
            return Completion(texts=[rng.choice(replies)], token_ids=[[1]], finish_reasons=["stop"])

    cots = [" ".join(f"S{i}-{j} is {rng.randint(0, 9)}." for j in range(rng.randint(1, 12))) for i in range(30)]
    res = llm_filter(_pool(model_cfg, Random(model_cfg)), model_cfg, cots, ["3"] * 30)
    for c, r in zip(cots, res):
        assert _is_subsequence(split_sentences(r.cot), split_sentences(c))
        assert r.filter in ("llm", "llm->rule")


# ----------------------------------------------------------------------------- slow: real engine

GENEX = Path(os.environ.get("CROSSCOT_GENEX_DIR", "/work/shared/data/genex-medcalc-outputs"))


@pytest.mark.slow
@pytest.mark.shared_data(GENEX)
def test_real_smollm2_filter_on_three_cots(model_cfg):
    """SmolLM2 (real vLLM CPU engine, in-process) filters 3 real short CoTs in one batch."""
    from pipeline.engine.vllm_engine import ModelEngine

    rows = [json.loads(ln) for ln in open(GENEX / "openai_gpt-oss-20b_zero_shot_original_low.jsonl")]
    rows = [r for r in rows if (r["LLM Thinking"] or "").strip() and r["LLM Answer"].replace(".", "").isdigit()]
    rows = sorted(rows, key=lambda r: len(r["LLM Thinking"]))[:3]
    cfg = dataclasses.replace(model_cfg, max_model_len=1024, max_num_seqs=4)
    t0 = time.time()
    eng = ModelEngine(cfg)
    res = llm_filter(
        LocalPool({cfg.name: eng}), cfg, [r["LLM Thinking"].strip() for r in rows], [r["LLM Answer"] for r in rows]
    )
    print(f"smollm2 filter: {time.time() - t0:.1f}s incl. load; {[(r.filter, r.dropped) for r in res]}")
    assert eng.get_stats()["requests"] == len(rows)  # one window each
    for r, fr in zip(rows, res):
        cot = r["LLM Thinking"].strip()
        assert fr.filter in ("llm", "llm->rule")
        assert _is_subsequence(split_sentences(fr.cot), split_sentences(cot))
        assert fr.n_sentences == len(split_sentences(cot))
