"""crosscot GPU kernel studies (Triton) with torch fallbacks: benchmark-only, on no production path.

Currently: fused token log-probabilities (``kernels.token_logprob``): the mean NLL of a
candidate's own tokens without materializing a float32 [N, V] log-softmax.  The pipeline
does not call it: candidates are scored inside vLLM (``prompt_logprobs`` with the prefix
cache, :meth:`pipeline.engine.vllm_engine.ModelEngine.score_ids`), which never hands logits
to our code.  Only its tests and ``crosscot bench kernel`` import it; it measures what a
scorer that owns the logits (e.g. a transformers-based evaluator) would gain.

Importing ``kernels`` is free: names are re-exported lazily (PEP 562), so neither torch
nor triton is imported until a function is actually looked up, and triton only when the
Triton path runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS = {
    "token_logprobs": "token_logprob",
    "token_logprobs_reference": "token_logprob",
    "token_logprobs_torch": "token_logprob",
    "token_logprobs_triton": "token_logprob",
    "token_logprobs_ragged": "token_logprob",
    "mean_nll_per_sequence": "token_logprob",
    "triton_available": "token_logprob",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers / IDEs only; never executed at runtime
    from .token_logprob import (  # noqa: F401
        mean_nll_per_sequence,
        token_logprobs,
        token_logprobs_ragged,
        token_logprobs_reference,
        token_logprobs_torch,
        token_logprobs_triton,
        triton_available,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
