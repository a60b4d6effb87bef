"""Benchmark: a small sweep with engines running in parallel vs one engine at a time.

``python -m pipeline.bench.parallel [out_dir]`` (or ``main(out_dir)``) runs the
same small sweep (the three tiny demo models on toy arithmetic, one job per
dataset seed) twice on one local Ray instance, each mode in its own fresh store
so nothing is shared between them:

* **parallel** — the default placement: every engine that fits is resident and
  the models of a stage run concurrently (``ray.max_concurrent_engines=null``);
* **sequential** — ``ray.max_concurrent_engines=1``: one model per wave, the
  baseline of running one engine at a time (the last model of generate stays
  loaded into transfer, so 2N-1 loads per job instead of N).

Both modes produce identical tables (checked); ``out_dir/parallel_bench.md``
records wall times, engine loads, tokens and the ratio sequential / parallel.
On a machine with few cores the engines compete for the same cores, so the
gain comes mostly from overlapping engine start-up with other engines' work
and from loading each model once; on a cluster with one GPU per engine it
approaches the number of models for the engine-bound stages.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from pipeline.config import compose


def _job_overrides(run_dir: Path, store: Path, seed: int, size: int, extra: list[str]) -> list[str]:
    return [
        "experiment=demo_tiny",
        f"run_dir={run_dir}",
        f"store_dir={store}",
        f"dataset.seed={seed}",
        f"dataset.size={size}",
        "generate.thought_budget=48",
        "generate.answer_budget=16",
        "transfer.answer_budget=16",
        "score.n_boot=50",
        "progress=false",
        *extra,
    ]


def run_sweep(work: Path, mode: str, seeds: list[int], size: int, num_cpus: int) -> dict:
    from pipeline.stages.dag import run

    extra = [f"ray.num_cpus={num_cpus}"]
    if mode == "sequential":
        extra.append("ray.max_concurrent_engines=1")
    store = work / mode / "store"
    t0 = time.time()
    jobs = []
    for s in seeds:
        d = work / mode / f"seed{s}"
        ts = time.time()
        run(compose(_job_overrides(d, store, s, size, extra)))
        tel = json.loads((d / "telemetry.json").read_text())
        jobs.append(
            {
                "seed": s,
                "wall_s": time.time() - ts,
                "run_dir": str(d),
                "loads": tel["summary"]["engine_loads"],
                "generated": tel["summary"]["generated_tokens"],
                "waves": len(tel["waves"]),
            }
        )
    return {"mode": mode, "wall_s": time.time() - t0, "jobs": jobs}


def main(
    out_dir: str | os.PathLike = "runs/bench", seeds=(0, 1), size: int = 4, num_cpus: int = 4, keep_work: bool = False
) -> dict:
    import ray

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-parallel-", dir=out))
    results = {}
    try:
        for mode in ("parallel", "sequential"):
            results[mode] = run_sweep(work, mode, list(seeds), size, num_cpus)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    same = all(
        (Path(a["run_dir"]) / "tables" / "accuracy.csv").read_text()
        == (Path(b["run_dir"]) / "tables" / "accuracy.csv").read_text()
        for a, b in zip(results["parallel"]["jobs"], results["sequential"]["jobs"])
    )
    ratio = results["sequential"]["wall_s"] / max(1e-9, results["parallel"]["wall_s"])
    lines = [
        "# Parallel engines vs one engine at a time",
        "",
        f"Sweep: 3 tiny models (tiny-think, tiny-thought, tiny-harmony), toy arithmetic, {size} problems, "
        f"seeds {list(seeds)} (one job each), local Ray with {num_cpus} CPUs declared on a machine with "
        f"{os.cpu_count()} cores. Each mode starts from an empty store.",
        "",
        "| mode | sweep wall s | per-job wall s | engine loads per job | engine waves per job | generated tokens |",
        "|---|---|---|---|---|---|",
    ]
    for mode in ("parallel", "sequential"):
        r = results[mode]
        per_job = ", ".join("%.1f" % j["wall_s"] for j in r["jobs"])
        loads = ", ".join(str(j["loads"]) for j in r["jobs"])
        waves = ", ".join(str(j["waves"]) for j in r["jobs"])
        gen = sum(j["generated"] for j in r["jobs"])
        lines.append(f"| {mode} | {r['wall_s']:.1f} | {per_job} | {loads} | {waves} | {gen} |")
    lines += [
        "",
        f"**Speed-up (sequential / parallel wall time): {ratio:.2f}x**",
        "",
        f"Identical tables in both modes: {'yes' if same else 'NO'}.",
        "",
        "On few cores the engines share the same CPUs, so running them together mostly overlaps engine "
        "start-up (model load, ~8 s each when the machine is idle) and avoids the N-1 extra loads of the "
        "one-at-a-time schedule; decode itself does not get faster. With one accelerator per engine the "
        "engine-bound stages approach an N-fold speed-up.",
    ]
    (out / "parallel_bench.md").write_text("\n".join(lines) + "\n")
    (out / "parallel_bench.json").write_text(json.dumps({**results, "ratio": ratio, "identical": same}, indent=2))
    if not keep_work:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return {"ratio": ratio, "identical": same, **results}


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    r = main(sys.argv[1] if len(sys.argv) > 1 else "runs/bench")
    print(f"ratio sequential/parallel: {r['ratio']:.2f}x (identical tables: {r['identical']})")
