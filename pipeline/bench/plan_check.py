"""Plan vs measured: the planner's simulated makespan against the telemetry of a real run.

    python -m pipeline.bench.plan_check RUN_DIR [--node cpu2] [--measured-lengths] [overrides ...]

Reads ``RUN_DIR/telemetry.json`` (``wall_seconds``, ``engine_startup_seconds``,
``stage_models.<stage>.<model>.first_submit/last_done``) and ``RUN_DIR/config.json``'s
Hydra overrides are not needed: the run config is composed from the overrides given
(default ``experiment=demo``, i.e. ``make demo``), planned on ``--node`` (default
``cpu2``, whose step costs are calibrated by :mod:`pipeline.bench.step_cost`), and
three spans are compared:

* **engine work**: first request submitted -> last request done over the engine
  stages, against the simulated streaming makespan without engine loading;
* **engine start-up**: measured start-up against the node's load-time model;
* **wall**: the whole run against start-up + engine work + the node's ``run_overhead_s``
  (Ray start, dataset, scoring, report).

``--measured-lengths`` replays the run's own CoT lengths (``cot_tokens``) instead of
the default length model: it separates the cost model's error from the length
model's.  The last line is ``plan_check: wall planned/measured=X.XX engine planned/measured=Y.YY``;
a ratio within [0.75, 1.25] is the goal.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Optional


def measured_spans(tel: dict[str, Any]) -> dict[str, float]:
    """Wall, engine start-up and engine-work seconds of a run's telemetry."""
    firsts, lasts = [], []
    for per in (tel.get("stage_models") or {}).values():
        for t in per.values():
            if t.get("requests") and t.get("first_submit") is not None and t.get("last_done") is not None:
                firsts.append(float(t["first_submit"]))
                lasts.append(float(t["last_done"]))
    if not firsts:
        raise ValueError("telemetry has no stage_models with first_submit/last_done: not a streaming run")
    return {
        "wall_s": float(tel["wall_seconds"]),
        "startup_s": float(tel.get("engine_startup_seconds", 0.0)),
        "engine_s": max(lasts) - min(firsts),
    }


def planned_spans(p: Any) -> dict[str, float]:
    """The same spans from a :class:`pipeline.planning.plan.Plan` (simulated streaming, one wave's
    loads in parallel: the longest load is the start-up)."""
    load = max((p.load_s[pl.model] for w in p.schedule.waves for pl in w.placements if pl.loaded), default=0.0)
    loads = sum(max((p.load_s[pl.model] for pl in w.placements if pl.loaded), default=0.0) for w in p.schedule.waves)
    engine = p.tails.streaming.makespan_s - loads
    return {
        "startup_s": load,
        "engine_s": engine,
        "wall_s": loads + engine + float(getattr(p.node, "run_overhead_s", 0.0)),
    }


def compare(tel: dict[str, Any], p: Any) -> dict[str, Any]:
    m, q = measured_spans(tel), planned_spans(p)
    return {"measured": m, "planned": q, "ratio": {k: q[k] / m[k] if m[k] else float("inf") for k in m}}


def markdown(res: dict[str, Any], note: str = "") -> str:
    lines = ["| span | planned (simulated) | measured | planned/measured |", "|---|---:|---:|---:|"]
    for k, label in (
        ("startup_s", "engine start-up"),
        ("engine_s", "engine work (first submit -> last done)"),
        ("wall_s", "wall time"),
    ):
        lines.append(f"| {label} | {res['planned'][k]:.1f} s | {res['measured'][k]:.1f} s | {res['ratio'][k]:.2f} |")
    if note:
        lines += ["", note]
    lines += [
        "",
        f"plan_check: wall planned/measured={res['ratio']['wall_s']:.2f} "
        f"engine planned/measured={res['ratio']['engine_s']:.2f}",
    ]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench.plan_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--node", default="cpu2")
    ap.add_argument("--measured-lengths", action="store_true", help="replay the run's own CoT lengths")
    ap.add_argument("overrides", nargs="*", default=None)
    a = ap.parse_args(argv)
    from pipeline.config import compose
    from pipeline.planning.lengths import measured_lengths
    from pipeline.planning.plan import plan
    from pipeline.planning.tails import TailOptions

    with open(os.path.join(a.run_dir, "telemetry.json")) as f:
        tel = json.load(f)
    run = compose(a.overrides or ["experiment=demo"])
    opt = TailOptions(measured=measured_lengths(a.run_dir) if a.measured_lengths else None)
    p = plan(run, a.node, tails=opt)
    res = compare(tel, p)
    src = ", ".join(f"{m}: {o}" for m, o in p.tails.origin.items())
    md = markdown(res, f"Plan on {a.node} ({src} CoT lengths) vs {a.run_dir}/telemetry.json.")
    print(md)
    return md


if __name__ == "__main__":
    main()
