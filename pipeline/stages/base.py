"""The stage protocol, the run context, and sharded engine work shared by all stages.

A stage is a small class with a ``name``, the stages it ``requires``, and
``run(ctx) -> list[Path]`` returning the artifacts it produced.  Work that
needs engines is expressed as :class:`Job` s (one per model and artifact), cut
into shards; :func:`execute_jobs` runs the models in waves (all at once when
their engines fit the cluster together; else the placement schedule's waves),
submits every pending shard of a wave's models at once (engines run
concurrently; each gets whole batches), writes each shard as it completes, and
finishes artifacts.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import pyarrow as pa

from pipeline.artifacts import Store, provenance, read_table
from pipeline.config import RunConfig, hash_fields

log = logging.getLogger("crosscot")


class Stage(Protocol):
    name: str
    requires: tuple[str, ...]
    version: str  # bump when a stage's logic changes its outputs

    def run(self, ctx: "Context") -> list[Path]: ...


@dataclass
class Context:
    cfg: RunConfig
    store: Store
    run_dir: Path
    pool_factory: Callable[[], Any]
    outputs: dict[str, list[Path]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _pool: Any = None
    _problems: Optional[pa.Table] = None
    problems_path: Optional[Path] = None
    waves: list[dict] = field(default_factory=list)  # engine waves as they ran (see execute_jobs)

    @property
    def pool(self):
        if self._pool is None:
            self._pool = self.pool_factory()
        return self._pool

    @property
    def problems(self) -> pa.Table:
        if self._problems is None:
            self._problems, self.problems_path = load_problems(self)
        return self._problems

    def model_key(self, name: str) -> dict:
        return hash_fields(self.cfg.model(name))

    def artifact_hash(self, path: Path) -> str:
        return path.stem.rsplit("-", 1)[-1]


def load_problems(ctx: Context) -> tuple[pa.Table, Path]:
    """Load the dataset once into a content-hashed ``problems`` artifact."""
    from pipeline.artifacts import write_table
    from pipeline.datasets import get_dataset
    from pipeline.schema import PROBLEMS, conform

    ds_cfg = ctx.cfg.dataset
    key = {"stage": "problems", "dataset": hash_fields(ds_cfg), "v": 1}
    path = ctx.store.path("problems", ds_cfg.name, key)
    if path.exists():
        return conform(read_table(path), PROBLEMS), path  # [issue10 hook] artifacts from before answer_prefix
    table = conform(get_dataset(ds_cfg.name).load(ds_cfg), PROBLEMS)
    if table.num_rows == 0:
        raise ValueError(f"dataset {ds_cfg.name!r} loaded no problems (path={ds_cfg.path!r}, "
                         f"limit={ds_cfg.limit}); check dataset.path")
    ids = table.column("problem_id").to_pylist()
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"dataset {ds_cfg.name!r} has duplicate problem_id values {dup}; ids must be unique")
    write_table(path, table, provenance("problems", hash_fields(ds_cfg), {}))
    return table, path


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
    :class:`pipeline.placement.Schedule` in which ``stage`` runs, each split
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
    """:func:`plan_stage_waves` for this run's pool (one group when the pool cannot plan, e.g. FakePool)."""
    pool = ctx.pool
    if not hasattr(pool, "schedule") or not hasattr(pool, "fits"):
        return [list(dict.fromkeys(models))]
    return plan_stage_waves(stage, models, pool.schedule(), set(getattr(pool, "actors", {})), pool.fits)


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
            stopped = pool.ensure(wave) if hasattr(pool, "ensure") else (pool.start(wave) or [])
            where = {m: _where(pool, m) for m in wave}
            log.info("%s wave %d/%d: %s%s", desc, wi, len(waves),
                     ", ".join(f"{m} on {where[m]}" for m in wave),
                     f" (stopped {', '.join(stopped)})" if stopped else "")
            failures += _run_wave(pool, [t for t in todo if t[0].model in wave], desc, bar)
            if hasattr(pool, "locate"):
                pool.locate(wave)
            rec = {"stage": stage, "wave": wi, "of": len(waves), "models": wave, "where": where,
                   "requests": {m: per_model.get(m, 0) for m in wave}, "stopped_before": stopped,
                   "start": t_w, "end": time.time()}
            if isinstance(getattr(pool, "waves", None), list):
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


def _where(pool: Any, model: str) -> str:
    w = (getattr(pool, "where", None) or {}).get(model) if isinstance(getattr(pool, "where", None), dict) else None
    if not w:
        return "local"
    return f"node {str(w.get('node_id', '?'))[:12]} ({w.get('ip', '?')}, pid {w.get('pid', '?')})"


def _run_wave(pool: Any, todo: list, desc: str, bar: Any) -> list[str]:
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


def stage_meta(ctx: Context, stage: str, args: Any, inputs: dict[str, str], models: list[str]) -> dict:
    sampling = {m: {"greedy": hash_fields(ctx.cfg.model(m).greedy), "sampled": hash_fields(ctx.cfg.model(m).sampled)}
                for m in models}
    return provenance(stage, args, inputs, {"models": {m: hash_fields(ctx.cfg.model(m)) for m in models},
                                            "sampling": sampling})


def timed(ctx: Context, name: str):
    class _T:
        def __enter__(self):
            self.t = time.time()

        def __exit__(self, *a):
            ctx.timings[name] = ctx.timings.get(name, 0.0) + time.time() - self.t

    return _T()


def gold_map(ctx: Context) -> dict[str, str]:
    t = ctx.problems
    return dict(zip(t.column("problem_id").to_pylist(), t.column("gold").to_pylist()))


def prompt_map(ctx: Context) -> dict[str, str]:
    t = ctx.problems
    return dict(zip(t.column("problem_id").to_pylist(), t.column("prompt").to_pylist()))


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
