"""Engine settings decided per model and device: step token budget, engine core, determinism.

Kept apart from :mod:`pipeline.engine.vllm_engine` so the driver (planner, provenance, report)
resolves the same values the engines use without importing vLLM.

* ``max_num_batched_tokens``: the tokens one engine step may schedule.  vLLM's ``LLM`` class
  picks 16384 on H100/H200-class GPUs but the ``EngineArgs`` path we build engines with falls back
  to 2048, which makes every long prompt prefill in many small chunks.  Default per device:
  16384 on GPU (chunked prefill), and on the CPU build at least ``max_model_len`` (prefill is
  unchunked there: per-request seeds crash on chunked CPU prefill).
* ``engine_core``: ``inproc`` runs vLLM's engine core in the actor's process (needed on the CPU
  build: a spawned core re-imports the Ray worker's ``__main__`` and fails); ``mp`` runs it in a
  child process so scheduling and detokenizing overlap the model's forward pass (CUDA);
  ``auto``: ``mp`` on GPU, ``inproc`` on CPU.
* ``determinism``: see :mod:`pipeline.engine.determinism`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.engine.determinism import effective
from pipeline.engine.determinism import engine_env as determinism_env

GPU_BATCHED_TOKENS = 16384  # vLLM's own offline default on >= 70 GiB GPUs (LLM class)
CPU_MIN_BATCHED_TOKENS = 2048

CORES = ("auto", "inproc", "mp")


def batched_tokens(model_cfg, cpu: bool) -> int:
    """``max_num_batched_tokens`` for this model on this device (module docstring)."""
    want = getattr(model_cfg, "max_num_batched_tokens", None)
    if cpu:
        # Unchunked prefill: a step must hold a whole prompt.
        return max(int(model_cfg.max_model_len), int(want or CPU_MIN_BATCHED_TOKENS))
    return int(want or GPU_BATCHED_TOKENS)


def engine_core(model_cfg, cpu: bool) -> str:
    """``inproc`` or ``mp`` (``mp`` is never used on the CPU build: see the module docstring)."""
    core = getattr(model_cfg, "engine_core", "auto") or "auto"
    if cpu or core == "inproc":
        return "inproc"
    return "mp"


@dataclass(frozen=True)
class Runtime:
    """What an engine process sets before vLLM builds the engine, and what it reports."""

    core: str
    determinism: str
    env: dict = field(default_factory=dict)


def runtime_env(model_cfg, cpu: bool) -> Runtime:
    core = engine_core(model_cfg, cpu)
    det = effective(getattr(model_cfg, "determinism", "auto"), "cpu" if cpu else "cuda")
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "1" if core == "mp" else "0", **determinism_env(det, cpu)}
    return Runtime(core, det, env)
