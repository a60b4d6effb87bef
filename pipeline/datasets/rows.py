"""The one row reader of the dataset plug-ins, and their one handling of malformed rows (``on_bad_row``).

:func:`read_records` yields ``(row number, record)`` from JSONL(.gz) or Parquet files.
:class:`BadRows` applies ``dataset.options.on_bad_row``: ``raise`` (default) stops with a
:class:`~pipeline.datasets.protocol.DatasetError` naming the file, row and field and the fix;
``skip`` keeps going and records one skip record per row in ``skipped``:
``{"file", "row", "field", "reason"}`` (the same record MedCalc's CSV reader and the
importers write).
"""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path
import random
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from pipeline.datasets.protocol import DatasetError

if TYPE_CHECKING:
    from pipeline.config import DatasetConfig


def select(rows: list[dict], cfg: DatasetConfig) -> list[dict]:
    """The problems a run uses, for every plug-in alike: shuffled by ``dataset.seed`` when
    ``dataset.options.shuffle`` is set, then the first ``dataset.limit`` (None: all)."""
    if (cfg.options or {}).get("shuffle"):
        rows = list(rows)
        random.Random(int(cfg.seed or 0)).shuffle(rows)
    return rows[: cfg.limit or None]


ON_BAD_ROW = ("raise", "skip")


def skip_record(file: str | Path, row: object, reason: str, field: str = "") -> dict:
    """One skipped row: where it is, which field, and why."""
    return {"file": str(file), "row": row, "field": field, "reason": reason}


class BadRows:
    """``on_bad_row`` for one load: raise at the first malformed row, or skip and record it."""

    def __init__(self, dataset: str, options: dict, default: str = "raise"):
        self.dataset = dataset
        self.mode = options.get("on_bad_row", default)
        if self.mode not in ON_BAD_ROW:
            raise DatasetError(f"{dataset}: options.on_bad_row={self.mode!r}: use 'raise' or 'skip'")
        self.skipped: list[dict] = []

    def bad(
        self,
        file: str | Path,
        row: object,
        reason: str,
        *,
        field: str = "",
        message: str | None = None,
        fixable: bool = True,
    ) -> None:
        """Row ``row`` of ``file`` is malformed: raise (naming the fix) or record it.

        ``message`` is the error text (default ``"<file>: row <row>: <reason>"``); ``fixable=False``
        raises without suggesting ``on_bad_row=skip``.
        """
        if self.mode == "raise":
            msg = message or f"{file}: row {row}: {reason}"
            raise DatasetError(
                msg
                + (
                    "; fix the row, or set dataset.options.on_bad_row=skip to skip and record it"
                    if fixable
                    else "; fix the file"
                )
            )
        self.skipped.append(skip_record(file, row, reason, field))

    def warn(self, what: str = "malformed row(s)") -> None:
        if self.skipped:
            warnings.warn(
                f"{self.dataset}: skipped {len(self.skipped)} {what} "
                f"(first: row {self.skipped[0]['row']}: {self.skipped[0]['reason']})",
                stacklevel=3,
            )


def _utf8_lines(path: Path, f: Any, gz: bool = False) -> Iterator[tuple[int, str]]:
    """Numbered lines; bytes that are not UTF-8 (or a damaged .gz) raise one error naming the file."""
    import zlib

    from pipeline.errors_fs import NotUtf8

    i = 0
    try:
        for i, line in enumerate(f, start=1):
            yield i, line
    except UnicodeDecodeError as e:
        raise NotUtf8(f"{path} (line {i + 1})", e) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        if not gz:
            raise
        raise DatasetError(f"{path}: not a readable gzip file ({e}); check the file") from None


def read_records(path: Path, on_bad_line: Optional[Callable[[int, str], None]] = None) -> Iterator[tuple[int, dict]]:
    """(row number, record) from a .jsonl(.gz) or .parquet file; row numbers are 1-based lines.

    A line that is not a JSON object raises :class:`DatasetError`, or, with ``on_bad_line``,
    is reported as ``on_bad_line(line, reason)`` and skipped.
    """
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            recs = pq.read_table(path).to_pylist()
        except (OSError, ValueError) as e:  # pyarrow.ArrowInvalid is a ValueError: a damaged file
            raise DatasetError(
                f"{path}: not a readable Parquet file ({' '.join(str(e).split())[:160]}); "
                "check the file (or give a .jsonl)"
            ) from None
        for i, rec in enumerate(recs, start=1):
            yield i, rec
        return
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".ndjson")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            for i, line in _utf8_lines(path, f, gz=name.endswith(".gz")):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    why = None if isinstance(rec, dict) else f"expected a JSON object, got {type(rec).__name__}"
                except json.JSONDecodeError as e:
                    why = f"not valid JSON ({e.msg} at column {e.colno})"
                if why is None:
                    yield i, rec
                elif on_bad_line is None:
                    raise DatasetError(
                        f"{path}: row {i}: {why}; fix the line (one JSON object per line), "
                        "or set dataset.options.on_bad_row=skip to skip and record it"
                    )
                else:
                    on_bad_line(i, why)
        return
    raise DatasetError(f"{path}: unsupported file type; use .jsonl, .jsonl.gz or .parquet")
