"""Fused token log-probabilities, the dispatcher: pick the Triton or the torch path, and the ragged (packed sequences) API.

``token_logprobs`` (``backend`` in {"auto", "triton", "torch"}) computes
``log_softmax(logits)[i, targets[i]]`` without the [N, V] float32 copy;
``token_logprobs_ragged`` / ``mean_nll_per_sequence`` take packed variable-length
sequences described by ``cu_seqlens`` (flash-attn convention).  Semantics shared by every
path are documented in :mod:`kernels.token_logprob`.
"""

from __future__ import annotations

from typing import Literal

import torch  # triton, by contrast, is imported lazily (only when the Triton path runs)

from kernels.token_logprob.reference import token_logprobs_torch
from kernels.token_logprob.triton_kernel import (
    _TRITON_DTYPES,
    token_logprobs_triton,
    triton_available,
)

Backend = Literal["auto", "triton", "torch"]


_BACKENDS = ("auto", "triton", "torch")


def _resolve_backend(logits: torch.Tensor, backend: str) -> str:
    if backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {_BACKENDS}")
    if backend == "auto":
        # The interpreter is never chosen automatically: it is a testing tool, orders of
        # magnitude slower than torch on CPU.
        on_gpu = isinstance(logits, torch.Tensor) and logits.is_cuda and logits.dtype in _TRITON_DTYPES
        if on_gpu and triton_available():
            return "triton"
        return "torch"
    return backend


def token_logprobs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    backend: Backend = "auto",
    ignore_index: int | None = None,
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``log_softmax(logits.float())[i, targets[i]]`` as [N] float32 (plus lse if asked).

    backend="auto": Triton for CUDA fp32/bf16/fp16 tensors, chunked torch otherwise.
    backend="triton": Triton (CUDA, or CPU under TRITON_INTERPRET=1). backend="torch":
    chunked torch. See the module docstring for ignore_index / NaN semantics.
    """
    chosen = _resolve_backend(logits, backend)
    if chosen == "triton":
        return token_logprobs_triton(logits, targets, ignore_index=ignore_index, return_lse=return_lse)
    return token_logprobs_torch(logits, targets, ignore_index=ignore_index, return_lse=return_lse)


def _check_cu_seqlens(cu_seqlens: torch.Tensor, n: int) -> list[int]:
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
        raise ValueError("cu_seqlens must be a non-empty 1-D tensor [num_seqs + 1]")
    if cu_seqlens.dtype.is_floating_point or cu_seqlens.dtype == torch.bool:
        raise TypeError(f"cu_seqlens must be an integer tensor, got {cu_seqlens.dtype}")
    cu = [int(c) for c in cu_seqlens.tolist()]  # small; one sync
    if cu[0] != 0 or cu[-1] != n:
        raise ValueError(f"cu_seqlens must start at 0 and end at N={n}, got {cu[0]} ... {cu[-1]}")
    if any(b < a for a, b in zip(cu, cu[1:])):
        raise ValueError("cu_seqlens must be non-decreasing")
    return cu


def token_logprobs_ragged(
    logits: torch.Tensor,
    targets: torch.Tensor,
    cu_seqlens: torch.Tensor,
    *,
    backend: Backend = "auto",
    ignore_index: int | None = None,
) -> list[torch.Tensor]:
    """Per-sequence token log-probs for packed sequences.

    ``logits`` [N, V] / ``targets`` [N] hold all sequences back to back; sequence j is rows
    ``cu_seqlens[j]:cu_seqlens[j+1]``. Returns ``num_seqs`` float32 tensors (views into one
    packed result; empty sequences give empty tensors). One kernel launch for all sequences.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError("logits must be a 2-D [N, V] tensor")
    cu = _check_cu_seqlens(cu_seqlens, logits.shape[0])
    packed = token_logprobs(logits, targets, backend=backend, ignore_index=ignore_index)
    return list(torch.split(packed, [b - a for a, b in zip(cu, cu[1:])]))


def mean_nll_per_sequence(
    logits: torch.Tensor,
    targets: torch.Tensor,
    cu_seqlens: torch.Tensor,
    *,
    backend: Backend = "auto",
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Mean negative log-likelihood of each sequence's scored tokens: [num_seqs] float32.

    This is the ensemble's candidate score. To score only a candidate's own tokens given
    its context, pack [context; candidate], and set the targets of context positions to
    ``ignore_index``: those tokens are excluded from both the sum and the count. A sequence
    with no scored tokens (empty, or all ignored) gets NaN (0/0) -- callers must not rank it.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError("logits must be a 2-D [N, V] tensor")
    cu = _check_cu_seqlens(cu_seqlens, logits.shape[0])
    lp = token_logprobs(logits, targets, backend=backend, ignore_index=ignore_index)
    if ignore_index is None:
        keep = torch.ones_like(lp)
    else:
        keep = (targets != ignore_index).to(lp.dtype)
    # Per-segment sums with segment_reduce (one pass, no atomics -> deterministic on CUDA).
    # Not a prefix-sum difference: a single -inf/NaN token would poison every later sequence.
    lengths = torch.as_tensor([b - a for a, b in zip(cu, cu[1:])], dtype=torch.int64, device=lp.device)
    if lengths.numel() == 0:
        return torch.empty(0, dtype=torch.float32, device=lp.device)
    sums = torch.segment_reduce(-lp.double(), "sum", lengths=lengths, unsafe=True)
    counts = torch.segment_reduce(keep.double(), "sum", lengths=lengths, unsafe=True)
    return (sums / counts).to(torch.float32)
