"""The run's ``telemetry.json``: wall time, time per stage, tokens and tokens/s per engine, placement.

Built from the run :class:`pipeline.stages.context.Context` (its timings, per-stage item
telemetry and waves) and its pool's counters and placement; written by the DAG runner
(:mod:`pipeline.stages.dag`) before the report and at the end.  Telemetry never fails a run:
a pool that cannot report its placement is logged and left out.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Optional

from pipeline.report.telemetry import tokens_per_s, union_seconds
from pipeline.stages.context import Context
from pipeline.store.atomic import write_text_atomic

log = logging.getLogger("crosscot")


def placement_info(ctx: Context) -> Optional[dict]:
    """Where the run's engines ran and for how long (None: no pool was started, or it places nothing)."""
    pool = ctx.started_pool
    if pool is None:
        return None
    try:
        return pool.placement_info()
    except Exception as e:  # noqa: BLE001 - telemetry must never fail a run
        log.warning("no placement info: %s", e)
        return {}


def _where(w: Optional[dict]) -> Optional[str]:
    if not w:
        return "local"
    return f"node {str(w.get('node_id', '?'))[:12]} ({w.get('ip', '?')}, pid {w.get('pid', '?')})"


def write_telemetry(ctx: Context, t0: float) -> dict:
    """Write ``<run_dir>/telemetry.json`` from the run's timings and its pool's counters; the dict."""
    now = time.time()
    tel: dict[str, Any] = {
        "wall_seconds": now - t0,
        "stage_seconds": {k: v for k, v in ctx.timings.items() if not k.startswith("error")},
        "error_rows": ctx.timings.get("error_rows", 0),
        "error_share": ctx.timings.get("error_share", 0.0),
    }
    busy: list[tuple[float, float]] = []
    loading: list[tuple[float, float]] = []
    place: dict[str, Any] = {}
    pool = ctx.started_pool
    if pool is not None:
        stats = pool.stats()
        place = placement_info(ctx) or {}
        for n, s in stats.items():
            busy += [tuple(x) for x in s.pop("intervals", [])]
            loading += [tuple(x) for x in s.pop("load_intervals", [])]
            secs = s.get("engine_seconds") or 0.0
            s["prefill_tokens_per_s"] = tokens_per_s(s.get("prefill_tokens", 0), secs)
            s["generated_tokens_per_s"] = tokens_per_s(s.get("generated_tokens", 0), secs)
            s.update({k: v for k, v in place.get("engines", {}).get(n, {}).items() if k != "held"})
        tel["engines"] = stats
    # Per stage and model: items run, when the first was submitted and the last finished
    # (seconds since the run started: streaming stages overlap), in which wave, where.
    where = (pool.where if pool is not None else {}) or {}
    tel["stage_models"] = {
        stage: {m: {**t.as_dict(), "where": _where(where.get(m))} for m, t in per.items()}
        for stage, per in ctx.stage_models.items()
    }
    tel["waves"] = [{**w, "start": w["start"] - t0, "end": w["end"] - t0} for w in ctx.waves]
    if place.get("schedule"):
        tel["schedule"] = place["schedule"]
    engine_time = union_seconds(busy + loading, t0, now)
    startup = union_seconds(loading, t0, now)
    tel["engine_busy_seconds"] = engine_time
    tel["engine_startup_seconds"] = startup
    # Share of wall time no engine was loading or stepping (driver work, Ray, Arrow I/O, scoring, idle
    # engines) — with start-up, and over the wall time after removing engine start-up.
    tel["outside_engine_share"] = max(0.0, 1 - engine_time / max(1e-9, now - t0))
    tel["outside_engine_share_excl_startup"] = max(0.0, 1 - (engine_time - startup) / max(1e-9, now - t0 - startup))
    eng = tel.get("engines", {})
    tel["summary"] = {
        "wall_seconds": now - t0,
        "engines": len(eng),
        "engine_loads": sum(int(e.get("loads", 0) or 0) for e in eng.values()),
        "requests": sum(int(e.get("requests", 0) or 0) for e in eng.values()),
        "prefill_tokens": sum(int(e.get("prefill_tokens", 0) or 0) for e in eng.values()),
        "cached_tokens": sum(int(e.get("cached_tokens", 0) or 0) for e in eng.values()),
        "generated_tokens": sum(int(e.get("generated_tokens", 0) or 0) for e in eng.values()),
        "engine_held_seconds": sum(float(e.get("held_seconds", 0) or 0) for e in eng.values()),
        # Sum over engines of wall-clock held (loaded, whether busy or not) x GPUs it held.
        "gpu_hours_estimate": sum(float(e.get("gpu_hours", 0) or 0) for e in eng.values()),
    }
    from pipeline.engine.determinism import run_determinism

    tel["determinism"] = run_determinism(ctx.cfg)
    # Prefix-cache hits of answers after a CoT (cached / block-aligned cacheable prompt tokens).
    cacheable = sum(int(e.get("answer_cacheable_tokens", 0) or 0) for e in eng.values())
    tel["summary"]["answer_cacheable_tokens"] = cacheable
    tel["summary"]["answer_cache_hit"] = (
        (sum(int(e.get("answer_cached_of_cacheable", 0) or 0) for e in eng.values()) / cacheable) if cacheable else None
    )
    write_text_atomic(ctx.run_dir / "telemetry.json", json.dumps(tel, indent=2, default=str))
    return tel
