"""The Triton path of the token log-prob kernel: one program per row, online log-sum-exp over the vocabulary.

BLOCK_V chunks with float32 accumulation, plus the target-logit gather.  Runs on CUDA, or on
CPU under ``TRITON_INTERPRET=1`` (testing only).  Triton is imported lazily: only when the
kernel is first built.
"""

from __future__ import annotations

import os

import torch  # triton, by contrast, is imported lazily (only when the Triton path runs)

from kernels.token_logprob.reference import _check_inputs

_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


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
            logits,
            tgt,
            out,
            lse,
            v,
            logits.stride(0),
            ign,
            BLOCK_V=block,
            WRITE_LSE=return_lse,
            num_warps=num_warps,
        )
    return (out, lse) if return_lse else out


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
