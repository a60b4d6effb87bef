"""Tests for kernels.token_logprob: Triton kernel and chunked torch path vs the torch reference.

Where the Triton kernel runs:
* with CUDA: on the GPU (the real compiled kernel; TRITON_INTERPRET is left alone);
* without CUDA: on CPU under the Triton interpreter. TRITON_INTERPRET must be set before
  triton is first imported (triton's own tl.max / tl.sum are jit functions decorated at
  import), so this module sets it at import time when no GPU is present -- harmless
  there, since nothing can run compiled Triton kernels without a GPU anyway. If triton was
  already imported by something else in this pytest process, the in-process Triton tests
  skip and ``test_triton_suite_in_fresh_process`` re-runs this file in a subprocess with
  the variable set from the start, so the kernel is still exercised.

The interpreter is numpy-backed: the large-vocabulary cases use N <= 2 rows.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch  # does not import triton

CUDA = torch.cuda.is_available()
if not CUDA and "triton" not in sys.modules:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import kernels.token_logprob.triton_kernel as tlp  # noqa: E402
from kernels.token_logprob import (  # noqa: E402
    mean_nll_per_sequence,
    token_logprobs,
    token_logprobs_ragged,
    token_logprobs_reference,
    token_logprobs_torch,
    token_logprobs_triton,
)

DEVICE = "cuda" if CUDA else "cpu"
REPO_ROOT = Path(__file__).resolve().parents[3]
LARGE_V = 151_936  # Qwen2-family vocabulary size

# fp32 inputs: both sides accumulate in fp32 and differ only in summation order.
# Half inputs hold the same (rounded) values on both sides, so the gap is the same kind;
# slightly looser bounds leave room for the larger magnitudes used with them.
TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.bfloat16: dict(rtol=2e-5, atol=2e-5),
    torch.float16: dict(rtol=2e-5, atol=2e-5),
}
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _interpreter_usable_in_process() -> bool:
    import triton.language as tl

    return tlp._stdlib_interpreted(tl)


@pytest.fixture
def triton_env(monkeypatch):
    """Make the Triton path runnable here: GPU if present, else the interpreter."""
    pytest.importorskip("triton")
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        if not _interpreter_usable_in_process():
            pytest.skip("triton was imported before TRITON_INTERPRET=1; see test_triton_suite_in_fresh_process")
    yield


def test_triton_suite_in_fresh_process():
    pytest.importorskip("triton")
    if CUDA or _interpreter_usable_in_process():
        pytest.skip("Triton tests already ran in this process")
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--import-mode=importlib",
        __file__,
        "-k",
        "not fresh_process",
        "-rs",
    ]
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # the point of the subprocess: the Triton tests must have run there, not skipped again
    assert "passed" in proc.stdout and "test_triton_suite_in_fresh_process" not in proc.stdout, proc.stdout[-4000:]


def _logits(n: int, v: int, dtype: torch.dtype, scale: float = 3.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, v, generator=g) * scale).to(dtype).to(DEVICE)


def _targets(n: int, v: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, v, (n,), generator=g)
    if n >= 2:  # always hit both ends of the vocabulary (first and last, masked, chunk)
        t[0], t[-1] = 0, v - 1
    return t.to(DEVICE)


# --------------------------------------------------------------------------------------
# Reference sanity: the reference itself must be right, everything else is compared to it
# --------------------------------------------------------------------------------------


def test_reference_matches_float64_manual():
    x = _logits(5, 11, torch.float32)
    t = _targets(5, 11)
    x64 = x.double().cpu()
    manual = x64[torch.arange(5), t.cpu()] - torch.logsumexp(x64, -1)
    out = token_logprobs_reference(x, t)
    assert out.dtype == torch.float32 and out.shape == (5,)
    torch.testing.assert_close(out.cpu().double(), manual, rtol=1e-6, atol=1e-6)
    assert (out <= 0).all()


# --------------------------------------------------------------------------------------
# Triton kernel vs reference
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("v", [1, 7, 1000])
@pytest.mark.parametrize("n", [1, 3, 17])
def test_triton_matches_reference(triton_env, n, v, dtype):
    x = _logits(n, v, dtype)
    t = _targets(n, v)
    ref = token_logprobs_reference(x, t)
    out = token_logprobs_triton(x, t)
    assert out.dtype == torch.float32 and out.shape == (n,) and out.device == x.device
    torch.testing.assert_close(out, ref, **TOL[dtype])
    if v == 1:  # a one-word vocabulary is certain: log p = 0 exactly
        assert (out == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("block_v", [None, 4096])  # None: default; 4096: the GPU chunk (37+1 iterations)
def test_triton_large_vocab(triton_env, dtype, block_v):
    n = 2
    x = _logits(n, LARGE_V, dtype, scale=4.0)
    t = _targets(n, LARGE_V)
    ref, ref_lse = token_logprobs_reference(x, t), torch.logsumexp(x.float(), -1)
    out, lse = token_logprobs_triton(x, t, block_v=block_v, return_lse=True)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    torch.testing.assert_close(lse, ref_lse, **TOL[dtype])


def test_triton_vocab_not_multiple_of_block(triton_env):
    # V = 3 * 64 + 5: full chunks plus a 5-wide masked tail; the max sits in the tail so a
    # broken tail mask (or a tail read as 0 instead of -inf) changes the result.
    v = 3 * 64 + 5
    x = _logits(4, v, torch.float32)
    x[:, -1] = 20.0
    t = torch.tensor([v - 1, v - 2, 0, 64], device=DEVICE)
    torch.testing.assert_close(
        token_logprobs_triton(x, t, block_v=64), token_logprobs_reference(x, t), rtol=1e-5, atol=1e-5
    )
    # All-negative logits: padded lanes loaded as 0 instead of -inf would inflate the lse.
    y = -10.0 - _logits(4, v, torch.float32).abs()
    torch.testing.assert_close(
        token_logprobs_triton(y, t, block_v=64), token_logprobs_reference(y, t), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_triton_strided_rows(triton_env, dtype):
    n, v = 6, 1000
    big = _logits(2 * n, v + 37, dtype)
    x = big[::2, 5 : 5 + v]  # row stride 2*(v+37), offset start, unit column stride
    assert not x.is_contiguous() and x.stride(-1) == 1
    t = _targets(n, v)
    torch.testing.assert_close(token_logprobs_triton(x, t), token_logprobs_reference(x, t), **TOL[dtype])
    # Non-unit column stride (transposed storage) is accepted too (copied to contiguous).
    xt = _logits(v, n, dtype).t()
    assert xt.stride(-1) != 1
    torch.testing.assert_close(token_logprobs_triton(xt, t), token_logprobs_reference(xt, t), **TOL[dtype])


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_triton_extreme_logits(triton_env, dtype):
    v = 300
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 2, (6, v), generator=g).float() * 2e4 - 1e4  # entries are +-1e4 (rounded in bf16)
    x[1] = -1e4
    x[1, 7] = 1e4  # a single dominant logit: log p = 0 at 7, -2e4 elsewhere
    x[2, :] = float("-inf")
    x[2, 3] = 5.0  # only one finite entry: log p = 0 there, -inf elsewhere
    x[3, ::2] = float("-inf")  # half the vocabulary impossible
    x[4, :] = float("-inf")  # whole row -inf: NaN, as torch's log_softmax
    x[5] = torch.linspace(-1e4, 1e4, v)
    x = x.to(dtype).to(DEVICE)
    t = torch.tensor([0, 7, 3, 2, 1, v - 1], device=DEVICE)
    ref = token_logprobs_reference(x, t)
    out = token_logprobs_triton(x, t)
    torch.testing.assert_close(out, ref, equal_nan=True, **TOL[dtype])
    assert out[1].item() == 0.0 and out[2].item() == 0.0
    assert out[3].item() == -math.inf  # target logit is -inf
    assert math.isnan(out[4].item())
    t2 = torch.tensor([0, 8, 4, 3, 1, 0], device=DEVICE)
    out2 = token_logprobs_triton(x, t2)
    torch.testing.assert_close(out2, token_logprobs_reference(x, t2), equal_nan=True, **TOL[dtype])
    # gap between the two (rounded) extreme values: -2e4 in fp32/fp16, -19968 in bf16
    gap = (x[1, 8].float() - x[1, 7].float()).item()
    assert gap <= -19968 and out2[1].item() == pytest.approx(gap, rel=1e-6) and out2[2].item() == -math.inf
    # Several chunks whose leading ones are entirely -inf: the running max starts at -inf,
    # which must not turn the running sum into NaN (exp(-inf - -inf)).
    y = _logits(3, v, dtype)
    y[:, :200] = float("-inf")
    y[1, 250:] = float("-inf")
    t3 = torch.tensor([0, 210, 299], device=DEVICE)
    out3 = token_logprobs_triton(y, t3, block_v=64)
    assert out3[0].item() == -math.inf and torch.isfinite(out3[1:]).all()
    torch.testing.assert_close(out3, token_logprobs_reference(y, t3), **TOL[dtype])


def test_triton_ignore_index_and_lse(triton_env):
    n, v = 9, 1000
    x = _logits(n, v, torch.bfloat16)
    t = _targets(n, v)
    t[2] = t[5] = -100
    out, lse = token_logprobs_triton(x, t, ignore_index=-100, return_lse=True)
    ref = token_logprobs_reference(x, t, ignore_index=-100)
    assert out[2].item() == 0.0 and out[5].item() == 0.0 and ref[2].item() == 0.0
    torch.testing.assert_close(out, ref, **TOL[torch.bfloat16])
    # lse is computed for every row, ignored ones included
    torch.testing.assert_close(lse, torch.logsumexp(x.float(), -1), **TOL[torch.bfloat16])
    # without ignore_index, -100 is just an out-of-range target
    with pytest.raises(ValueError, match="out of range"):
        token_logprobs_triton(x, t)


def test_triton_empty_and_int32_targets(triton_env):
    x = _logits(0, 50, torch.float32)
    t = torch.zeros(0, dtype=torch.long, device=DEVICE)
    out, lse = token_logprobs_triton(x, t, return_lse=True)
    assert out.shape == (0,) and lse.shape == (0,) and out.dtype == torch.float32
    x = _logits(3, 50, torch.float32)
    t32 = _targets(3, 50).to(torch.int32)
    torch.testing.assert_close(
        token_logprobs_triton(x, t32), token_logprobs_reference(x, t32.long()), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("bad", [-1, 50, 10**6])
def test_triton_bad_target_raises(triton_env, bad):
    x = _logits(3, 50, torch.float32)
    t = torch.tensor([0, bad, 1], device=DEVICE)
    with pytest.raises(ValueError, match=r"targets\[1\] = .*V = 50"):
        token_logprobs_triton(x, t)


def test_triton_rejects_bad_block_and_dtype(triton_env):
    x = _logits(2, 10, torch.float32)
    t = _targets(2, 10)
    with pytest.raises(ValueError, match="power of two"):
        token_logprobs_triton(x, t, block_v=100)
    with pytest.raises(TypeError, match="triton backend supports"):
        token_logprobs_triton(x.double(), t)


@pytest.mark.skipif(CUDA, reason="only meaningful without a GPU")
def test_triton_without_interpreter_on_cpu_is_a_clear_error(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, t = _logits(2, 10, torch.float32), _targets(2, 10)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        token_logprobs(x, t, backend="triton")


_AOT_SCRIPT = r"""
import triton
from triton.backends.compiler import GPUTarget
from kernels.token_logprob.triton_kernel import _get_kernel

sig = {"logits_ptr": "*bf16", "targets_ptr": "*i64", "out_ptr": "*fp32", "lse_ptr": "*fp32", "V": "i32",
       "stride_row": "i64", "ignore_index": "i32", "BLOCK_V": "constexpr", "WRITE_LSE": "constexpr"}
# pointers 16-byte aligned and stride divisible by 16, as the launcher specializes them at run time
attrs = {(i,): [["tt.divisibility", 16]] for i in range(6)}
src = triton.compiler.ASTSource(fn=_get_kernel(), signature=sig, constexprs={"BLOCK_V": 4096, "WRITE_LSE": True},
                                attrs=attrs)
c = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 8})
ptx = c.asm["ptx"]
assert c.asm.get("cubin"), "no cubin"
assert "ld.global.v4" in ptx, "logits loads are not vectorized"
print("AOT-OK")
"""


@pytest.mark.skipif(CUDA, reason="the GPU tests compile and run the real kernel")
def test_kernel_compiles_for_sm90_without_gpu(tmp_path):
    """The interpreter accepts code the compiler rejects; compile the real kernel (PTX +
    cubin for an H100/H200, via triton's bundled ptxas) in a clean subprocess."""
    triton = pytest.importorskip("triton")
    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("triton's bundled ptxas is missing")
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", _AOT_SCRIPT], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "AOT-OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


# --------------------------------------------------------------------------------------
# Chunked torch path
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES + [torch.float64], ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("chunk_rows", [1, 3, 1000])  # 1000 > N: a single chunk
def test_torch_chunked_matches_reference(dtype, chunk_rows):
    n, v = 17, 1000
    x = _logits(n, v, dtype)
    t = _targets(n, v)
    x_before = x.clone()
    out, lse = token_logprobs_torch(x, t, chunk_bytes=chunk_rows * v * 4, return_lse=True)
    assert torch.equal(x, x_before)  # the in-place exp must only touch private copies
    tol = TOL.get(dtype, TOL[torch.float32])
    torch.testing.assert_close(out, token_logprobs_reference(x, t), **tol)
    torch.testing.assert_close(lse, torch.logsumexp(x.float(), -1), **tol)


def test_torch_chunked_extreme_and_ignore():
    x = torch.full((4, 20), float("-inf"), device=DEVICE)
    x[0] = torch.linspace(-1e4, 1e4, 20)
    x[1, 4] = 3.0
    t = torch.tensor([19, 4, 0, -100], device=DEVICE)
    out = token_logprobs_torch(x, t, ignore_index=-100, chunk_bytes=2 * 20 * 4)
    ref = token_logprobs_reference(x, t, ignore_index=-100)
    torch.testing.assert_close(out, ref, equal_nan=True, rtol=1e-5, atol=1e-5)
    assert out[1].item() == 0.0 and math.isnan(out[2].item()) and out[3].item() == 0.0


def test_torch_large_vocab_chunked():
    x = _logits(5, LARGE_V, torch.bfloat16)
    t = _targets(5, LARGE_V)
    out = token_logprobs_torch(x, t, chunk_bytes=2 * LARGE_V * 4)  # 2 rows per chunk, ragged last
    torch.testing.assert_close(out, token_logprobs_reference(x, t), **TOL[torch.bfloat16])


# --------------------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------------------


def test_dispatcher_backends(triton_env):
    x = _logits(5, 100, torch.bfloat16)
    t = _targets(5, 100)
    ref = token_logprobs_reference(x, t)
    for backend in ("auto", "torch", "triton"):
        torch.testing.assert_close(token_logprobs(x, t, backend=backend), ref, **TOL[torch.bfloat16])
    out, lse = token_logprobs(x, t, backend="triton", return_lse=True)
    torch.testing.assert_close(lse, torch.logsumexp(x.float(), -1), **TOL[torch.bfloat16])
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        token_logprobs(x, t, backend="cuda")


@pytest.mark.skipif(CUDA, reason="checks the CPU routing")
def test_auto_on_cpu_never_uses_interpreter(triton_env, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("auto must not pick triton for CPU tensors")

    monkeypatch.setattr(tlp, "token_logprobs_triton", boom)
    x, t = _logits(3, 10, torch.float32), _targets(3, 10)
    torch.testing.assert_close(token_logprobs(x, t), token_logprobs_reference(x, t))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_dispatcher_input_errors(triton_env, backend):
    x = _logits(3, 10, torch.float32)
    with pytest.raises(ValueError, match="out of range"):
        token_logprobs(x, torch.tensor([0, 10, 1], device=DEVICE), backend=backend)
    with pytest.raises(ValueError, match="3 rows"):
        token_logprobs(x, torch.tensor([0, 1], device=DEVICE), backend=backend)
    with pytest.raises(ValueError, match="2-D"):
        token_logprobs(x[0], torch.tensor([0], device=DEVICE), backend=backend)
    with pytest.raises(TypeError, match="integer"):
        token_logprobs(x, torch.zeros(3, device=DEVICE), backend=backend)
    with pytest.raises(ValueError, match="out of range"):  # V = 0: no valid target exists
        token_logprobs(x[:, :0], torch.tensor([0, 0, 0], device=DEVICE), backend=backend)
    assert token_logprobs(x[:0], torch.zeros(0, dtype=torch.long, device=DEVICE), backend=backend).shape == (0,)


# --------------------------------------------------------------------------------------
# Ragged / mean-NLL API
# --------------------------------------------------------------------------------------


def _manual_mean_nll(x, t, cu, ignore_index=None):
    res = []
    for a, b in zip(cu[:-1], cu[1:]):
        xs, ts = x[a:b].double().cpu(), t[a:b].cpu()
        if ignore_index is not None:
            keep = ts != ignore_index
            xs, ts = xs[keep], ts[keep]
        if len(ts) == 0:
            res.append(float("nan"))
            continue
        lp = xs[torch.arange(len(ts)), ts] - torch.logsumexp(xs, -1)
        res.append(float(-lp.mean()))
    return torch.tensor(res, dtype=torch.float32)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_ragged_and_mean_nll(triton_env, backend):
    cu_list = [0, 3, 3, 10, 11, 17]  # includes an empty and a length-1 sequence
    n, v = cu_list[-1], 1000
    x = _logits(n, v, torch.float32)
    t = _targets(n, v)
    cu = torch.tensor(cu_list, dtype=torch.int32, device=DEVICE)

    pieces = token_logprobs_ragged(x, t, cu, backend=backend)
    assert [len(p) for p in pieces] == [3, 0, 7, 1, 6]
    for (a, b), p in zip(zip(cu_list[:-1], cu_list[1:]), pieces):
        torch.testing.assert_close(p, token_logprobs_reference(x[a:b], t[a:b]), rtol=1e-5, atol=1e-5)

    nll = mean_nll_per_sequence(x, t, cu, backend=backend)
    assert nll.shape == (5,) and nll.dtype == torch.float32
    expected = _manual_mean_nll(x, t, cu_list)
    torch.testing.assert_close(nll.cpu(), expected, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert math.isnan(nll[1].item()) and (nll[[0, 2, 3, 4]] > 0).all()

    # Score only each candidate's own tokens: mask a context prefix with ignore_index.
    tm = t.clone()
    tm[[0, 3, 4, 5, 10]] = -100  # sequence 3 ([10, 11)) becomes fully ignored -> NaN
    nll_m = mean_nll_per_sequence(x, tm, cu, backend=backend, ignore_index=-100)
    expected_m = _manual_mean_nll(x, tm, cu_list, ignore_index=-100)
    torch.testing.assert_close(nll_m.cpu(), expected_m, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert math.isnan(nll_m[3].item()) and not math.isnan(nll_m[2].item())
    assert nll_m[2].item() != pytest.approx(nll[2].item())  # the mask really changed the score


def test_mean_nll_isolates_nonfinite_sequences():
    # A -inf token log-prob in one sequence must not leak into its neighbours.
    x = _logits(6, 8, torch.float32)
    x[2, 5] = float("-inf")
    t = torch.tensor([1, 2, 5, 0, 1, 2], device=DEVICE)
    cu = torch.tensor([0, 2, 4, 6], device=DEVICE)
    nll = mean_nll_per_sequence(x, t, cu, backend="torch")
    assert nll[1].item() == math.inf
    torch.testing.assert_close(nll[[0, 2]].cpu(), _manual_mean_nll(x, t, [0, 2, 4, 6])[[0, 2]], rtol=1e-5, atol=1e-5)


def test_ragged_edge_cases_and_errors():
    x = _logits(0, 10, torch.float32)
    t = torch.zeros(0, dtype=torch.long, device=DEVICE)
    assert token_logprobs_ragged(x, t, torch.tensor([0])) == []
    assert mean_nll_per_sequence(x, t, torch.tensor([0])).shape == (0,)
    assert math.isnan(mean_nll_per_sequence(x, t, torch.tensor([0, 0])).item())
    x, t = _logits(4, 10, torch.float32), _targets(4, 10)
    with pytest.raises(ValueError, match="end at N=4"):
        mean_nll_per_sequence(x, t, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="start at 0"):
        token_logprobs_ragged(x, t, torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="non-decreasing"):
        mean_nll_per_sequence(x, t, torch.tensor([0, 3, 2, 4]))
    with pytest.raises(TypeError, match="integer"):
        mean_nll_per_sequence(x, t, torch.tensor([0.0, 4.0]))


# --------------------------------------------------------------------------------------
# Import hygiene
# --------------------------------------------------------------------------------------


def test_import_kernels_is_lazy():
    code = (
        "import sys, kernels\n"
        "assert 'triton' not in sys.modules and 'torch' not in sys.modules, 'eager import'\n"
        "f = kernels.token_logprobs\n"
        "assert 'torch' in sys.modules and 'triton' not in sys.modules, 'triton imported on lookup'\n"
        "assert 'token_logprobs' in dir(kernels)\n"
        "try:\n"
        "    kernels.nope\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('missing attribute did not raise')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
