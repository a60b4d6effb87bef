"""Where rows do not depend on batching, and what a run may claim about it.

Two settings (``determinism`` in the run config, copied to every model):

* ``exact``: a row does not depend on what it was batched with, on arrival order or on
  ``stream.*``.  On the CPU build this holds as built: every sampled request has its own seed
  and prefill is unchunked (tested byte for byte).  On GPU it turns on vLLM's batch-invariant
  mode (``VLLM_BATCH_INVARIANT=1``: batch-invariant matmul, reduction and attention kernels),
  which vLLM documents as markedly slower than the default kernels; its cost on our models is
  what ``make gpu-check`` measures (unmeasured here: no GPU).
* ``batch_dependent`` (the GPU default): the fast kernels.  Chunked prefill and batch-size
  dependent kernel choices make tokens depend on what is batched together, so rows may change
  between runs of the same config; artifact hashes still name the config, not the rows.

``auto`` resolves to ``exact`` on CPU and ``batch_dependent`` on GPU.
"""

from __future__ import annotations

SETTINGS = ("auto", "exact", "batch_dependent")

CLAIMS = {
    "exact": "rows do not depend on batching, arrival order or stream settings",
    "batch_dependent": (
        "rows may change with batching and arrival order (GPU kernels and chunked prefill "
        "depend on the batch); an artifact's hash names its config, not its rows"
    ),
}


def effective(setting: str, device: str) -> str:
    """The setting an engine on ``device`` (``cpu`` or ``cuda:<model>``) runs with."""
    if setting in (None, "", "auto"):
        return "exact" if device == "cpu" else "batch_dependent"
    return setting


def engine_env(det: str, cpu: bool) -> dict[str, str]:
    """Environment for an engine process (the CPU build is exact without any switch)."""
    if cpu:
        return {}
    return {"VLLM_BATCH_INVARIANT": "1" if det == "exact" else "0"}


def claim(det: str) -> str:
    """The sentence a report states about reproducibility under ``det``."""
    return CLAIMS[det]


def run_determinism(cfg) -> dict:
    """Provenance block of a run: the configured setting, the device, and each model's effective one."""
    from pipeline.config.hashing import device_kind

    dev = device_kind()
    models = {m.name: effective(getattr(m, "determinism", "auto"), dev) for m in cfg.models.values()}
    values = set(models.values())
    overall = values.pop() if len(values) == 1 else "mixed"
    return {
        "setting": getattr(cfg, "determinism", "auto"),
        "device": dev,
        "effective": overall,
        "models": models,
        "claim": claim(overall) if overall in CLAIMS else "; ".join(f"{m}: {claim(d)}" for m, d in models.items()),
    }
