"""Generic dataset from the user's JSONL / Parquet file, with a column mapping.

``cfg.path`` is a ``.jsonl`` / ``.jsonl.gz`` / ``.parquet`` file.  ``cfg.options``:

* ``id`` — column holding a unique id (default: none; the 0-based row index is used);
* ``question`` — column with the problem text (default ``question``; ``prompt`` is
  accepted as an alias key in the options);
* ``answer`` — column with the gold answer (default ``answer``);
* ``answer_regex`` — optional regex whose first group is the gold inside the answer
  column (e.g. ``'####\\s*(.+)$'`` for GSM8K-style solutions);
* ``prompt_template`` — ``str.format`` template over the row's columns, e.g.
  ``"{question}\\nAnswer with 'Answer: <number>'."`` (default: the question as is);
* ``check`` — ``numeric`` (the final number of the extracted answer equals the gold
  within ``rel_tol``, default 1e-6) or
  ``exact`` (normalized exact match: case, surrounding punctuation and whitespace
  ignored); default ``numeric``;
* ``meta`` — list of extra columns copied into ``meta``;
* ``on_bad_row`` — ``raise`` (default: :class:`DatasetError` naming file, row and
  field) or ``skip`` (the row is dropped and recorded in ``self.skipped``, with a
  warning giving the count and the first reason).

The gold JSON is ``{"answer": ..., "check": ..., "rel_tol": ...}`` so that scoring
needs nothing but the problems table.
"""

from __future__ import annotations

import json
import os
import re
import string
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import pyarrow as pa

from pipeline.datasets.gsm8k import extract_number, numbers_equal
from pipeline.datasets.protocol import DatasetBase, DatasetError
from pipeline.datasets.rows import BadRows, read_records, select
from pipeline.schema import PROBLEMS, from_rows

if TYPE_CHECKING:
    from pipeline.config import DatasetConfig

_ANSWER_LINE = re.compile(r"\b(?:final\s+answer|answer)\b\s*(?:is\s*:?|:)\s*(.+)", re.I)


def normalize_text(s: Optional[str]) -> str:
    """Lowercase, strip surrounding punctuation/quotes, collapse whitespace."""
    if s is None:
        return ""
    s = str(s).strip().lower()
    s = re.sub(r"\s+", " ", s)
    return s.strip(string.punctuation + " \"'`“”‘’")


class JsonlDataset(DatasetBase):
    name = "jsonl"

    def __init__(self, check: str = "numeric", rel_tol: float = 1e-6):
        self.default_check = check
        self.rel_tol = rel_tol
        self.skipped: list[dict] = []

    def load(self, cfg: DatasetConfig) -> pa.Table:
        opts = dict(cfg.options or {})
        path = cfg.path
        if not path:
            raise DatasetError(
                "jsonl: dataset.path is required (a .jsonl, .jsonl.gz or .parquet file); "
                "map its columns with dataset.options.{id,question,answer}"
            )
        p = Path(os.path.expanduser(str(path)))
        if not p.is_file():
            raise DatasetError(
                f"jsonl: dataset.path={str(path)!r} is not a file; point it at a .jsonl, .jsonl.gz or .parquet file"
            )
        id_col = opts.get("id")
        q_col = opts.get("question") or opts.get("prompt") or "question"
        a_col = opts.get("answer") or "answer"
        check = opts.get("check", self.default_check)
        if check not in ("numeric", "exact"):
            raise DatasetError(f"jsonl: options.check={check!r}: use 'numeric' or 'exact'")
        bad_rows = BadRows("jsonl", opts)
        rx = re.compile(opts["answer_regex"], re.S | re.M) if opts.get("answer_regex") else None
        template = opts.get("prompt_template")
        meta_cols = list(opts.get("meta") or [])
        rel_tol = float(opts.get("rel_tol", self.rel_tol))
        dname = opts.get("name") or self.name

        self.skipped = bad_rows.skipped
        rows, seen = [], {}
        for idx, (line, rec) in enumerate(read_records(p)):
            try:
                row = self._row(rec, idx, line, p, id_col, q_col, a_col, rx, template, meta_cols, check, rel_tol, dname)
            except DatasetError as e:
                bad_rows.bad(p, line, str(e), message=str(e))
                continue
            if row["problem_id"] in seen:
                msg = (
                    f"{p}: row {line}: field {id_col!r}: duplicate id {row['problem_id']!r} "
                    f"(first at row {seen[row['problem_id']]})"
                )
                bad_rows.bad(p, line, msg, field=str(id_col), message=msg, fixable=False)
                continue
            seen[row["problem_id"]] = line
            rows.append(row)
        bad_rows.warn(f"malformed row(s) of {p}")
        return from_rows(select(rows, cfg), PROBLEMS)

    @staticmethod
    def _row(rec, idx, line, p, id_col, q_col, a_col, rx, template, meta_cols, check, rel_tol, dname) -> dict:
        def field(col: str) -> str:
            if col not in rec:
                raise DatasetError(f"{p}: row {line}: field {col!r} is missing (columns: {sorted(rec)})")
            v = rec[col]
            if v is None or (isinstance(v, str) and not v.strip()):
                raise DatasetError(f"{p}: row {line}: field {col!r} is empty")
            return v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)

        for col, ok, want in ((q_col, (str,), "text"), (a_col, (str, int, float), "text or a number")):
            v = rec.get(col)
            if v is not None and (isinstance(v, bool) or not isinstance(v, ok)):
                raise DatasetError(
                    f"{p}: row {line}: field {col!r} is {type(v).__name__} {json.dumps(v)[:60]}, expected {want}"
                )
        question = field(q_col)
        answer = field(a_col)
        if rx is not None:
            m = rx.search(answer)
            if not m:
                raise DatasetError(f"{p}: row {line}: field {a_col!r} does not match answer_regex {rx.pattern!r}")
            answer = (m.group(1) if m.groups() else m.group(0)).strip()
        if check == "numeric" and extract_number(answer) is None:
            raise DatasetError(f"{p}: row {line}: field {a_col!r}={answer!r} has no number (options.check=numeric)")
        pid = field(id_col) if id_col else str(idx)
        if template:
            try:
                prompt = template.format(**{**rec, "question": question})
            except KeyError as e:
                raise DatasetError(
                    f"{p}: row {line}: prompt_template names field {e.args[0]!r}, which the row lacks"
                ) from None
        else:
            prompt = question
        meta = {"file": p.name, "row": line}
        for c in meta_cols:
            meta[c] = rec.get(c)
        return {
            "dataset": dname,
            "problem_id": str(pid),
            "prompt": prompt,
            "gold": json.dumps({"answer": answer, "check": check, "rel_tol": rel_tol}),
            "meta": json.dumps(meta, default=str),
        }

    def extract(self, text: Optional[str]) -> Optional[str]:
        """The answer as text: the content of the last ``#### ...``, ``\\boxed{...}`` or
        ``Answer: ...`` marker, else the last non-empty line.  Numeric checks then take
        the final number of that string, so prompts should ask for ``Answer: <x>``."""
        if not text:
            return None
        from pipeline.datasets.gsm8k import _HASH, _boxed_contents

        hashes = list(_HASH.finditer(text))
        if hashes and hashes[-1].group(1).strip():
            return hashes[-1].group(1).strip()
        boxed = [b for b in _boxed_contents(text) if b.strip()]
        if boxed:
            return boxed[-1].strip()
        m = list(_ANSWER_LINE.finditer(text))
        if m and m[-1].group(1).strip():
            return m[-1].group(1).strip()
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else None

    def check(self, extracted: Optional[str], gold: dict) -> bool:
        if extracted is None:
            return False
        mode = gold.get("check", self.default_check)
        if mode == "exact":
            return normalize_text(extracted) == normalize_text(gold.get("answer"))
        num = extract_number(extracted)
        return num is not None and numbers_equal(
            num, gold.get("answer"), rel_tol=float(gold.get("rel_tol", self.rel_tol))
        )
