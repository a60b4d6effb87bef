"""The stage protocol, the run context, and sharded engine work shared by all stages.

A stage is a small class with a ``name``, the stages it ``requires``, and
``run(ctx) -> list[Path]`` returning the artifacts it produced.  Work that
needs engines is expressed as :class:`Job` s (one per model and artifact), cut
into shards; :func:`execute_jobs` submits every pending shard of every model at
once (engines of different models run concurrently; each engine gets whole
batches), writes each shard as it completes, and finishes artifacts.
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
        return read_table(path), path
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


def execute_jobs(ctx: Context, jobs: list[Job], desc: str) -> list[Path]:
    """Run jobs' pending shards concurrently across models; finish their artifacts."""
    from tqdm.auto import tqdm

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
    bar = tqdm(total=total, desc=desc, unit="req", disable=not ctx.cfg.progress or total == 0, leave=False)
    pool = ctx.pool if todo else None
    refs = {}
    for n, (job, shards, skey, chunk) in enumerate(todo):
        refs[n] = pool.submit(job.model, job.method, [c["request"] for c in chunk])
    pending = dict(refs)
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
            from pipeline.schema import from_rows

            shards.write(skey, from_rows(rows, job.schema))
            bar.update(len(chunk))
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
