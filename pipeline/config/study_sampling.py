"""The study's sampling: temperature 1.0 over each model's generation config, as HF ``generate`` merges them.

The study's runs (``llm_inference.py``) call a transformers pipeline with
``do_sample=True, temperature=1.0`` for its Sampled setting and pass nothing
else, so every other sampling field comes from the model's
``generation_config.json``, and a field that file does not set takes
``transformers.GenerationConfig``'s default (``top_k=50``, ``top_p=1.0``,
``repetition_penalty=1.0``, no ``min_p``).  Its ensemble proposals
(``ensemble_thoughts.py``: ``do_sample=True, top_k=50``) keep the generation
config's temperature and top_p.  Its Default setting is greedy
(``do_sample=False``).

A model config records what its checkpoint ships under ``generation_config``
(a ``SamplingConfig``; null when it ships none, i.e. HF's defaults);
``protocol.sampled_temperature`` (set by ``study_protocol=paper``) derives
each model's ``sampled`` block from it, and ``ensemble.proposal_sampling=
generation_config`` makes the ensemble sample from it.  The seed policy is not
the study's: it seeded torch once per process (``torch.manual_seed(42)``) and
drew every request from that one stream; here each request has its own seed
(rows do not depend on batching), from ``sampled.seed``.
"""

from __future__ import annotations

from typing import Any

from pipeline.config.schemas import SamplingConfig

# transformers.GenerationConfig's defaults for the fields a generation_config.json may leave out.
HF_DEFAULTS = SamplingConfig(temperature=1.0, top_p=1.0, top_k=50, min_p=0.0, repetition_penalty=1.0, seed=0)


def generation_config(m: Any) -> SamplingConfig:
    """The model's generation config (HF's defaults where it ships none)."""
    return m.generation_config if m.generation_config is not None else HF_DEFAULTS


def study_sampled(m: Any, temperature: float) -> SamplingConfig:
    """The study's Sampled-CoT sampling for model config ``m``: ``temperature`` over its generation config."""
    g = generation_config(m)
    seed = m.sampled.seed if m.sampled is not None and m.sampled.seed is not None else 0
    return SamplingConfig(
        temperature=float(temperature),
        top_p=g.top_p,
        top_k=g.top_k,
        min_p=g.min_p,
        repetition_penalty=g.repetition_penalty,
        seed=seed,
    )


def sampling_record(cfg: SamplingConfig, *, seeds: str, reasoning_effort: str | None = None) -> dict:
    """The ``sampling`` object of a ``crosscot prompts`` row."""
    out = {
        "temperature": cfg.temperature,
        "greedy": cfg.temperature == 0,
        "top_p": cfg.top_p,
        "top_k": cfg.top_k,
        "min_p": cfg.min_p,
        "repetition_penalty": cfg.repetition_penalty,
        "seed_policy": seeds,
    }
    if reasoning_effort is not None:
        out["reasoning_effort"] = reasoning_effort
    return out
