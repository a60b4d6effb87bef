"""Torch paths of the token log-prob kernel: the reference that defines the semantics, and the chunked fallback.

* ``token_logprobs_reference`` -- plain torch (float32 log_softmax + gather); used by the tests
  and as the benchmark baseline.
* ``token_logprobs_torch`` -- same result over row chunks, so peak extra memory is bounded by
  ``chunk_bytes`` (the CPU / fallback path).

The input checks here are shared by every path so all backends fail the same way.
"""

from __future__ import annotations

import torch  # triton, by contrast, is imported lazily (only when the Triton path runs)

# Peak *extra* memory the chunked torch path uses: one float32 [rows, V] buffer per chunk.
# 64 MiB keeps CPU runs RAM friendly while still giving ~110 rows per chunk at V=152k,
# enough to amortize per-op overhead.
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024


def _check_inputs(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int | None, validate: bool) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(f"logits must be a 2-D [N, V] tensor, got shape {getattr(logits, 'shape', None)}")
    if not logits.dtype.is_floating_point:
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    if not isinstance(targets, torch.Tensor) or targets.dim() != 1:
        raise ValueError(f"targets must be a 1-D [N] tensor, got shape {getattr(targets, 'shape', None)}")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise TypeError(f"targets must be an integer tensor, got {targets.dtype}")
    n, v = logits.shape
    if targets.shape[0] != n:
        raise ValueError(f"targets has {targets.shape[0]} entries but logits has {n} rows")
    if targets.device != logits.device:
        raise ValueError(f"targets on {targets.device} but logits on {logits.device}")
    if ignore_index is not None and not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int or None, got {type(ignore_index).__name__}")
    if not validate or n == 0:
        return
    # One device->host sync on CUDA; an out-of-range target would otherwise be an
    # out-of-bounds read in the kernel (or a device-side assert in torch.gather).
    bad = (targets < 0) | (targets >= v)
    if ignore_index is not None:
        bad &= targets != ignore_index
    if bool(bad.any()):
        idx = int(bad.nonzero()[0, 0])
        allowed = f"[0, {v})" + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
        raise ValueError(
            f"target out of range: targets[{idx}] = {int(targets[idx])}, vocabulary size V = {v}; "
            f"allowed values are {allowed} ({int(bad.sum())} bad entries in total)"
        )


def _safe_targets(targets: torch.Tensor, ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """int64 targets with ignored entries replaced by 0 (so gathers stay in bounds) + keep mask."""
    t = targets.to(torch.int64)
    if ignore_index is None:
        return t, None
    keep = t != ignore_index
    return torch.where(keep, t, torch.zeros_like(t)), keep


def token_logprobs_reference(
    logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int | None = None
) -> torch.Tensor:
    """Reference: ``log_softmax(logits.float(), -1)`` gathered at ``targets``; [N] float32.

    Deliberately the naive formulation (materializes the full [N, V] float32 log-softmax):
    it is the semantic definition the fused paths are tested against and the benchmark
    baseline. Entries equal to ``ignore_index`` give 0.0. Out-of-range targets raise.
    """
    _check_inputs(logits, targets, ignore_index, validate=True)
    safe, keep = _safe_targets(targets, ignore_index)
    out = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe[:, None]).squeeze(-1)
    if keep is not None:
        out = torch.where(keep, out, torch.zeros_like(out))
    return out


def token_logprobs_torch(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int | None = None,
    return_lse: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    validate: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Row-chunked torch implementation: peak extra memory ~ ``chunk_bytes`` (one float32
    chunk of rows) plus O(N), instead of the reference's two full [N, V] float32 tensors.

    Same arithmetic as the kernel: ``(x[t] - max) - log(sum(exp(x - max)))``. Subtracting the
    max from the target logit first (rather than ``x[t] - lse``) keeps full relative precision
    when logits are large (|x| ~ 1e4), matching torch's log_softmax.
    """
    _check_inputs(logits, targets, ignore_index, validate)
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    n, v = logits.shape
    out = torch.empty(n, dtype=torch.float32, device=logits.device)
    lse = torch.empty(n, dtype=torch.float32, device=logits.device) if return_lse else None
    safe, keep = _safe_targets(targets, ignore_index)
    rows = max(1, min(n, chunk_bytes // max(1, 4 * v)))
    # One float32 work buffer reused by every chunk: allocating a fresh one per chunk would
    # page-fault a new mmap'd region each time (large CPU allocations bypass the heap).
    buf = torch.empty(rows, v, dtype=torch.float32, device=logits.device) if n else None
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        chunk = logits[lo:hi]
        # gather / amax pick existing elements, so doing them in the input dtype is exact.
        tgt = chunk.gather(-1, safe[lo:hi, None]).squeeze(-1).float()
        m = chunk.amax(dim=-1, keepdim=True).float()
        # All -inf row: use 0 as the shift so exp() sees -inf - 0 (-> 0) instead of NaN;
        # the row then gets lse = -inf and output NaN, like log_softmax.
        m = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
        # Upcast into the reused buffer, then work in place (mixed-dtype `sub(out=)` would
        # allocate a hidden float32 temporary of the chunk's size).
        e = buf[: hi - lo]
        e.copy_(chunk)
        log_s = e.sub_(m).exp_().sum(dim=-1).log_()
        m = m.squeeze(-1)
        out[lo:hi] = (tgt - m) - log_s
        if lse is not None:
            lse[lo:hi] = m + log_s
    del buf
    if keep is not None:
        out = torch.where(keep, out, torch.zeros_like(out))
    return (out, lse) if return_lse else out
