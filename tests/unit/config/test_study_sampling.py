"""The study's sampling under reference_paper, the prompts' `sampling` object, II budgets, revision pins."""

from __future__ import annotations

from pipeline.commands.prompts import requests
from pipeline.config import compose
from pipeline.config.study_sampling import HF_DEFAULTS, study_sampled
from pipeline.engine.vllm_engine import engine_args
from pipeline.stages.transfer import answer_sampling

PROBLEM = [{"problem_id": "1", "prompt": "2+2?", "system": "You are a calculator.", "answer_prefix": None}]
LRMS = ("nrr", "opent", "oss", "qwq", "dapo")


def test_reference_paper_samples_at_temperature_one_over_generation_config() -> None:
    cfg = compose(["experiment=reference_paper"])
    for key in LRMS:
        m = cfg.models[key]
        g = m.generation_config
        [s] = requests(cfg, m, "sampled", PROBLEM, None)
        assert s["sampling"]["temperature"] == 1.0 and not s["sampling"]["greedy"], key
        assert (s["sampling"]["top_p"], s["sampling"]["top_k"], s["sampling"]["repetition_penalty"]) == (
            g.top_p,
            g.top_k,
            g.repetition_penalty,
        ), key
        assert s["answer_sampling"] == s["sampling"]
        [d] = requests(cfg, m, "default", PROBLEM, None)
        assert (
            d["sampling"]["temperature"] == 0.0
            and d["sampling"]["greedy"]
            and d["sampling"]["seed_policy"].startswith("none")
        )
        assert m.revision is None  # the study pinned none
    assert requests(cfg, cfg.models["oss"], "sampled", PROBLEM, None)[0]["sampling"]["reasoning_effort"] == "low"
    # Its answer after its own Sampled CoT is sampled too; a transfer's answer stays greedy.
    qwq = cfg.models["qwq"]
    c = {"problem_id": "1", "sample": 0}
    assert answer_sampling(qwq, "sampled", c).temperature == 1.0
    assert answer_sampling(qwq, "transfer", c).temperature == 0.0
    assert cfg.ensemble.proposal_sampling == "generation_config"
    assert (
        cfg.ensemble.thought_budget >= 20000
        and cfg.ensemble.max_steps * cfg.ensemble.max_candidate_tokens > cfg.ensemble.thought_budget
    )


def test_reference_keeps_the_model_cards() -> None:
    cfg = compose(["experiment=reference"])
    qwq = cfg.models["qwq"]
    assert (qwq.sampled.temperature, qwq.sampled.top_k) == (0.6, 40)
    assert answer_sampling(qwq, "sampled", {"problem_id": "1", "sample": 0}).temperature == 0.0
    assert cfg.ensemble.proposal_sampling == "sampled"


def test_no_generation_config_means_hf_defaults() -> None:
    cfg = compose(["experiment=demo_tiny"])
    m = cfg.models["a"]
    m.generation_config = None
    s = study_sampled(m, 1.0)
    assert (s.temperature, s.top_p, s.top_k, s.repetition_penalty) == (1.0, HF_DEFAULTS.top_p, 50, 1.0)


def test_the_three_released_ensembles() -> None:
    got = {}
    for e in ("qwq_dapo_oss", "qwq_opent_oss", "qwq_oss_dapo"):
        c = compose(["experiment=reference_paper", f"study_ensemble={e}"]).ensemble
        got[e] = (list(c.generators), list(c.evaluators))
    assert got == {
        "qwq_dapo_oss": (["QwQ", "DAPO"], ["OSS"]),
        "qwq_opent_oss": (["QwQ", "OpenT"], ["OSS"]),
        "qwq_oss_dapo": (["QwQ", "OSS"], ["DAPO"]),
    }


def test_instruction_induction_budgets_and_effort() -> None:
    cfg = compose(["experiment=reference_paper_ii"])
    oss = cfg.models["oss"]
    [d] = requests(cfg, oss, "default", PROBLEM, None)
    assert (d["think_budget"], d["think_budget_plus_prompt"], d["answer_budget"]) == (2018, False, 30)
    [t] = requests(cfg, oss, "transfer", PROBLEM, None)
    assert t["answer_budget"] == 30 and t["chat_template_kwargs"]["reasoning_effort"] == "low"
    assert oss.protocol.cot_strings == "format" and not oss.protocol.harmony_channels_as_text
    assert not cfg.models["qwq"].protocol.double_think_open


def test_revision_pin_reaches_the_engine() -> None:
    cfg = compose(["experiment=reference", "models.qwq.revision=abc123"])
    kw = engine_args(cfg.models["qwq"], "Qwen/QwQ-32B", 0, cpu=True)
    assert kw["revision"] == "abc123" and kw["tokenizer_revision"] == "abc123"
    assert "revision" not in engine_args(cfg.models["dapo"], "x", 0, cpu=True)
