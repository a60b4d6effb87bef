"""Reader of the study's raw human ratings (``genex-user-study/clean_data_all_rows.csv``).

The CSV is wide: one row per participant, one column per (CoT source colour,
item, criterion).  Headers look like::

    orange-model-185 - Clarity of Steps: The reasoning steps were clear ... (1 = ..., 5 = ...)
    best-overall-185 - <span style="color:#2980b9;">Blue Model</span>

Colours name the CoT sources (:data:`COLOURS`): orange = OSS, blue = DAPO,
green = QwQ+DAPO/OSS, purple = QwQ+OSS/DAPO.  Ratings are 1–5 (higher is
better); ``Best Overall`` is a rank 1–4 (1 = best).  A blank cell means the
participant did not see that item.  Participants are numbered by their row
(``P01``, ``P02``, ...).

:func:`read_ratings` returns the long table ``participant, item, source, colour,
criterion, value`` (``value`` is the rating, or the raw rank for ``Best Overall``).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import polars as pl

COLOURS = {"orange": "OSS", "blue": "DAPO", "green": "QwQ+DAPO/OSS", "purple": "QwQ+OSS/DAPO"}
SOURCES = tuple(COLOURS.values())
BEST = "Best Overall"
RATING_CRITERIA = ("Clarity of Steps", "Ease of Following", "Confidence")
CRITERIA = RATING_CRITERIA + (BEST,)

_RATING_RE = re.compile(r"^(?P<colour>[a-z]+)-model-(?P<item>\w+) - (?P<criterion>[^:]+):")
_BEST_RE = re.compile(r"^best-overall-(?P<item>\w+) - .*?(?P<colour>[A-Za-z]+) Model", re.S)

SCHEMA = {
    "participant": pl.String,
    "item": pl.String,
    "source": pl.String,
    "colour": pl.String,
    "criterion": pl.String,
    "value": pl.Float64,
}


class RatingsError(ValueError):
    """The ratings CSV cannot be read; the message names the column/row and the fix."""


def parse_header(h: str) -> tuple[str, str, str] | None:
    """``(colour, item, criterion)`` of a column header, else None."""
    m = _RATING_RE.match(h.strip())
    if m:
        return m["colour"], m["item"], m["criterion"].strip()
    m = _BEST_RE.match(h.strip())
    if m:
        return m["colour"].lower(), m["item"], BEST
    return None


def read_ratings(path: str | Path) -> pl.DataFrame:
    """The long ratings table (see module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise RatingsError(f"ratings CSV not found: {p}; pass genex-user-study/clean_data_all_rows.csv")
    with p.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise RatingsError(f"{p}: needs a header row and at least one participant row")
    cols = []
    for j, h in enumerate(rows[0]):
        parsed = parse_header(h)
        if parsed is None:
            raise RatingsError(
                f"{p}: column {j + 1} header {h[:60]!r} is not <colour>-model-<item> - <criterion>: ... "
                "or best-overall-<item> - <Colour> Model; is this the study's ratings CSV?"
            )
        colour, item, crit = parsed
        if colour not in COLOURS:
            raise RatingsError(f"{p}: column {j + 1} names colour {colour!r}; known: {sorted(COLOURS)}")
        if crit not in CRITERIA:
            raise RatingsError(f"{p}: column {j + 1} names criterion {crit!r}; known: {list(CRITERIA)}")
        cols.append((colour, item, crit))
    out = []
    width = len(str(len(rows) - 1))
    for i, row in enumerate(rows[1:], start=1):
        pid = f"P{i:0{width}d}"
        for j, cell in enumerate(row[: len(cols)]):
            cell = cell.strip()
            if not cell:
                continue
            colour, item, crit = cols[j]
            try:
                v = float(cell)
            except ValueError as e:
                raise RatingsError(f"{p}: participant row {i} column {j + 1}: {cell!r} is not a number") from e
            lo, hi = (1, 4) if crit == BEST else (1, 5)
            if not lo <= v <= hi:
                raise RatingsError(f"{p}: participant row {i} column {j + 1}: {crit} value {v:g} outside {lo}–{hi}")
            out.append(
                {
                    "participant": pid,
                    "item": item,
                    "source": COLOURS[colour],
                    "colour": colour,
                    "criterion": crit,
                    "value": v,
                }
            )
    if not out:
        raise RatingsError(f"{p}: no ratings found (every cell is blank)")
    return pl.DataFrame(out, schema=SCHEMA)
