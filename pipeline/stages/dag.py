"""The DAG runner: orders stages by what they require, runs them, records what made each file.

``run(cfg)`` runs the configured stages (plus whatever they transitively
require — cheap when those artifacts already exist, since every artifact is
content-addressed and a rerun skips it), writes ``manifest.json`` (each stage,
its artifacts and the arguments recorded in their provenance) and
``telemetry.json`` (wall time, time per stage, tokens and tokens/s per engine,
where each engine ran and how long it was held, the engine waves as they ran,
the placement schedule, estimated GPU-hours, the share of wall time spent
outside the engines), and shuts the engines down.

Streaming: the engine stages (generate, ensemble, truncate, transfer) run
together, item by item, in one :func:`pipeline.stages.runner.run_stream`
(a CoT's transfers start the moment it is written); ``score`` and ``report``
need every row and run after them.  Engines stay resident through the
streaming phase (waves only when they do not all fit the cluster, following
the schedule the pool plans: :func:`pipeline.planning.schedule.schedule_for_run`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

from pipeline.config import RunConfig, to_plain
from pipeline.report.telemetry import tokens_per_s, union_seconds
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


def run(cfg: RunConfig, pool_factory: Optional[Callable[[], Any]] = None, keep_pool: bool = False,
        pool: Optional[Any] = None) -> Context:
    """Run the configured stages; ``pool`` shares an existing engine pool (sweeps), never stopped here."""
    from pipeline.stages.runner import run_stream

    ctx, order = _prepare(cfg, pool_factory, pool)
    keep_pool = keep_pool or pool is not None
    try:
        stages = [STAGES.get(n)() for n in order if n in ENGINE_STAGES]
        outputs = run_stream(ctx, stages) if stages else {}
        _finish(ctx, order, stages, outputs, keep_pool)
    finally:
        if ctx._pool is not None and not keep_pool:
            try:
                ctx._pool.stop()
            except Exception:  # noqa: BLE001
                pass
    return ctx


def run_jobs(cfgs: list[RunConfig], pool: Any) -> list[Any]:
    """Several runs (a sweep's jobs) on one shared engine pool; per job its Context, or the exception.

    Each model is loaded once and serves every job that uses it; the jobs' engine items interleave
    in the same streams (:func:`pipeline.stages.runner.run_streams`).  Score and report run per job
    afterwards.  One job's failure never stops the others.
    """
    from pipeline.stages.runner import run_streams

    prepared, results = [], []
    sinks: dict = {}  # one writer per artifact across the jobs (a shared generation, say)
    for cfg in cfgs:
        try:
            prepared.append(_prepare(cfg, None, pool))
            prepared[-1][0].sinks = sinks
        except Exception as e:  # noqa: BLE001
            prepared.append(e)
    live = [(i, ctx, order) for i, x in enumerate(prepared) if not isinstance(x, Exception) for ctx, order in [x]]
    stages = {i: [STAGES.get(n)() for n in order if n in ENGINE_STAGES] for i, _, order in live}
    streamed = run_streams([(ctx, stages[i]) for i, ctx, _ in live]) if live else []
    outs = {i: o for (i, _, _), o in zip(live, streamed)}
    for i, x in enumerate(prepared):
        if isinstance(x, Exception):
            results.append(x)
            continue
        ctx, order = x
        if isinstance(outs[i], Exception):
            results.append(outs[i])
            continue
        try:
            _finish(ctx, order, stages[i], outs[i], keep_pool=True)
            results.append(ctx)
        except Exception as e:  # noqa: BLE001
            results.append(e)
    return results


def _prepare(cfg: RunConfig, pool_factory: Optional[Callable[[], Any]], pool: Optional[Any]) -> tuple[Context, list]:
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = Store(cfg.store_dir or run_dir / "store")
    ctx = Context(cfg=cfg, store=store, run_dir=run_dir, pool_factory=pool_factory or default_pool_factory(cfg))
    if pool is not None:
        ctx._pool = pool
    write_text_atomic(run_dir / "config.json", json.dumps(to_plain(cfg), indent=2, default=str))
    order = plan_stages(cfg)
    log.info("stages: %s", " -> ".join(order))
    ctx.problems  # noqa: B018 - load (and hash) the problems before any stage opens
    return ctx, order


def _finish(ctx: Context, order: list, stages: list, outputs: dict, keep_pool: bool) -> None:
    """Record the streamed stages, free the engines, run score and report, write telemetry."""
    manifest: dict[str, Any] = {"stages": []}
    if stages:
        ctx.timings["stream"] = time.time() - ctx.t0
        for st in stages:
            ctx.outputs[st.name] = outputs[st.name]
            _record(manifest, st, outputs[st.name])
        if ctx._pool is not None and not keep_pool and ctx._pool.actors:
            ctx._pool.stop()  # no engine work left: free the engines (their stats are kept)
        _write_manifest(ctx, manifest)
    for name in order:
        if name in ENGINE_STAGES:
            continue
        ts = time.time()
        stage: Stage = STAGES.get(name)()
        if name == "report":
            _write_telemetry(ctx, ctx.t0)
        paths = stage.run(ctx)
        ctx.outputs[name] = paths
        log.info("stage %s: %d artifact(s) in %.1fs", name, len(paths), time.time() - ts)
        _record(manifest, stage, paths)
        _write_manifest(ctx, manifest)
    _write_telemetry(ctx, ctx.t0)


def _record(manifest: dict, stage: Any, paths: list[Path]) -> None:
    manifest["stages"].append({"stage": stage.name, "version": stage.version,
                               "artifacts": [{"path": str(p), **_prov_args(p)} for p in paths]})


def _write_manifest(ctx: Context, manifest: dict) -> None:
    manifest["problems"] = str(ctx.problems_path) if ctx.problems_path else None
    if ctx._pool is not None and (placement := _placement(ctx)) is not None:
        manifest["placement"] = placement
    write_text_atomic(ctx.run_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))


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


def _where(w: Optional[dict]) -> Optional[str]:
    if not w:
        return "local"
    return f"node {str(w.get('node_id', '?'))[:12]} ({w.get('ip', '?')}, pid {w.get('pid', '?')})"


def _write_telemetry(ctx: Context, t0: float) -> dict:
    now = time.time()
    tel: dict[str, Any] = {"wall_seconds": now - t0, "stage_seconds": {k: v for k, v in ctx.timings.items()
                                                                     if not k.startswith("error")},
                           "error_rows": ctx.timings.get("error_rows", 0),
                           "error_share": ctx.timings.get("error_share", 0.0)}
    busy: list[tuple[float, float]] = []
    loading: list[tuple[float, float]] = []
    place: dict[str, Any] = {}
    if ctx._pool is not None:
        stats = ctx._pool.stats()
        place = _placement(ctx) or {}
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
    where = (ctx._pool.where if ctx._pool is not None else {}) or {}
    tel["stage_models"] = {stage: {m: {**t.as_dict(), "where": _where(where.get(m))} for m, t in per.items()}
                           for stage, per in ctx.stage_models.items()}
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
    tel["outside_engine_share_excl_startup"] = max(
        0.0, 1 - (engine_time - startup) / max(1e-9, now - t0 - startup))
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
    tel["summary"]["answer_cache_hit"] = (sum(int(e.get("answer_cached_of_cacheable", 0) or 0)
                                              for e in eng.values()) / cacheable) if cacheable else None
    write_text_atomic(ctx.run_dir / "telemetry.json", json.dumps(tel, indent=2, default=str))
    return tel
