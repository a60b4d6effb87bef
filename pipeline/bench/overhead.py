"""Bench ``demo_overhead``: a tiny demo run in real Ray actors; the share of wall time spent outside the engines."""

from __future__ import annotations

import json
import time
from pathlib import Path


def section(out: Path, quick: bool = False) -> str:
    from pipeline.config import compose
    from pipeline.stages.dag import run

    rd = out / "demo_overhead_run"
    import shutil

    shutil.rmtree(rd, ignore_errors=True)
    # The run's own progress bars (per stage) show it going; they cost nothing measurable.
    cfg = compose(["experiment=demo_tiny", f"run_dir={rd}", "progress=true"] + (["dataset.size=8"] if quick else []))
    print(f"demo_overhead: a demo_tiny run ({cfg.dataset.size} problems) in real Ray actors", flush=True)
    t0 = time.perf_counter()
    run(cfg)
    wall = time.perf_counter() - t0
    tel = json.loads((rd / "telemetry.json").read_text())
    load = sum(s.get("load_seconds", 0) for s in tel.get("engines", {}).values())
    return "\n".join(
        [
            "| wall s | engine-busy s (union, loads included) | outside engines | summed engine load s |",
            "|---|---|---|---|",
            f"| {wall:.1f} | {tel['engine_busy_seconds']:.1f} | {tel['outside_engine_share']:.1%} | {load:.1f} |",
            "",
            "Outside-engine time is everything in the run's wall time when no engine was loading or running a "
            "batch: Ray start-up, Arrow I/O, scoring, report rendering and DAG bookkeeping. Stage seconds: "
            + ", ".join(f"{k} {v:.1f}" for k, v in tel["stage_seconds"].items()),
        ]
    )
