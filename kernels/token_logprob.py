"""Fused token log-probabilities: ``log_softmax(logits)[i, targets[i]]`` without the [N, V] float32 copy.

Why this exists: scoring a candidate (mean NLL of its own tokens given its context)
only needs one number per token, but the obvious torch code,
``logits.float().log_softmax(-1).gather(-1, targets[:, None])``, materializes one or two
full float32 [N, V] tensors. With a ~150k vocabulary that is ~600 KB per token, i.e.
gigabytes for a few thousand tokens, which is what limits batch size when scoring.

Contents
--------
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

from __future__ import annotations

import os
from typing import Literal

import torch  # triton, by contrast, is imported lazily (only when the Triton path runs)

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

Backend = Literal["auto", "triton", "torch"]
_BACKENDS = ("auto", "triton", "torch")

# Peak *extra* memory the chunked torch path uses: one float32 [rows, V] buffer per chunk.
# 64 MiB keeps CPU runs RAM friendly while still giving ~110 rows per chunk at V=152k,
# enough to amortize per-op overhead.
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024

_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


# --------------------------------------------------------------------------------------
# Validation helpers (shared by all paths so every backend fails the same way)
# --------------------------------------------------------------------------------------


def _check_inputs(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int | None, validate: bool
) -> None:
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


# --------------------------------------------------------------------------------------
# Torch paths
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Triton path
# --------------------------------------------------------------------------------------

_KERNEL_CACHE: dict[bool, object] = {}


def _interpret_mode() -> bool:
    """Whether triton.jit would build an interpreted kernel right now (read at call time)."""
    try:
        from triton import knobs  # triton >= 3.4: same parsing triton.jit itself uses

        return bool(knobs.runtime.interpret)
    except Exception:  # older triton / no triton: plain env parsing
        return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def triton_available() -> bool:
    """True if triton can be imported (says nothing about a GPU being present)."""
    try:
        import triton  # noqa: F401
    except Exception:  # pragma: no cover - depends on the environment
        return False
    return True


def _get_kernel():
    """Build (once per interpret mode) the jitted kernel.

    Built lazily because (a) importing this module must not import triton, and (b)
    ``triton.jit`` decides at decoration time whether to return an interpreted function,
    based on TRITON_INTERPRET -- caching per mode keeps tests that flip the variable honest.
    """
    interpret = _interpret_mode()
    kernel = _KERNEL_CACHE.get(interpret)
    if kernel is not None:
        return kernel

    import triton
    import triton.language as tl

    if interpret and not _stdlib_interpreted(tl):
        # tl.max / tl.sum are themselves @triton.jit functions, decorated when triton was first
        # imported; if that happened without TRITON_INTERPRET they are GPU-only and the
        # interpreter dies with an obscure "outside of the scope of a kernel" error.
        raise RuntimeError(
            "TRITON_INTERPRET=1 was set after triton was imported: triton's standard library was "
            "built for the GPU. Set TRITON_INTERPRET=1 before the first `import triton` (e.g. in "
            "the environment of the process)."
        )

    @triton.jit
    def _token_logprob_fwd(
        logits_ptr,  # [N, V] fp32/bf16/fp16, unit column stride, row stride = stride_row
        targets_ptr,  # [N] int64, contiguous
        out_ptr,  # [N] float32
        lse_ptr,  # [N] float32 (only written when WRITE_LSE)
        V,
        stride_row,
        ignore_index,
        BLOCK_V: tl.constexpr,
        WRITE_LSE: tl.constexpr,
    ):
        # int64 row offset: N * V exceeds 2**31 for a few thousand tokens at V ~ 150k.
        row = tl.program_id(0).to(tl.int64)
        row_ptr = logits_ptr + row * stride_row
        cols = tl.arange(0, BLOCK_V)

        # Online log-sum-exp: running max m and running sum s = sum(exp(x - m)), rescaled
        # whenever the max grows. One exp per element; the per-chunk max/sum reductions are
        # amortized over BLOCK_V elements.
        m = float("-inf")
        s = 0.0
        for start in range(0, V, BLOCK_V):
            offs = start + cols
            mask = offs < V
            # Load with a finite `other` and apply -inf after the fp32 cast: the interpreter
            # stores bf16 as raw uint16 bits, so a -inf `other` is not reliable there.
            x = tl.load(row_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            x = tl.where(mask, x, float("-inf"))
            m_new = tl.maximum(m, tl.max(x, axis=0))
            # While everything seen so far is -inf, shift by 0 instead of -inf so that
            # exp(-inf - (-inf)) = NaN never happens; the contributions are exactly 0.
            shift = tl.where(m_new == float("-inf"), 0.0, m_new)
            s = s * tl.exp(m - shift) + tl.sum(tl.exp(x - shift), axis=0)
            m = m_new

        shift = tl.where(m == float("-inf"), 0.0, m)
        log_s = tl.log(s)

        tgt = tl.load(targets_ptr + row)
        keep = tgt != ignore_index
        # Ignored rows read column 0 (always in bounds) and are zeroed below.
        safe_tgt = tl.where(keep, tgt, 0)
        tgt_logit = tl.load(row_ptr + safe_tgt).to(tl.float32)
        # (x[t] - max) - log(s): exact-ish difference first, as torch's log_softmax does.
        logprob = (tgt_logit - shift) - log_s
        logprob = tl.where(keep, logprob, 0.0)
        tl.store(out_ptr + row, logprob)
        if WRITE_LSE:
            tl.store(lse_ptr + row, shift + log_s)

    _KERNEL_CACHE[interpret] = _token_logprob_fwd
    return _token_logprob_fwd


def _stdlib_interpreted(tl) -> bool:
    """True if triton's jit'd standard library (tl.max) was built for the interpreter."""
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except Exception:  # pragma: no cover - layout of other triton versions
        return True
    return isinstance(getattr(tl, "max", None), InterpretedFunction)


def _launch_config(v: int, interpret: bool, block_v: int | None) -> tuple[int, int]:
    """(BLOCK_V, num_warps). GPU: 4096-wide chunks (16 B-vector loads for 8 warps of 32
    lanes); smaller vocabularies use one chunk of next_pow2(V). The interpreter is numpy:
    fewer, larger chunks are much faster there."""
    if block_v is None:
        cap = 16384 if interpret else 4096
        block_v = min(cap, max(16, 1 << (max(1, v) - 1).bit_length()))
    if block_v <= 0 or block_v & (block_v - 1):
        raise ValueError(f"block_v must be a positive power of two, got {block_v}")
    num_warps = 8 if block_v >= 2048 else 4 if block_v >= 512 else 2 if block_v >= 128 else 1
    return block_v, num_warps


def token_logprobs_triton(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int | None = None,
    return_lse: bool = False,
    block_v: int | None = None,
    validate: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Fused Triton path. Needs CUDA tensors, or CPU tensors with TRITON_INTERPRET=1 set
    *before triton was first imported* (interpreter = correctness testing only, slow).

    ``validate=False`` skips the target range check (saves one host sync); an out-of-range
    target is then undefined behaviour (out-of-bounds read).
    """
    _check_inputs(logits, targets, ignore_index, validate)
    if logits.dtype not in _TRITON_DTYPES:
        raise TypeError(f"triton backend supports {_TRITON_DTYPES}, got {logits.dtype}; use backend='torch'")
    if not triton_available():
        raise RuntimeError("backend='triton' requested but triton is not importable; use backend='torch'")
    interpret = _interpret_mode()
    if not logits.is_cuda and not interpret:
        raise RuntimeError(
            "triton backend needs CUDA tensors (or TRITON_INTERPRET=1 set before importing triton, "
            f"for CPU testing); got logits on {logits.device}"
        )
    n, v = logits.shape
    out = torch.empty(n, dtype=torch.float32, device=logits.device)
    lse = torch.empty(n if return_lse else 1, dtype=torch.float32, device=logits.device)
    if n == 0:
        return (out, lse[:0]) if return_lse else out
    if v == 0:  # only reachable with validate=False; every target is invalid anyway
        raise ValueError("vocabulary size V must be >= 1")
    if logits.stride(-1) != 1:
        # The kernel assumes unit column stride (coalesced, vectorized loads). A row stride
        # is fine (slices of a larger buffer stay zero-copy); transposed layouts are rare.
        logits = logits.contiguous()
    # Sentinel for "no ignore_index": validated targets are >= 0, so -1 never matches.
    ign = -1 if ignore_index is None else int(ignore_index)
    tgt = targets.to(torch.int64).contiguous()
    block, num_warps = _launch_config(v, interpret, block_v)
    kernel = _get_kernel()
    device_ctx = torch.cuda.device(logits.device) if logits.is_cuda else _nullcontext()
    with device_ctx:
        kernel[(n,)](
            logits, tgt, out, lse, v, logits.stride(0), ign,
            BLOCK_V=block, WRITE_LSE=return_lse, num_warps=num_warps,
        )
    return (out, lse) if return_lse else out


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# --------------------------------------------------------------------------------------
# Dispatcher and ragged API
# --------------------------------------------------------------------------------------


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
