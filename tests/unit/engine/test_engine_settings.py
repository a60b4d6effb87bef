"""Engine settings per model and device, and the determinism claim every artifact records."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError, compose
from pipeline.engine.determinism import effective, run_determinism
from pipeline.engine.settings import (
    GPU_BATCHED_TOKENS,
    batched_tokens,
    engine_core,
    runtime_env,
)


def _m(**kw):
    m = compose(["experiment=demo_tiny"]).model("tiny-think")
    for k, v in kw.items():
        setattr(m, k, v)
    return m


def test_batched_tokens_per_device():
    assert batched_tokens(_m(), cpu=False) == GPU_BATCHED_TOKENS  # not EngineArgs' 2048 fallback
    assert batched_tokens(_m(max_num_batched_tokens=8192), cpu=False) == 8192
    # CPU prefill is unchunked: a step must hold a whole prompt, whatever the setting says.
    assert batched_tokens(_m(max_num_batched_tokens=256), cpu=True) == 1024
    assert batched_tokens(_m(max_model_len=4096), cpu=True) == 4096


def test_engine_core_and_determinism_env():
    assert engine_core(_m(engine_core="mp"), cpu=True) == "inproc"  # a spawned core fails in Ray on CPU
    assert engine_core(_m(), cpu=False) == "mp"
    assert engine_core(_m(engine_core="inproc"), cpu=False) == "inproc"
    gpu_exact = runtime_env(_m(determinism="exact", engine_core="inproc"), cpu=False)
    assert gpu_exact.env == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_BATCH_INVARIANT": "1"}
    gpu_auto = runtime_env(_m(), cpu=False)
    assert gpu_auto.determinism == "batch_dependent" and gpu_auto.env["VLLM_BATCH_INVARIANT"] == "0"
    cpu = runtime_env(_m(determinism="batch_dependent"), cpu=True)
    assert "VLLM_BATCH_INVARIANT" not in cpu.env and cpu.core == "inproc"
    assert effective("auto", "cpu") == "exact" and effective("auto", "cuda:NVIDIA H200") == "batch_dependent"


def test_run_determinism_in_provenance(monkeypatch):
    cfg = compose(["experiment=demo_tiny"])
    monkeypatch.setenv("CROSSCOT_DEVICE_KIND", "cpu")
    d = run_determinism(cfg)
    assert d["effective"] == "exact" and d["device"] == "cpu" and "do not depend on batching" in d["claim"]
    monkeypatch.setenv("CROSSCOT_DEVICE_KIND", "cuda:NVIDIA H200")
    d = run_determinism(cfg)
    assert d["effective"] == "batch_dependent" and "may change with batching" in d["claim"]
    exact = compose(["experiment=demo_tiny", "determinism=exact"])
    assert {m.determinism for m in exact.models.values()} == {"exact"}
    assert run_determinism(exact)["effective"] == "exact"
    with pytest.raises(ConfigError, match="determinism"):
        compose(["experiment=demo_tiny", "determinism=sometimes"])
