"""The run context every stage receives, and small helpers stages share.

:class:`Context` holds the run config, the artifact store, the engine pool (made on first use)
and the loaded problems; :func:`stage_meta` builds an artifact's provenance, :func:`timed`
adds a block's wall time to the run's stage timings.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pyarrow as pa

from pipeline.config import RunConfig, hash_fields, model_key, problems_key, to_plain
from pipeline.engine.protocol import Pool
from pipeline.store.artifacts import Store, provenance, read_table

log = logging.getLogger("crosscot")


@dataclass
class Context:
    cfg: RunConfig
    store: Store
    run_dir: Path
    pool_factory: Callable[[], Pool]
    outputs: dict[str, list[Path]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _pool: Optional[Pool] = None
    _problems: Optional[pa.Table] = None
    problems_path: Optional[Path] = None
    waves: list[dict] = field(default_factory=list)  # engine waves as they ran (see stages.runner)
    t0: float = field(default_factory=time.time)  # run start; telemetry times are seconds since then
    # stage -> model -> StageModelTelemetry (requests, first_submit, last_done), filled by the streaming flow
    stage_models: dict[str, dict] = field(default_factory=dict)
    # stage -> artifact paths, known when the stage opens (before any row exists)
    artifacts: dict[str, list[Path]] = field(default_factory=dict)
    _problem_rows: Optional[list[dict]] = None
    failed_items: set = field(default_factory=set)  # (stage, row key) of items that failed in this run
    # artifact path -> its RowSink; shared by the jobs of a sweep so one artifact has one writer
    sinks: dict = field(default_factory=dict)

    @property
    def started_pool(self) -> Optional[Pool]:
        """The pool when one was made (never makes one: telemetry, shutdown)."""
        return self._pool

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            self._pool = self.pool_factory()
        return self._pool

    @property
    def problems(self) -> pa.Table:
        if self._problems is None:
            self._problems, self.problems_path = load_problems(self)
        return self._problems

    def problem_rows(self) -> list[dict]:
        """The problems as dicts (loaded once)."""
        if self._problem_rows is None:
            self._problem_rows = self.problems.to_pylist()
        return self._problem_rows

    def sink(self, artifact: Path, schema: pa.Schema, key_columns: tuple[str, ...]):
        """A :class:`pipeline.store.sink.RowSink` for one artifact, with this run's flush settings."""
        from pipeline.store.sink import RowSink

        sink = self.sinks.get(Path(artifact))
        if sink is None:
            st = self.cfg.stream
            sink = self.sinks[Path(artifact)] = RowSink(artifact, schema, key_columns, st.flush_rows, st.flush_seconds)
        return sink

    def engine_waves(self, stage: str, models: list[str]) -> list[list[str]]:
        """Groups of ``models`` resident together: all at once when they fit, else the planned waves."""
        from pipeline.planning.waves import plan_stage_waves

        pool = self.pool
        if pool.fits(models):
            return [list(dict.fromkeys(models))]
        return plan_stage_waves("generate", models, pool.schedule(), set(pool.actors), pool.fits)

    def record_wave(self, rec: dict) -> None:
        """Keep an engine wave as it ran (telemetry, manifest)."""
        self.waves.append(rec)
        self.pool.waves.append(rec)

    def model_key(self, name: str) -> dict:
        """Key of model ``name``: fields, weights fingerprint and engine, no path (config/hashing.py)."""
        return model_key(self.cfg.model(name))

    def artifact_hash(self, path: Optional[Path]) -> str:
        if path is None:
            raise RuntimeError("internal: an input artifact is not known yet (its stage has not opened)")
        return path.stem.rsplit("-", 1)[-1]


def load_problems(ctx: Context) -> tuple[pa.Table, Path]:
    """Load the dataset once into a ``problems`` artifact named by the hash of its rows.

    Two levels, so that keys follow content both ways: the *load key* (data files' content, loader
    code, options: :func:`pipeline.config.problems_key`) names a small ``.ref`` file pointing at the
    artifact, and the artifact itself is named by its rows.  An edited data file or prompt reloads;
    a loader edit that leaves the rows alone reloads (cheap) and reuses every downstream artifact.
    """
    from pipeline.store.artifacts import content_hash, write_table
    from pipeline.store.atomic import write_text_atomic

    ds_cfg = ctx.cfg.dataset
    key = problems_key(ds_cfg)
    ref = ctx.store.path("problems", ds_cfg.name, key).with_suffix(".ref")
    if ref.exists():
        try:
            path = ctx.store.root / ref.read_text(encoding="utf-8").strip()
            usable = path.name.endswith(".arrow") and path.exists()
        except (UnicodeDecodeError, ValueError):  # a damaged .ref: the problems are loaded again
            usable = False
        if usable:
            from pipeline.store.artifacts import CorruptArtifact, quarantine

            try:
                return read_table(path), path
            except CorruptArtifact as e:  # damaged in the store: reloaded from the data below
                quarantine(path, e.why)
    table = read_problems(ds_cfg)
    path = ctx.store.path("problems", ds_cfg.name, {"rows": content_hash(table.to_pylist(), 32)})
    if not path.exists():
        from pipeline.engine.determinism import run_determinism

        write_table(
            path,
            table,
            provenance("problems", key, {}, {"dataset": to_plain(ds_cfg), "determinism": run_determinism(ctx.cfg)}),
        )
    write_text_atomic(ref, path.name + "\n")
    return table, path


def read_problems(ds_cfg: Any) -> pa.Table:
    """The dataset's problems, checked: some rows (after every filter), unique ids."""
    from pipeline.datasets import get_dataset
    from pipeline.datasets.protocol import DatasetError
    from pipeline.schema import PROBLEMS, conform

    table = conform(get_dataset(ds_cfg.name).load(ds_cfg), PROBLEMS)
    if table.num_rows == 0:
        raise DatasetError(
            f"dataset {ds_cfg.name!r} loaded no problems (path={ds_cfg.path!r}, "
            f"limit={ds_cfg.limit}, options={dict(ds_cfg.options or {})}): nothing to run; "
            "check dataset.path and the filters in dataset.options"
        )
    ids = table.column("problem_id").to_pylist()
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DatasetError(f"dataset {ds_cfg.name!r} has duplicate problem_id values {dup}; ids must be unique")
    return table


def problems_ref(store_root: Path, ds_cfg: Any) -> Path:
    """The ``.ref`` file naming the problems artifact of ``ds_cfg`` (see :func:`load_problems`)."""
    from pipeline.store.artifacts import content_hash

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ds_cfg.name)
    return Path(store_root) / f"problems-{safe}-{content_hash(problems_key(ds_cfg))}.ref"


def stage_meta(ctx: Context, stage: str, args: Any, inputs: dict[str, Any], models: list[str]) -> dict:
    sampling = {
        m: {"greedy": hash_fields(ctx.cfg.model(m).greedy), "sampled": hash_fields(ctx.cfg.model(m).sampled)}
        for m in models
    }
    from pipeline.engine.determinism import run_determinism

    return provenance(
        stage,
        args,
        inputs,
        {
            "models": {m: hash_fields(ctx.cfg.model(m)) for m in models},
            "sampling": sampling,
            "determinism": run_determinism(ctx.cfg),
        },
    )


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
