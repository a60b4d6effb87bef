"""Reading MedCalc-Bench's ``test_data.csv``: columns, row checks, output types and the gold dict.

One reader for every user of the benchmark file: the ``medcalc`` dataset plug-in
(:mod:`pipeline.datasets.medcalc`), ``crosscot judge`` and the study importer
(:mod:`pipeline.importers.genex_medcalc`).  Malformed rows become skip records
(:func:`pipeline.datasets.rows.skip_record`); a missing file or column raises
:class:`MedCalcLoadError` naming the fix.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from pathlib import Path
from typing import Any

from pipeline.datasets.rows import skip_record

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = (
    "Row Number",
    "Calculator ID",
    "Calculator Name",
    "Patient Note",
    "Question",
    "Ground Truth Answer",
    "Lower Limit",
    "Upper Limit",
)

DATE_RE = re.compile(r"\b(0?[1-9]|1[0-2])[/-](0?[1-9]|[12]\d|3[01])[/-](\d{4})\b")


class MedCalcLoadError(ValueError):
    """The benchmark CSV cannot be read; the message names file, row, column and the fix."""


def read_benchmark_csv(path: str | Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Read MedCalc-Bench ``test_data.csv``.

    Returns ``(rows, skips)``: valid rows as dicts of strings, and one skip record
    (:func:`pipeline.datasets.rows.skip_record`: file, row, field, reason) per malformed row.  Missing columns or an unreadable file raise MedCalcLoadError.
    """
    p = Path(path)
    if not p.is_file():
        raise MedCalcLoadError(
            f"MedCalc-Bench CSV not found: {p}. Point the dataset's `path` at the benchmark's "
            "test_data.csv (e.g. ../shared/data/medcalc-bench/test_data.csv)."
        )
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise MedCalcLoadError(
                f"{p}: missing column(s) {missing}; found {header}. "
                "This does not look like MedCalc-Bench test_data.csv; use the benchmark's file "
                "or rename the columns."
            )
        rows: list[dict[str, str]] = []
        skips: list[dict[str, str]] = []
        seen: dict[str, int] = {}
        for line_no, raw in enumerate(reader, start=2):  # header is line 1
            row = {k: (v if v is not None else "") for k, v in raw.items() if k is not None}

            def skip(column: str, reason: str) -> None:
                skips.append(skip_record(p, str(line_no), reason, field=column))
                log.warning("%s line %d, column %r: %s", p, line_no, column, reason)

            rn = row.get("Row Number", "").strip()
            if not rn.isdigit():
                skip("Row Number", f"Row Number {rn!r} is not a positive integer; fix or delete the row")
                continue
            if rn in seen:
                skip("Row Number", f"Row Number {rn} repeats line {seen[rn]}; row numbers must be unique")
                continue
            bad = [c for c in ("Patient Note", "Question", "Ground Truth Answer") if not row.get(c, "").strip()]
            if bad:
                skip(bad[0], f"empty {bad[0]!r}; fill it in or delete the row")
                continue
            gt = row["Ground Truth Answer"].strip()
            otype = infer_output_type(gt, row.get("Output Type"))
            if otype == "decimal":
                lo, hi = to_float(row.get("Lower Limit")), to_float(row.get("Upper Limit"))
                if lo is None or hi is None or lo > hi:
                    skip(
                        "Lower Limit",
                        f"decimal answer needs numeric Lower/Upper Limit with Lower <= Upper, got "
                        f"{row.get('Lower Limit')!r}/{row.get('Upper Limit')!r}",
                    )
                    continue
            elif otype == "integer" and to_float(gt) is None:
                skip("Ground Truth Answer", f"integer calculator with non-numeric answer {gt!r}")
                continue
            seen[rn] = line_no
            rows.append(row)
    return rows, skips


def infer_output_type(gold_answer: str, declared: str | None = None) -> str:
    """``integer``/``decimal``/``date``/``weeks_days`` from the declared type or the gold text."""
    gt = (gold_answer or "").strip()
    # Gestational age is declared "integer" in the CSV but is a (weeks, days) pair.
    if re.search(r"weeks?", gt, re.IGNORECASE) and re.search(r"days?", gt, re.IGNORECASE):
        return "weeks_days"
    if DATE_RE.fullmatch(gt):
        return "date"
    d = (declared or "").strip().lower()
    if d in ("integer", "decimal", "date"):
        return d
    if re.fullmatch(r"-?\d+", gt):
        return "integer"
    return "decimal"


def make_gold(
    answer: str,
    lower: str | None,
    upper: str | None,
    calculator_id: str,
    calculator_name: str,
    output_type: str | None = None,
) -> dict[str, Any]:
    """The gold dict stored (JSON-encoded) in ``problems.gold`` / ``answers.gold``."""
    return {
        "answer": answer,
        "lower": lower if lower not in ("", None) else None,
        "upper": upper if upper not in ("", None) else None,
        "calculator_id": str(calculator_id),
        "calculator_name": calculator_name,
        "output_type": infer_output_type(answer, output_type),
    }


def to_float(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(str(x).strip().replace(",", ""))
    except ValueError:
        return None
    return v if math.isfinite(v) else None
