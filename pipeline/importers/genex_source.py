"""The source's own answer as each released transfer file records it (``source_answers.arrow``).

A study transfer file (``<src>_thoughts_to_<tgt>_zero_shot_<variant>.jsonl``)
holds, beside the target's ``Target Answer``/``Target Result``, the source's
``LLM Answer``/``Result`` as that file recorded it.  These differ between a
source's transfer files (3 to 18 of 100 rows per source in the post-training
release) and from its ``_zero_shot_original`` run, and the study's notebooks
read them: the post-training agreement takes the source's answer from its
first transfer file in sorted file-name order, and the CoT-effect analysis
reads them for a failed target row.  ``answers.arrow`` keeps only the target's
side, so ``crosscot import-genex`` writes these fields beside it, one row per
transfer row, keyed like ``answers`` plus the file name.

A live run has no such file: its source's own answer is its Default answer,
which every reader here falls back to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.datasets.rows import read_records

SOURCE_ANSWERS_FILE = "source_answers.arrow"

SOURCE_ANSWERS = pa.schema(
    [
        pa.field("problem_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        # The released file's name: the study's "first transfer file" is the first in sorted order.
        pa.field("file", pa.string(), nullable=False),
        # 0-based position of the row in its file (the notebooks pair rows by position).
        pa.field("position", pa.int32(), nullable=False),
        # The row's LLM Answer / Result verbatim (null when the key is absent).
        pa.field("source_answer", pa.string()),
        pa.field("source_result", pa.string()),
        # Whether the row carries the target's fields (False: the target generation failed).
        pa.field("has_target", pa.bool_(), nullable=False),
    ]
)


def _s(x: Any) -> str | None:
    return None if x is None else str(x)


def read_source_answers(src_dir: str | Path) -> pa.Table:
    """One row per transfer-file row of ``src_dir`` (files outside the naming scheme are ignored here;
    the main importer records them)."""
    from pipeline.importers.genex_medcalc import Skips, parse_filename

    rows: dict[str, list] = {f.name: [] for f in SOURCE_ANSWERS}
    quiet = Skips()  # the main importer already records unknown names and bad lines
    for path in sorted(Path(src_dir).glob("*.jsonl")):
        spec = parse_filename(path, quiet)
        if spec is None or spec.method != "transfer":
            continue
        pos = 0
        for _, rec in read_records(path, on_bad_line=lambda *_: None):
            rn = rec.get("Row Number")
            if isinstance(rn, str) and rn.strip().isdigit():
                rn = int(rn)
            if not isinstance(rn, int):
                continue
            for k, v in (
                ("problem_id", str(rn)),
                ("source", spec.source),
                ("variant", spec.variant),
                ("target", spec.target),
                ("file", path.name),
                ("position", pos),
                ("source_answer", _s(rec.get("LLM Answer"))),
                ("source_result", _s(rec.get("Result"))),
                ("has_target", "Target Result" in rec or "Target Answer" in rec),
            ):
                rows[k].append(v)
            pos += 1
    return pa.Table.from_pydict(rows, schema=SOURCE_ANSWERS)
