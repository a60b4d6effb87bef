"""``make bench``: every speed measurement of the project, each as a ratio against a baseline in the same run.

Sections (each writes ``<out>/<name>.md``; all are collected into ``<out>/BENCH.md``):

* ``throughput`` — pipeline generation (batched requests to one engine) vs a naive loop sending the same
  prompts one request at a time to the same engine: generated tokens/s and the ratio;
* ``demo_overhead`` — a tiny demo run in real Ray actors: share of wall time spent outside the engines;
* ``cpu_dtype`` — CPU engine speed, bf16 vs fp32 (real small model), when it is provisioned;
* ``ensemble`` — cached candidate scoring vs naive ``prompt_logprobs`` rescoring;
* ``kernel`` — fused token log-prob kernel vs ``log_softmax`` + ``gather`` (time, peak memory);
* ``plan`` — planned makespan vs one-model-after-another for the reference sweep;
* ``parallel`` — engines in parallel vs one at a time on a (simulated) cluster;
* ``filters`` — rule-based answer filter leakage and kept-text ratio on the study's released CoTs.

``python -m pipeline.bench --out runs/bench [--only throughput,kernel] [--quick]``
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path


def bench_throughput(out: Path, quick: bool = False) -> str:
    from pipeline.config import compose
    from pipeline.engine.core import ModelEngine, Sampling

    cfg = compose(["experiment=demo_tiny"])
    m = cfg.model("tiny-think")
    e = ModelEngine(m)
    n = 16 if quick else 48
    toks = 64
    prompts = [f"What is {i} + {2 * i}? Think step by step." for i in range(n)]
    reqs = [{"prompt": p, "sampling": Sampling(0.0, 1.0, -1), "max_tokens": toks} for p in prompts]
    e.think(reqs[:4])  # warm-up
    rows = []
    for label, batches in (("naive loop (1 request per call)", [[r] for r in reqs]),
                           ("pipeline (one batched call)", [reqs])):
        g0 = e.stats["generated_tokens"]
        t0 = time.perf_counter()
        for b in batches:
            e.think(b)
        dt = time.perf_counter() - t0
        gen = e.stats["generated_tokens"] - g0
        rows.append((label, gen, dt, gen / dt))
    ratio = rows[1][3] / rows[0][3]
    md = ["| mode | generated tokens | seconds | tokens/s |", "|---|---|---|---|"]
    md += [f"| {a} | {b} | {c:.2f} | {d:.0f} |" for a, b, c, d in rows]
    md.append(f"\n**Ratio (pipeline / naive): {ratio:.1f}x** — model {m.name}, {n} prompts, {toks} new tokens each, "
              "greedy, same engine, same prompts.")
    return "\n".join(md)


def bench_demo_overhead(out: Path, quick: bool = False) -> str:
    from pipeline.config import compose
    from pipeline.dag import run

    rd = out / "demo_overhead_run"
    import shutil

    shutil.rmtree(rd, ignore_errors=True)
    cfg = compose(["experiment=demo_tiny", f"run_dir={rd}", "progress=false"]
                  + (["dataset.size=8"] if quick else []))
    t0 = time.perf_counter()
    run(cfg)
    wall = time.perf_counter() - t0
    tel = json.loads((rd / "telemetry.json").read_text())
    load = sum(s.get("load_seconds", 0) for s in tel.get("engines", {}).values())
    return "\n".join([
        "| wall s | engine-busy s (union, loads included) | outside engines | summed engine load s |",
        "|---|---|---|---|",
        f"| {wall:.1f} | {tel['engine_busy_seconds']:.1f} | {tel['outside_engine_share']:.1%} | {load:.1f} |",
        "",
        "Outside-engine time is everything in the run's wall time when no engine was loading or running a "
        "batch: Ray start-up, Arrow I/O, scoring, report rendering and DAG bookkeeping. Stage seconds: "
        + ", ".join(f"{k} {v:.1f}" for k, v in tel["stage_seconds"].items()),
    ])


def _module_section(module: str, fn: str = "main"):
    def section(out: Path, quick: bool = False) -> str:
        mod = importlib.import_module(module)
        f = getattr(mod, fn)
        try:
            res = f(str(out) if module == "pipeline.bench_plan" else out, quick=quick)
        except TypeError:
            res = f(str(out) if module == "pipeline.bench_plan" else out)
        if isinstance(res, str):
            return res
        mds = sorted(out.glob("*.md"), key=lambda p: p.stat().st_mtime)
        return mds[-1].read_text() if mds else "(see files in this folder)"

    return section


def _kernel(out: Path, quick: bool) -> str:
    mod = importlib.import_module("kernels.bench_token_logprob")
    mod.main(["--out", str(out)] + (["--quick"] if quick else []))
    mds = sorted(out.glob("*.md"))
    return mds[0].read_text() if mds else "(no table written)"


def bench_cpu_dtype(out: Path, quick: bool = False) -> str:
    from pipeline.config import compose
    from pipeline.models import ensure_model

    m = compose(["experiment=demo"]).model("SmolLM2")
    path = ensure_model(m)
    mod = importlib.import_module("pipeline.models.cpu_speed")
    js = out / "cpu_speed.json"
    mod.main(["--model", "smollm2", "--path", path, "--dtypes", "bfloat16", "float32", "--batches", "1", "32",
              "--tokens", "32" if quick else "128", "--json", str(js)])
    data = json.loads(js.read_text()) if js.exists() else {}
    return "```\n" + json.dumps(data, indent=1)[:3000] + "\n```"


SECTIONS = {
    "throughput": bench_throughput,
    "demo_overhead": bench_demo_overhead,
    "ensemble": _module_section("pipeline.bench_ensemble"),
    "kernel": lambda out, quick=False: _kernel(out, quick),
    "plan": _module_section("pipeline.bench_plan"),
    "parallel": _module_section("pipeline.bench_parallel"),
    "filters": _module_section("pipeline.bench_filters"),
    "cpu_dtype": bench_cpu_dtype,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--only", default="", help="comma-separated sections: " + ",".join(SECTIONS))
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [s for s in args.only.split(",") if s] or list(SECTIONS)
    report, failed = ["# crosscot benchmarks", ""], []
    for name in names:
        sub = out / name
        sub.mkdir(parents=True, exist_ok=True)
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            md = SECTIONS[name](sub, quick=args.quick)
        except Exception as e:  # noqa: BLE001 - one failing section must not hide the others
            failed.append(name)
            md = f"FAILED: {type(e).__name__}: {e}\n\n```\n{traceback.format_exc()[-1500:]}\n```"
        (sub / f"{name}.md").write_text(md + "\n")
        report += [f"## {name} ({time.perf_counter() - t0:.0f} s)", "", md, ""]
        print(md, flush=True)
    (out / "BENCH.md").write_text("\n".join(report))
    print(f"\nwrote {out / 'BENCH.md'}" + (f"; failed sections: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
