"""The DAG runner: orders stages by what they require, runs them, records what made each file.

``run(cfg)`` runs the configured stages (plus whatever they transitively
require — cheap when those artifacts already exist, since every artifact is
content-addressed and a rerun skips it), writes ``manifest.json`` (each stage,
its artifacts and the arguments recorded in their provenance) and
``telemetry.json`` (wall time, time per stage, tokens and tokens/s per engine,
where each engine ran and how long it was held, the engine waves as they ran,
the placement schedule, estimated GPU-hours, the share of wall time spent
outside the engines; built by :mod:`pipeline.stages.telemetry`), and shuts the engines down.

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
from pipeline.stages import STAGES
from pipeline.stages.context import Context
from pipeline.stages.protocol import Stage
from pipeline.stages.telemetry import placement_info, write_telemetry
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


def run(
    cfg: RunConfig,
    pool_factory: Optional[Callable[[], Any]] = None,
    keep_pool: bool = False,
    pool: Optional[Any] = None,
) -> Context:
    """Run the configured stages; ``pool`` shares an existing engine pool (sweeps), never stopped here."""
    from pipeline.stages.runner import run_stream

    ctx, order = _prepare(cfg, pool_factory, pool)
    keep_pool = keep_pool or pool is not None
    try:
        stages = [STAGES.get(n)() for n in order if n in ENGINE_STAGES]
        outputs = run_stream(ctx, stages) if stages else {}
        _finish(ctx, order, stages, outputs, keep_pool)
    finally:
        if ctx.started_pool is not None and not keep_pool:
            try:
                ctx.started_pool.stop()
            except Exception as e:  # noqa: BLE001 - the run's own outcome (or error) matters more
                log.warning("stopping the engines failed: %s: %s", type(e).__name__, e)
    return ctx


def run_jobs(cfgs: list[RunConfig], pool: Any) -> list[Any]:
    """Several runs (a sweep's jobs) on one shared engine pool; per job its Context, or the exception.

    Each model is loaded once and serves every job that uses it; the jobs' engine items interleave
    in the same streams (:func:`pipeline.stages.runner.run_streams`).  Score and report run per job
    afterwards.  One job's failure never stops the others.
    """
    from pipeline.stages.runner import run_streams

    prepared: list = []
    results: list = []
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
    from pipeline.config.preflight import write_run_key

    write_run_key(cfg)  # what this folder holds: a rerun of another config is refused (config.preflight)
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
        if ctx.started_pool is not None and not keep_pool and ctx.started_pool.actors:
            ctx.started_pool.stop()  # no engine work left: free the engines (their stats are kept)
        _write_manifest(ctx, manifest)
    for name in order:
        if name in ENGINE_STAGES:
            continue
        ts = time.time()
        stage: Stage = STAGES.get(name)()
        if name == "report":
            write_telemetry(ctx, ctx.t0)
        paths = stage.run(ctx)
        ctx.outputs[name] = paths
        log.info("stage %s: %d artifact(s) in %.1fs", name, len(paths), time.time() - ts)
        _record(manifest, stage, paths)
        _write_manifest(ctx, manifest)
    write_telemetry(ctx, ctx.t0)


def _record(manifest: dict, stage: Any, paths: list[Path]) -> None:
    manifest["stages"].append(
        {"stage": stage.name, "version": stage.version, "artifacts": [{"path": str(p), **_prov_args(p)} for p in paths]}
    )


def _write_manifest(ctx: Context, manifest: dict) -> None:
    manifest["problems"] = str(ctx.problems_path) if ctx.problems_path else None
    if (placement := placement_info(ctx)) is not None:
        manifest["placement"] = placement
    write_text_atomic(ctx.run_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))


def _prov_args(p: Path) -> dict:
    if p.suffix != ".arrow" or not p.exists():
        return {}
    prov = read_provenance(p)
    return {"stage_args": prov.get("args"), "inputs": prov.get("inputs")}
