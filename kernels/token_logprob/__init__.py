"""Fused token log-probabilities: ``log_softmax(logits)[i, targets[i]]`` without the [N, V] float32 copy.

Why this exists: scoring a candidate (mean NLL of its own tokens given its context)
only needs one number per token, but the obvious torch code,
``logits.float().log_softmax(-1).gather(-1, targets[:, None])``, materializes one or two
full float32 [N, V] tensors. With a ~150k vocabulary that is ~600 KB per token, i.e.
gigabytes for a few thousand tokens, which is what limits batch size when scoring.

Status: a benchmark-only study (see :mod:`kernels`): no pipeline stage calls it; its tests
check it against the reference and ``crosscot bench kernel`` measures it.

Contents (one module each)
--------------------------
* ``token_logprobs_reference`` -- plain torch reference (float32 log_softmax + gather).
  Defines the semantics; used by the tests and as the benchmark baseline.
* ``token_logprobs_torch`` -- same result, computed over row chunks so peak extra memory is
  bounded by ``chunk_bytes`` (the CPU / fallback path).
* ``token_logprobs_triton`` -- Triton kernel: one program per row, online log-sum-exp over
  the vocabulary in BLOCK_V chunks with float32 accumulation, plus the target-logit gather.
  Runs on CUDA, or on CPU under ``TRITON_INTERPRET=1`` (for testing only).
* ``token_logprobs`` -- dispatcher (``backend`` in {"auto", "triton", "torch"}).
* ``token_logprobs_ragged`` / ``mean_nll_per_sequence`` -- packed variable-length
  sequences described by ``cu_seqlens`` (flash-attn convention).

Semantics shared by every path
------------------------------
* ``logits``: [N, V] float tensor (fp32 / bf16 / fp16; the torch paths also take fp64,
  computed in float32). Rows may be strided (e.g. a slice of a larger buffer); a
  non-unit *column* stride is made contiguous first (Triton path only).
* ``targets``: [N] integer tensor with values in [0, V) -- anything else raises ValueError,
  except entries equal to ``ignore_index`` (when given), whose output is exactly 0.0
  (the ``F.cross_entropy(reduction="none")`` convention, so sums/means can mask them).
* Output: [N] float32 log-probabilities (<= 0). A row whose logits are all -inf yields NaN
  (as torch's log_softmax does); a target whose logit is -inf yields -inf; +inf / NaN
  logits yield NaN.
* ``return_lse=True`` additionally returns the per-row log-sum-exp [N] float32 (also
  computed for ignored rows).
* Positions are not shifted: row i must already be the logits that predict targets[i].
"""

from kernels.token_logprob.dispatch import (
    Backend,
    mean_nll_per_sequence,
    token_logprobs,
    token_logprobs_ragged,
)
from kernels.token_logprob.reference import (
    DEFAULT_CHUNK_BYTES,
    token_logprobs_reference,
    token_logprobs_torch,
)
from kernels.token_logprob.triton_kernel import token_logprobs_triton, triton_available

__all__ = [
    "Backend",
    "DEFAULT_CHUNK_BYTES",
    "token_logprobs_reference",
    "token_logprobs_torch",
    "token_logprobs_triton",
    "token_logprobs",
    "token_logprobs_ragged",
    "mean_nll_per_sequence",
    "triton_available",
]
