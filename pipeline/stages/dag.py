"""The DAG runner: orders stages by what they require, runs them, records what made each file.

``run(cfg)`` runs the configured stages (plus whatever they transitively
require — cheap when those artifacts already exist, since every artifact is
content-addressed and a rerun skips it), writes ``manifest.json`` (each stage,
its artifacts and the arguments recorded in their provenance) and
``telemetry.json`` (wall time, time per stage, tokens and tokens/s per engine,
where each engine ran and how long it was held, the engine waves as they ran,
the placement schedule, estimated GPU-hours, the share of wall time spent
outside the engines), and shuts the engines down.

Placement: stages run their models in waves (:func:`pipeline.stages.runner.execute_jobs`)
following the schedule the pool plans for the live cluster
(:func:`pipeline.planning.schedule.schedule_for_run`); the schedule is logged
("wave 1 [generate]: tiny-a on node0 ...") and written to both files.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

from pipeline.config import RunConfig, to_plain
from pipeline.report.telemetry import tokens_per_s
from pipeline.stages import STAGES
from pipeline.stages.context import Context
from pipeline.stages.protocol import Stage
from pipeline.store.artifacts import Store, read_provenance
from pipeline.store.atomic import write_text_atomic

log = logging.getLogger("crosscot")

# Canonical order among stages that do not depend on each other.
ORDER = ("generate", "ensemble", "truncate", "transfer", "score", "report")
# Stages that may use engines; after the last of them the engines are stopped.
ENGINE_STAGES = ("generate", "ensemble", "truncate", "transfer")


def stage_requires(name: str, cfg: RunConfig) -> tuple[str, ...]:
    req = tuple(STAGES.get(name).requires)
    if name == "truncate" and cfg.ensemble.enabled:
        req += ("ensemble",)
    return req


def plan_stages(cfg: RunConfig) -> list[str]:
    """Configured stages plus their transitive requirements, topologically ordered."""
    want: set[str] = set()

    def add(n: str) -> None:
        if n in want:
            return
        if n == "ensemble" and not cfg.ensemble.enabled:
            return
        want.add(n)
        for r in stage_requires(n, cfg):
            add(r)

    for s in cfg.stages:
        add(s)
    return [s for s in ORDER if s in want] + sorted(want - set(ORDER))


def default_pool_factory(cfg: RunConfig) -> Callable[[], Any]:
    def make():
        from pipeline.engine.ray_pool import EnginePool, init_ray

        init_ray(cfg.ray)
        return EnginePool(cfg)

    return make


def _union_seconds(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    iv = sorted((max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in iv:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def run(cfg: RunConfig, pool_factory: Optional[Callable[[], Any]] = None, keep_pool: bool = False) -> Context:
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = Store(cfg.store_dir or run_dir / "store")
    ctx = Context(cfg=cfg, store=store, run_dir=run_dir, pool_factory=pool_factory or default_pool_factory(cfg))
    write_text_atomic(run_dir / "config.json", json.dumps(to_plain(cfg), indent=2, default=str))
    order = plan_stages(cfg)
    log.info("stages: %s", " -> ".join(order))
    t0 = time.time()
    manifest: dict[str, Any] = {"stages": []}
    try:
        for name in order:
            ts = time.time()
            stage: Stage = STAGES.get(name)()
            if name == "report":
                _write_telemetry(ctx, t0)
            paths = stage.run(ctx)
            ctx.outputs[name] = paths
            log.info("stage %s: %d artifact(s) in %.1fs", name, len(paths), time.time() - ts)
            manifest["stages"].append({
                "stage": name, "version": stage.version,
                "artifacts": [{"path": str(p), **_prov_args(p)} for p in paths],
            })
            manifest["problems"] = str(ctx.problems_path) if ctx.problems_path else None
            rest = order[order.index(name) + 1:]
            if ctx._pool is not None and not keep_pool and not any(s in ENGINE_STAGES for s in rest) \
                    and ctx._pool.actors:
                ctx._pool.stop()  # no engine work left: free the engines (their stats are kept)
            if ctx._pool is not None and (placement := _placement(ctx)) is not None:
                manifest["placement"] = placement
            write_text_atomic(run_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
        _write_telemetry(ctx, t0)
    finally:
        if ctx._pool is not None and not keep_pool:
            try:
                ctx._pool.stop()
            except Exception:  # noqa: BLE001
                pass
    return ctx


def _prov_args(p: Path) -> dict:
    if p.suffix != ".arrow" or not p.exists():
        return {}
    prov = read_provenance(p)
    return {"stage_args": prov.get("args"), "inputs": prov.get("inputs")}


def _placement(ctx: Context) -> Optional[dict]:
    try:
        return ctx._pool.placement_info()
    except Exception as e:  # noqa: BLE001 - telemetry must never fail a run
        log.warning("no placement info: %s", e)
        return {}


def _write_telemetry(ctx: Context, t0: float) -> dict:
    now = time.time()
    tel: dict[str, Any] = {"wall_seconds": now - t0, "stage_seconds": {k: v for k, v in ctx.timings.items()
                                                                     if not k.startswith("error")},
                           "error_rows": ctx.timings.get("error_rows", 0),
                           "error_share": ctx.timings.get("error_share", 0.0)}
    busy: list[tuple[float, float]] = []
    place: dict[str, Any] = {}
    if ctx._pool is not None:
        stats = ctx._pool.stats()
        place = _placement(ctx) or {}
        for n, s in stats.items():
            busy += [tuple(x) for x in s.pop("intervals", [])]
            secs = s.get("engine_seconds") or 0.0
            s["prefill_tokens_per_s"] = tokens_per_s(s.get("prefill_tokens", 0), secs)
            s["generated_tokens_per_s"] = tokens_per_s(s.get("generated_tokens", 0), secs)
            s.update({k: v for k, v in place.get("engines", {}).get(n, {}).items() if k != "held"})
        tel["engines"] = stats
    # Per stage and model: requests run, in which wave, where.
    progress: dict[str, dict[str, dict]] = {}
    for w in ctx.waves:
        for m in w["models"]:
            progress.setdefault(w["stage"], {})[m] = {"requests": w["requests"].get(m, 0), "wave": w["wave"],
                                                      "of": w["of"], "where": w["where"].get(m),
                                                      "seconds": w["end"] - w["start"]}
    tel["stage_models"] = progress
    tel["waves"] = [{**w, "start": w["start"] - t0, "end": w["end"] - t0} for w in ctx.waves]
    if place.get("schedule"):
        tel["schedule"] = place["schedule"]
    engine_time = _union_seconds(busy, t0, now)
    tel["engine_busy_seconds"] = engine_time
    tel["outside_engine_share"] = max(0.0, 1 - engine_time / max(1e-9, now - t0))
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
    write_text_atomic(ctx.run_dir / "telemetry.json", json.dumps(tel, indent=2, default=str))
    return tel
