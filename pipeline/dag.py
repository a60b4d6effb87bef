"""The DAG runner: orders stages by what they require, runs them, records what made each file.

``run(cfg)`` runs the configured stages (plus whatever they transitively
require — cheap when those artifacts already exist, since every artifact is
content-addressed and a rerun skips it), writes ``manifest.json`` (each stage,
its artifacts and the arguments recorded in their provenance) and
``telemetry.json`` (wall time, time per stage, tokens per engine, the share of
wall time spent outside the engines), and shuts the engines down.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

from pipeline.artifacts import Store, read_provenance, write_text_atomic
from pipeline.config import RunConfig, to_plain
from pipeline.stages import STAGES
from pipeline.stages.base import Context

log = logging.getLogger("crosscot")

# Canonical order among stages that do not depend on each other.
ORDER = ("generate", "ensemble", "truncate", "transfer", "score", "report")


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
        from pipeline.engine.pool import EnginePool, init_ray

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
            stage = STAGES.get(name)()
            if name == "report":
                _write_telemetry(ctx, t0)
            paths = stage.run(ctx)
            ctx.outputs[name] = paths
            log.info("stage %s: %d artifact(s) in %.1fs", name, len(paths), time.time() - ts)
            manifest["stages"].append({
                "stage": name, "version": getattr(stage, "version", "1"),
                "artifacts": [{"path": str(p), **_prov_args(p)} for p in paths],
            })
            manifest["problems"] = str(ctx.problems_path) if ctx.problems_path else None
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


def _write_telemetry(ctx: Context, t0: float) -> dict:
    now = time.time()
    tel: dict[str, Any] = {"wall_seconds": now - t0, "stage_seconds": {k: v for k, v in ctx.timings.items()
                                                                     if not k.startswith("error")},
                           "error_rows": ctx.timings.get("error_rows", 0),
                           "error_share": ctx.timings.get("error_share", 0.0)}
    busy: list[tuple[float, float]] = []
    if ctx._pool is not None:
        stats = ctx._pool.stats()
        for n, s in stats.items():
            busy += [tuple(x) for x in s.pop("intervals", [])]
        tel["engines"] = stats
    engine_time = _union_seconds(busy, t0, now)
    tel["engine_busy_seconds"] = engine_time
    tel["outside_engine_share"] = max(0.0, 1 - engine_time / max(1e-9, now - t0))
    write_text_atomic(ctx.run_dir / "telemetry.json", json.dumps(tel, indent=2))
    return tel
