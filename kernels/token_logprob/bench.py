"""Benchmark: fused token log-probs vs ``log_softmax(logits.float()).gather(...)``.

Laid out like Triton's tutorial 02-fused-softmax.py: ``triton.testing.Benchmark`` configs
(sweep V at fixed N, and N at a ~150k vocabulary) and a ``perf_report``-decorated function
that runs one (N, V, provider) point. It is executed by a small runner here rather than
``Mark.run`` so that it needs neither pandas nor matplotlib and can also report peak memory.

What is measured, honestly per machine:
* GPU (torch.cuda.is_available()): providers "triton" (the fused kernel), "torch" (the
  log_softmax+gather reference) and "torch-chunked". Time: ``triton.testing.do_bench``
  (median, 20th/80th percentiles). Peak memory: ``torch.cuda.max_memory_allocated`` above
  what was allocated before the call (i.e. the *extra* memory the call needs).
* CPU: the Triton interpreter is not a speed measure, so providers are "torch" (reference)
  and "torch-chunked" (the CPU path of ``token_logprobs``). Time: wall clock, median of a
  few repeats after a warm-up. Peak memory: process peak-RSS growth during the call
  (Linux ``/proc/self/clear_refs`` resets VmHWM), reported as n/a where unsupported.
Ratios are baseline / candidate (baseline = "torch"; candidate = "triton" on GPU,
"torch-chunked" on CPU): > 1 means the candidate is faster / uses less memory.

Usage: ``python -m kernels.token_logprob.bench [--quick] [--out DIR] [--dtype bf16]``.
Writes ``token_logprob_bench.csv`` and ``token_logprob_bench.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from kernels.token_logprob import (
    token_logprobs_reference,
    token_logprobs_torch,
    token_logprobs_triton,
)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LARGE_V = 151_936


# --------------------------------------------------------------------------------------
# Benchmark configs (triton.testing.Benchmark when triton is importable)
# --------------------------------------------------------------------------------------


@dataclass
class _Benchmark:
    """Stand-in with triton.testing.Benchmark's fields, for machines without triton."""

    x_names: list
    x_vals: list
    line_arg: str
    line_vals: list
    line_names: list
    plot_name: str
    args: dict = field(default_factory=dict)
    xlabel: str = ""
    ylabel: str = ""
    styles: list | None = None


def _benchmark_cls():
    try:
        from triton.testing import Benchmark

        return Benchmark
    except Exception:
        return _Benchmark


def _perf_report(benchmarks):
    """triton.testing.perf_report if available; either way returns an object with .fn and
    .benchmarks, which is all the runner below uses."""
    try:
        from triton.testing import perf_report

        return perf_report(benchmarks)
    except Exception:

        class _Mark:
            def __init__(self, fn):
                self.fn, self.benchmarks = fn, benchmarks

        return _Mark


def make_benchmarks(on_gpu: bool, quick: bool, dtype_name: str) -> list:
    Benchmark = _benchmark_cls()
    if on_gpu:
        providers = ["triton", "torch", "torch-chunked"]
        names = ["Triton (fused)", "Torch log_softmax+gather", "Torch chunked"]
        n_fixed = 4096
        v_sweep = [32_000, 151_936] if quick else [1_000, 8_192, 32_000, 65_536, 128_256, 151_936]
        n_sweep = [512, 8192] if quick else [128, 512, 2_048, 8_192, 16_384]
    else:
        providers, names = ["torch", "torch-chunked"], ["Torch log_softmax+gather", "Torch chunked"]
        n_fixed = 128 if quick else 256
        v_sweep = [32_000, 151_936] if quick else [8_192, 32_000, 151_936]
        n_sweep = [64, 256] if quick else [64, 256, 1_024]
    common = dict(line_arg="provider", line_vals=providers, line_names=names, ylabel="ms")
    return [
        Benchmark(
            x_names=["N", "V"],
            x_vals=[(n_fixed, v) for v in v_sweep],
            plot_name=f"token-logprob-vs-V-N{n_fixed}-{dtype_name}",
            args={"dtype": dtype_name},
            xlabel="V",
            **common,
        ),
        Benchmark(
            x_names=["N", "V"],
            x_vals=[(n, LARGE_V) for n in n_sweep],
            plot_name=f"token-logprob-vs-N-V{LARGE_V}-{dtype_name}",
            args={"dtype": dtype_name},
            xlabel="N",
            **common,
        ),
    ]


# --------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------


def _provider_fn(provider: str) -> Callable:
    if provider == "triton":
        return lambda x, t: token_logprobs_triton(x, t, validate=False)
    if provider == "torch":
        return token_logprobs_reference
    if provider == "torch-chunked":
        return lambda x, t: token_logprobs_torch(x, t, validate=False)
    raise ValueError(f"unknown provider {provider!r}")


def _rss_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _cpu_peak_extra(fn: Callable[[], object]) -> int | None:
    """Peak RSS growth while fn runs (VmHWM reset via clear_refs); None if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    before = _rss_bytes("VmRSS")
    fn()
    peak = _rss_bytes("VmHWM")
    if before is None or peak is None:
        return None
    return max(0, peak - before)


def _gpu_peak_extra(fn: Callable[[], object]) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def _cpu_time_ms(fn: Callable[[], object], reps: int) -> tuple[float, float, float]:
    fn()  # warm-up (allocator, thread pool)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), max(times)


def run_point(N: int, V: int, provider: str, dtype: str, device: str, reps: int) -> dict:
    """One (N, V, provider) measurement: time (median/min/max ms), peak extra bytes, GB/s."""
    torch.manual_seed(0)
    x = torch.randn(N, V, device=device, dtype=DTYPES[dtype])
    t = torch.randint(0, V, (N,), device=device)
    fn = _provider_fn(provider)
    call = lambda: fn(x, t)  # noqa: E731
    if device == "cuda":
        import triton.testing

        peak = _gpu_peak_extra(call)
        ms, lo, hi = triton.testing.do_bench(call, quantiles=[0.5, 0.2, 0.8])
    else:
        peak = _cpu_peak_extra(call)
        ms, lo, hi = _cpu_time_ms(call, reps)
    gbps = x.numel() * x.element_size() / (ms * 1e-3) / 1e9  # logits read once: the floor
    return {"ms": ms, "ms_min": lo, "ms_max": hi, "peak_bytes": peak, "gbps": gbps, "out": fn(x, t)}


# --------------------------------------------------------------------------------------
# Runner and report
# --------------------------------------------------------------------------------------


def _fmt_mib(b: int | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "n/a"
    if b <= 0:
        return "inf" if a > 0 else "n/a"
    return f"{a / b:.2f}x"


def run(quick: bool, out_dir: Path | None, dtype: str, reps: int | None = None) -> list[dict]:
    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    reps = reps or (3 if quick else 5)
    benchmarks = make_benchmarks(on_gpu, quick, dtype)
    mark = _perf_report(benchmarks)(run_point)
    candidate = "triton" if on_gpu else "torch-chunked"
    baseline = "torch"
    if on_gpu:
        where = torch.cuda.get_device_name()
    else:
        where = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"# token_logprob benchmark on {where}; dtype={dtype}; baseline={baseline!r}, candidate={candidate!r}")
    if not on_gpu:
        print("# no GPU: comparing the torch reference with the chunked torch path (Triton needs a GPU)")

    rows: list[dict] = []
    for bench in mark.benchmarks:
        print(f"\n{bench.plot_name}:")
        for xv in bench.x_vals:
            x_args = dict(zip(bench.x_names, xv))
            res = {p: mark.fn(**x_args, provider=p, device=device, reps=reps, **bench.args) for p in bench.line_vals}
            ref = res[baseline]["out"]
            for p in bench.line_vals:
                r = res[p]
                err = (r["out"] - ref).abs().max().item() if ref.numel() else 0.0
                rows.append(
                    {
                        "sweep": bench.plot_name,
                        "device": device,
                        "dtype": dtype,
                        **x_args,
                        "provider": p,
                        "ms": round(r["ms"], 4),
                        "ms_min": round(r["ms_min"], 4),
                        "ms_max": round(r["ms_max"], 4),
                        "peak_mib": None if r["peak_bytes"] is None else round(r["peak_bytes"] / 2**20, 2),
                        "gbps": round(r["gbps"], 2),
                        "max_abs_diff_vs_baseline": err,
                    }
                )
            b, c = res[baseline], res[candidate]
            per_provider = " | ".join(
                f"{p}: {res[p]['ms']:9.3f} ms, peak {_fmt_mib(res[p]['peak_bytes']):>8} MiB" for p in bench.line_vals
            )
            diff = (c["out"] - b["out"]).abs().max().item() if b["out"].numel() else 0.0
            print(
                f"  N={x_args['N']:>6} V={x_args['V']:>7} | {per_provider}"
                f" || time {_ratio(b['ms'], c['ms'])}, peak mem {_ratio(b['peak_bytes'], c['peak_bytes'])}"
                f" (baseline/{candidate}); max|diff| {diff:.2e}"
            )
            del res

    if out_dir is not None:
        _write(rows, out_dir, baseline, candidate, where)
    return rows


def _write(rows: list[dict], out_dir: Path, baseline: str, candidate: str, where: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "token_logprob_bench.csv", out_dir / "token_logprob_bench.md"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    by_point: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        by_point.setdefault((r["sweep"], r["N"], r["V"]), {})[r["provider"]] = r
    lines = [
        f"# token_logprob benchmark -- {where}, dtype {rows[0]['dtype']}",
        "",
        f"Ratios are {baseline} / {candidate} (> 1: {candidate} is faster / needs less extra memory). "
        "Peak = extra memory during the call above what was allocated before it.",
        "",
        f"| sweep | N | V | {baseline} ms | {candidate} ms | time ratio | {baseline} peak MiB "
        f"| {candidate} peak MiB | mem ratio | {candidate} GB/s | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (sweep, n, v), prov in by_point.items():
        b, c = prov[baseline], prov[candidate]
        lines.append(
            f"| {sweep} | {n} | {v} | {b['ms']:.3f} | {c['ms']:.3f} | {_ratio(b['ms'], c['ms'])} | "
            f"{'n/a' if b['peak_mib'] is None else b['peak_mib']} | {'n/a' if c['peak_mib'] is None else c['peak_mib']} | "
            f"{_ratio(b['peak_mib'], c['peak_mib'])} | {c['gbps']:.1f} | {c['max_abs_diff_vs_baseline']:.2e} |"
        )
    md_path.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {csv_path} and {md_path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernels.token_logprob.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer, smaller points (CI / smoke)")
    ap.add_argument(
        "--out", type=Path, default=Path("runs/bench/token_logprob"), help="directory for the CSV and markdown table"
    )
    ap.add_argument("--no-write", action="store_true", help="print only, write no files")
    ap.add_argument(
        "--dtype", choices=sorted(DTYPES), default="bf16", help="logits dtype (default bf16, as models emit)"
    )
    ap.add_argument("--reps", type=int, default=None, help="CPU timing repeats (default 3 quick / 5 full)")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0") and not torch.cuda.is_available():
        print("# note: TRITON_INTERPRET is set; it is not used for timing here", file=sys.stderr)
    run(args.quick, None if args.no_write else args.out, args.dtype, args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
