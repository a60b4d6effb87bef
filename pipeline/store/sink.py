"""Append-only, checkpointed rows of one artifact while a streaming run fills it.

A :class:`RowSink` collects the rows of one content-addressed artifact as
items finish, in any order.  It flushes them to an append-only shard
(``<artifact>.parts/<seq>-<nonce>.arrow``, written atomically) every
``flush_rows`` rows or ``flush_seconds`` seconds, so a killed run loses at
most the rows not yet flushed (and the requests in flight).  On restart the
sink reads every shard back: :meth:`done` tells which row keys are finished,
and those items are not submitted again.  :meth:`finish` concatenates the
shards, keeps one row per key (the last), sorts by key, and writes the
artifact atomically with its provenance, then drops the shards.  Sorting by
key makes the artifact independent of arrival order, flush sizes and
in-flight limits.

Once the artifact exists the sink is read-only: every key is done.

Concurrent jobs on one store (separate processes): shard writes and the artifact's publication
happen under the artifact's inter-process lock (:func:`pipeline.store.artifacts.artifact_lock`).
A sink whose artifact another job published meanwhile merges instead of overwriting: the
artifact is rewritten only when this sink holds rows it lacks (``wrote`` says whether it did),
so no job ever loses another job's rows and an artifact is never written twice for nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import pyarrow as pa

from pipeline.store.artifacts import CorruptArtifact, artifact_lock, dedup, quarantine, read_table, write_table


class RowSink:
    """Rows of one artifact (see module docstring)."""

    def __init__(
        self,
        artifact: Path,
        schema: pa.Schema,
        key_columns: Iterable[str],
        flush_rows: int = 256,
        flush_seconds: float = 30.0,
    ):
        self.artifact = Path(artifact)
        self.schema = schema
        self.key_columns = tuple(key_columns)
        self.flush_rows = max(1, int(flush_rows))
        self.flush_seconds = float(flush_seconds)
        self.dir = self.artifact.with_suffix(".parts")
        self.complete = self.artifact.exists()
        self._buf: list[dict] = []
        self._last_flush = time.time()
        self._rows: dict[tuple, dict] = {}
        self._seq = 0
        self.added = 0  # rows added in this run (not read back)
        self.claims: dict[tuple, Any] = {}  # key -> future of the row being made (see Flow.once)
        self.wrote: Optional[bool] = None  # set by finish(): did this sink (re)publish the artifact?
        if self.complete:
            try:
                done = read_table(self.artifact)
            except CorruptArtifact as e:  # truncated or damaged: recomputed (from its shards, if any)
                quarantine(self.artifact, e.why)
                self.complete = False
            else:
                for r in done.to_pylist():
                    self._rows[self.key(r)] = r
        if not self.complete and self.dir.exists():
            parts = sorted(self.dir.glob("*.arrow"))
            for p in parts:
                try:
                    t = read_table(p)
                except ValueError:  # a torn shard cannot exist (atomic writes); a foreign file is dropped
                    p.unlink()
                    continue
                for r in t.to_pylist():
                    self._rows[self.key(r)] = r
            self._seq = len(parts)

    def key(self, row: dict) -> tuple:
        return tuple(row.get(k) for k in self.key_columns)

    def done(self, key: tuple) -> bool:
        return key in self._rows

    def get(self, key: tuple) -> Optional[dict]:
        return self._rows.get(key)

    def rows(self) -> list[dict]:
        """Every finished row (read back or added), in key order."""
        return [self._rows[k] for k in sorted(self._rows, key=_sort_key)]

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: dict) -> None:
        if self.complete:
            raise RuntimeError(f"{self.artifact.name} is complete; no rows can be added")
        k = self.key(row)
        self._rows[k] = row
        self._buf.append(row)
        self.added += 1
        if len(self._buf) >= self.flush_rows or time.time() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write buffered rows as one new shard (atomic)."""
        self._last_flush = time.time()
        if not self._buf or self.complete:
            return
        from pipeline.schema import from_rows

        with artifact_lock(self.artifact):  # finish() of another job may be removing the folder
            self.dir.mkdir(parents=True, exist_ok=True)
            name = f"{self._seq:06d}-{os.getpid()}-{time.time_ns() % 10**9:09d}.arrow"
            write_table(self.dir / name, from_rows(self._buf, self.schema))
        self._seq += 1
        self._buf = []

    def finish(self, meta: dict) -> Path:
        """Write the artifact from every shard (one row per key, sorted), drop the shards.

        Under the artifact's lock; when another job published it meanwhile, its rows are kept and
        the file is rewritten only if this sink adds rows (see the module docstring)."""
        if self.complete:
            return self.artifact
        self.flush()
        from pipeline.schema import from_rows

        with artifact_lock(self.artifact):
            parts = sorted(self.dir.glob("*.arrow")) if self.dir.exists() else []
            tables = [read_table(p).cast(self.schema) for p in parts]
            if self._rows:  # rows read back or made here whose shard another job's finish removed
                tables.append(from_rows(list(self._rows.values()), self.schema))
            existing = read_table(self.artifact).cast(self.schema) if self.artifact.exists() else None
            if existing is not None:
                tables.insert(0, existing)
            table = dedup(pa.concat_tables(tables) if tables else self.schema.empty_table(), self.key_columns)
            self.wrote = existing is None or table.num_rows > existing.num_rows
            if self.wrote:
                write_table(self.artifact, table, meta)
            shutil.rmtree(self.dir, ignore_errors=True)
        self.complete = True
        return self.artifact


def _sort_key(k: tuple) -> tuple:
    return tuple((v is None, "" if v is None else (v if isinstance(v, (int, float)) else str(v))) for v in k)


__all__ = ["RowSink"]
