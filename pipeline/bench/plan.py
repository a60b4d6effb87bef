"""Bench: planned wave schedule vs running the models one after another, for the reference sweep.

    python -m pipeline.bench.plan [OUT_DIR]

For each node type (8x80 GB H100; 8x141 GB H200, as configured and with the 32B
models at TP=2; the H100 node restricted to 6 GPUs, where not all engines fit
at once and the wave ordering matters)
the planner's throughput model gives the makespan of

* the planned schedule (engines of a wave in parallel, batched, fewest loads),
* the reference study's way (one model after another, one request at a time),
* one model after another but batched,

and the markdown table is printed and written to ``OUT_DIR/plan_bench.md``.
These are model estimates (conf/node/*.yaml), not measurements; the second table is
the planner's simulation (:mod:`pipeline.planning.tails`): synchronous shards vs
streaming vs streaming with replicas filling idle GPUs.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from pipeline.config import RunConfig


def _tp2_for_32b(run: "RunConfig") -> "RunConfig":
    """A copy with TP=2 for the >= 30B models (on 141 GB GPUs they fit TP=1; TP=2 uses idle GPUs)."""
    import copy

    out = copy.deepcopy(run)
    for m in out.models.values():
        if m.params_b >= 30 and m.tensor_parallel_size == 1:
            m.tensor_parallel_size = 2
    return out


def bench_rows(run: "RunConfig", n_problems: Optional[int] = None) -> list[dict]:
    """One row per setting: makespans, loads, GPU-hours and ratios."""
    from dataclasses import replace

    from pipeline.planning.cluster import ClusterSpec
    from pipeline.planning.plan import plan
    from pipeline.planning.throughput import load_node_type

    h100 = load_node_type("h100x8")
    six = ClusterSpec(tuple(replace(nd, num_gpus=6) for nd in h100.cluster().nodes), source="h100x8, 6 GPUs")
    settings = [
        ("h100x8", "h100x8", None, run),
        ("h200x8", "h200x8", None, run),
        ("h200x8, 32B models at TP=2", "h200x8", None, _tp2_for_32b(run)),
        ("h100x8 (6 of 8 GPUs)", "h100x8", six, run),
    ]
    rows = []
    for label, node, cluster, cfg in settings:
        p = plan(cfg, node, n_problems, cluster=cluster)
        rows.append(
            {
                "setting": label,
                "problems": p.n_problems,
                "waves": len(p.schedule.waves),
                "loads": p.schedule.total_loads,
                "planned_h": p.makespan_s / 3600,
                "seq_batched_h": p.baselines["sequential_batched"].makespan_s / 3600,
                "seq_single_h": p.baselines["sequential_single"].makespan_s / 3600,
                "seq_loads": p.baselines["sequential_single"].loads,
                "gpu_h": p.gpu_hours_allocated,
                "ratio_single": p.speedup("sequential_single"),
                "ratio_batched": p.speedup("sequential_batched"),
                "schedule": p.schedule.log,
                # simulated (planning/tails.py): replayed CoT lengths through continuously batched engines
                "sim_shards_h": p.tails.shards.makespan_s / 3600,
                "sim_stream_h": p.tails.streaming.makespan_s / 3600,
                "sim_replicas_h": p.tails.with_replicas.makespan_s / 3600,
                "replicas": " ".join(p.tails.replica_overrides) or "-",
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    head = (
        "| setting | problems | waves | loads (planned / sequential) | planned | sequential, batched | "
        "reference (sequential, 1 request) | planned vs reference | planned vs seq. batched | planned GPU-h |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['problems']} | {r['waves']} | {r['loads']} / {r['seq_loads']} | "
            f"{r['planned_h']:.1f} h | {r['seq_batched_h']:.1f} h | {r['seq_single_h']:.1f} h | "
            f"{r['ratio_single']:.1f}x | {r['ratio_batched']:.2f}x | {r['gpu_h']:.0f} |"
        )
    lines += [
        "",
        "SIMULATED makespans (event-driven replay of the released CoT lengths through continuously "
        "batched engines, per-step cost from conf/node/*.yaml; nothing here ran on a GPU):",
        "",
        "| setting | synchronous shards of 64 | streaming | streaming + replicas | replicas chosen |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['sim_shards_h']:.2f} h | {r['sim_stream_h']:.2f} h | "
            f"{r['sim_replicas_h']:.2f} h | {r['replicas']} |"
        )
    lines.append("")
    for r in rows:
        lines.append(f"Schedule on {r['setting']}:")
        lines.append("```")
        lines.append(r["schedule"])
        lines.append("```")
    lines.append("")
    lines.append(
        "Estimates from the planner's throughput model (conf/node/*.yaml), not measurements; "
        "makespan ratio = baseline / planned."
    )
    return "\n".join(lines)


def main(out_dir: str = "runs/bench", run: "Optional[RunConfig]" = None, n_problems: Optional[int] = None) -> str:
    """Plan the reference sweep (``experiment=reference`` unless ``run`` is given); write plan_bench.md."""
    if run is None:
        from pipeline.config import compose

        run = compose(["experiment=reference"])
    md = markdown(bench_rows(run, n_problems))
    if run.ensemble.enabled and "ensemble" in run.stages:
        # The ensemble's evaluator scoring dominates the sweep; show the rest of the DAG on its own too.
        import copy

        no_ens = copy.deepcopy(run)
        no_ens.ensemble.enabled = False
        md = (
            "## Reference sweep (generate, truncate, transfer, ensemble)\n\n"
            + md
            + "\n\n## Without the ensemble stage\n\n"
            + markdown(bench_rows(no_ens, n_problems))
        )
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "plan_bench.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    return md


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/bench")
