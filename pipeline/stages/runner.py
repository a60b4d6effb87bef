"""Execution of engine work: :class:`Job` s cut into shards, run wave by wave on the pool.

Work that needs engines is expressed as :class:`Job` s (one per model and artifact), cut
into shards; :func:`execute_jobs` runs the models in waves (all at once when
their engines fit the cluster together; else the placement schedule's waves),
submits every pending shard of a wave's models at once (engines run
concurrently; each gets whole batches), writes each shard as it completes, and
finishes artifacts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pyarrow as pa

from pipeline.engine.protocol import Pool
from pipeline.stages.context import Context

log = logging.getLogger("crosscot")


@dataclass
class Job:
    """Engine work for one model that produces one artifact."""

    model: str
    method: str  # ModelEngine method taking a list of request dicts
    artifact: Path
    schema: pa.Schema
    key_columns: tuple[str, ...]
    items: list[dict]  # one per output row: {"request": ..., "row": ...}
    meta: dict
    chunk_size: int = 64


def plan_stage_waves(stage: str, models: list[str], schedule: Any, loaded: set[str],
                     fits: Callable[[list[str]], bool]) -> list[list[str]]:
    """Groups of models that run one after another in ``stage`` (each group resident at once).

    All at once when they fit together.  Otherwise the planned waves of the
    :class:`pipeline.planning.schedule.Schedule` in which ``stage`` runs, each split
    further if it does not fit (``fits`` also applies ``ray.max_concurrent_engines``),
    then models the schedule does not place in this stage packed first-fit.
    Groups holding an engine that is already loaded go first (e.g. the last
    generate wave's models start the transfer stage while still loaded).
    """
    models = list(dict.fromkeys(models))
    if not models:
        return []
    if fits(models):
        return [models]
    groups: list[list[str]] = []
    seen: set[str] = set()
    for w in (schedule.waves if schedule is not None else []):
        g = [p.model for p in w.placements
             if p.model in models and p.model not in seen and stage in p.stages]
        if g:
            groups.append(g)
            seen |= set(g)
    rest = [m for m in models if m not in seen]
    if rest:
        groups.append(rest)
    waves: list[list[str]] = []
    for g in groups:
        split: list[list[str]] = []
        for m in g:
            for w in split:
                if fits(w + [m]):
                    w.append(m)
                    break
            else:
                split.append([m])
        waves += split
    return sorted(waves, key=lambda w: not any(m in loaded for m in w))


def stage_waves(ctx: "Context", stage: str, models: list[str]) -> list[list[str]]:
    """:func:`plan_stage_waves` for this run's pool (one group when every engine fits, e.g. in-process pools)."""
    pool = ctx.pool
    return plan_stage_waves(stage, models, pool.schedule(), set(pool.actors), pool.fits)


def execute_jobs(ctx: Context, jobs: list[Job], desc: str, stage: Optional[str] = None) -> list[Path]:
    """Run jobs' pending shards wave by wave (models of a wave concurrently); finish their artifacts.

    Waves come from :func:`stage_waves`: every model at once when all engines
    fit the cluster, else the placement schedule's waves.  Before a wave the
    pool makes its engines resident (stopping engines not needed, when the
    wave would not fit beside them) and engines of the wave stay loaded
    afterwards, so the next stage starts with them.  Each shard (``chunk_size``
    items of one job, always the same items: the cut depends only on the
    job's item order) is written atomically when its batch returns; a batch
    that fails after Ray's actor restarts and task retries leaves its shard
    pending, the other batches and waves go on, and the stage raises at the
    end so a rerun redoes only the failed work.
    """
    from tqdm.auto import tqdm

    stage = stage or desc
    todo = []  # (job, shardset, shard_key, items)
    finished = []
    for job in jobs:
        if job.artifact.exists():
            finished.append(job.artifact)
            continue
        shards = ctx.store.shards(job.artifact, job.key_columns)
        for i in range(0, len(job.items), job.chunk_size):
            chunk = job.items[i:i + job.chunk_size]
            skey = [[r["row"][k] for k in job.key_columns] for r in chunk]
            if not shards.done(skey):
                todo.append((job, shards, skey, chunk))
    total = sum(len(t[3]) for t in todo)
    failures: list[str] = []
    if todo:
        pool = ctx.pool
        waves = stage_waves(ctx, stage, [t[0].model for t in todo])
        if len(waves) > 1:
            log.info("%s: %d waves: %s", desc, len(waves), " | ".join(", ".join(w) for w in waves))
        bar = tqdm(total=total, desc=desc, unit="req", disable=not ctx.cfg.progress, leave=False)
        per_model: dict[str, int] = {}
        for t in todo:
            per_model[t[0].model] = per_model.get(t[0].model, 0) + len(t[3])
        for wi, wave in enumerate(waves, 1):
            t_w = time.time()
            stopped = pool.ensure(wave)
            where = {m: _where(pool, m) for m in wave}
            log.info("%s wave %d/%d: %s%s", desc, wi, len(waves),
                     ", ".join(f"{m} on {where[m]}" for m in wave),
                     f" (stopped {', '.join(stopped)})" if stopped else "")
            failures += _run_wave(pool, [t for t in todo if t[0].model in wave], desc, bar)
            pool.locate(wave)
            rec = {"stage": stage, "wave": wi, "of": len(waves), "models": wave, "where": where,
                   "requests": {m: per_model.get(m, 0) for m in wave}, "stopped_before": stopped,
                   "start": t_w, "end": time.time()}
            pool.waves.append(rec)
            ctx.waves.append(rec)
        bar.close()
    if failures:
        raise RuntimeError(
            f"{desc}: {len(failures)} batch(es) failed after engine restarts/retries (first: {failures[0]}). "
            "Finished shards are kept: rerun the same command to redo only the failed work."
        )
    for job in jobs:
        if not job.artifact.exists():
            ctx.store.shards(job.artifact, job.key_columns).finish(job.schema, job.meta)
            finished.append(job.artifact)
    return finished


def _where(pool: Pool, model: str) -> str:
    w = pool.where.get(model)
    if not w:
        return "local"
    return f"node {str(w.get('node_id', '?'))[:12]} ({w.get('ip', '?')}, pid {w.get('pid', '?')})"


def _run_wave(pool: Pool, todo: list, desc: str, bar: Any) -> list[str]:
    """Submit every shard of the wave at once, write each as it returns; the failures' descriptions."""
    from pipeline.schema import from_rows

    pending = {n: pool.submit(job.model, job.method, [c["request"] for c in chunk])
               for n, (job, shards, skey, chunk) in enumerate(todo)}
    failures: list[str] = []
    while pending:
        done_ids = pool.wait(list(pending.values()))
        for n in [k for k, r in pending.items() if r in done_ids]:
            job, shards, skey, chunk = todo[n]
            try:
                results = pool.get(pending.pop(n))
            except Exception as e:  # noqa: BLE001 - keep going; the shard stays pending for a rerun
                log.error("%s: batch of %d for %s failed after retries: %s", desc, len(chunk), job.model, e)
                failures.append(f"{job.model}: {type(e).__name__}: {str(e)[:300]}")
                continue
            rows = [{**c["row"], **_pick(res, job.schema)} for c, res in zip(chunk, results)]
            shards.write(skey, from_rows(rows, job.schema))
            bar.update(len(chunk))
    return failures


def _pick(res: dict, schema: pa.Schema) -> dict:
    names = set(schema.names)
    return {k: v for k, v in res.items() if k in names}
