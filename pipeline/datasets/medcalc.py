"""MedCalc-Bench dataset plug-in: load the test CSV, extract and check answers.

The benchmark asks a model to compute a clinical score or value from a patient
note.  Gold answers come in four shapes, which decide how an answer is checked:

* integer scores (``Output Type`` ``integer``; Lower = Upper = answer): the
  answer, rounded, must equal the gold exactly;
* decimals (``Output Type`` ``decimal``): the answer must lie inside
  ``[Lower Limit, Upper Limit]`` (the benchmark's ±5 % window);
* dates ``MM/DD/YYYY`` (estimated due date / estimated date of conception);
* ``(weeks, days)`` tuples (estimated gestational age), gold written as
  ``('4 weeks', '2 days')``.

The shape is taken from ``output_type`` in the gold when present (the CSV has
an ``Output Type`` column), otherwise inferred from the gold text itself, so
gold built from files without that column (the reference study's JSONL) works
too.  All checking is our own code; it mirrors the benchmark's published rules
(rounding for integers, inclusive limits for decimals).

``extract`` pulls the answer out of free model text: the ``"answer"`` field of
the requested JSON dict, with fallbacks for malformed JSON, ``Answer:`` lines,
``\\boxed{}`` and finally the last number.

All of the above is the ``lenient`` checker.  ``dataset.options`` select the
reference study's protocol item by item:

* ``checker``: ``lenient`` (default) or ``official`` — MedCalc-Bench's own
  extraction and ``evaluate.py`` rules (:mod:`pipeline.datasets.medcalc_official`);
* ``sample``: ``first`` (default: file order, then ``limit``) or ``genex`` — the
  study's 100 rows (:mod:`pipeline.datasets.medcalc_study`), ``problem_id`` = Row Number;
* ``prompt``: ``ours`` (default: one user turn, ``PROMPT_TEMPLATE``) or ``study`` —
  the study's system + user messages, verbatim.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline.datasets import medcalc_official, medcalc_study
from pipeline.datasets.medcalc_csv import (  # noqa: F401 - the reader's names, re-exported for callers
    DATE_RE,
    REQUIRED_COLUMNS,
    MedCalcLoadError,
    infer_output_type,
    make_gold,
    read_benchmark_csv,
    to_float,
)
from pipeline.datasets.protocol import DatasetBase, Judgment
from pipeline.datasets.rows import select
from pipeline.schema import PROBLEMS, from_rows

if TYPE_CHECKING:
    from pipeline.config import DatasetConfig

NAME = "medcalc"

# Our wording of the reference study's zero-shot instruction: the model thinks,
# then replies with a JSON dict whose "answer" field is short and direct.
PROMPT_TEMPLATE = (
    "You are a helpful assistant for calculating a score for a given patient note. "
    "Please think step-by-step to solve the question and then generate the required score.\n\n"
    "Here is the patient note:\n{note}\n\n"
    "Here is the task:\n{question}\n\n"
    'Please directly output the JSON dict formatted as {{"step_by_step_thinking": '
    "str(your_step_by_step_thinking_procedure_to_solve_the_question), "
    '"answer": str(short_and_direct_answer_of_the_question)}}:'
)

_NUM_RE = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_ISODATE_RE = re.compile(r"\b(\d{4})-(0?[1-9]|1[0-2])-(0?[1-9]|[12]\d|3[01])\b")
# "(4, 2)", "('4 weeks', '2 days')", "4 weeks, 2 days", "4 weeks and 2 days"
_TUPLE_RE = re.compile(
    r"\(?\s*[\"']?(\d+)\s*(?:weeks?|wks?)?[\"']?\s*(?:,|and)?\s*[\"']?(\d+)\s*(?:days?)?[\"']?\s*\)?",
    re.IGNORECASE,
)
_WEEKS_DAYS_RE = re.compile(r"(\d+)\s*(?:weeks?|wks?)\b\D{0,20}?(\d+)\s*days?\b", re.IGNORECASE)
_WEEKS_ONLY_RE = re.compile(r"^\s*\(?\s*[\"']?(\d+)\s*(?:weeks?|wks?)[\"']?\s*\)?\s*$", re.IGNORECASE)

# Stored "answers" in the reference study's files that are really Python
# exception messages from its evaluator (e.g. eval("N/A")).  They contain
# digits ("line 1") that the last-number fallback would otherwise pick up.
_ERROR_PATTERNS = re.compile(
    r"is not defined|does not match format|are not permitted|object has no attribute|"
    r"invalid syntax|unexpected EOF|could not convert|Traceback|"
    r"unsupported operand|division by zero|object is not",
)

# Values that mean "no answer"; the benchmark's own placeholder echoed back too.
_NO_ANSWER = {
    "",
    "n/a",
    "na",
    "none",
    "null",
    "not found",
    "unknown",
    "str(short_and_direct_answer_of_the_question)",
    "short_and_direct_answer_of_the_question",
}


# --------------------------------------------------------------------------- parsing


def is_error_text(text: str | None) -> bool:
    """True for the Python exception messages the reference study stored as answers."""
    return bool(text) and bool(_ERROR_PATTERNS.search(text))


def parse_number(text: str | None) -> float | None:
    """First number in ``text`` (units and words around it are ignored)."""
    if text is None or is_error_text(text):
        return None
    t = text.strip()
    m = _NUM_RE.search(t)
    if not m:
        return None
    return to_float(m.group(0))


def parse_date(text: str | None) -> date | None:
    if not text:
        return None
    m = DATE_RE.search(text)
    try:
        if m:
            return date(int(m.group(3)), int(m.group(1)), int(m.group(2)))
        m = _ISODATE_RE.search(text)
        if m:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:  # e.g. 02/30/2020
        return None
    return None


def parse_weeks_days(text: str | None) -> tuple[int, int] | None:
    if not text or is_error_text(text):
        return None
    m = _WEEKS_DAYS_RE.search(text)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = _WEEKS_ONLY_RE.match(text)
    if m:
        return int(m.group(1)), 0
    m = _TUPLE_RE.search(text)
    if m:
        return int(m.group(1)), int(m.group(2))
    return None


def normalize(text: str | None, output_type: str) -> str | None:
    """Canonical string of an answer for ``output_type`` (None when unparseable).

    Used by the strict consistency metric: two answers are "the same" when
    their normalized forms are equal (decimals additionally get a tolerance
    there, see pipeline.scoring.consistency).
    """
    if text is None:
        return None
    if output_type == "date":
        d = parse_date(text)
        return d.strftime("%m/%d/%Y") if d else None
    if output_type == "weeks_days":
        wd = parse_weeks_days(text)
        return f"({wd[0]}, {wd[1]})" if wd else None
    v = parse_number(text)
    if v is None:
        return None
    if output_type == "integer":
        return str(int(round(v)))
    return repr(float(v))


# --------------------------------------------------------------------------- extraction

_JSON_OBJ_RE = re.compile(r"\{[^{}]*\}", re.DOTALL)
_ANSWER_FIELD_RE = re.compile(
    r"[\"']?answer[\"']?\s*:\s*(?:\"((?:[^\"\\]|\\.)*)\"|'([^']*)'|([^,}\n]+))", re.IGNORECASE
)
_ANSWER_LINE_RE = re.compile(r"(?:final\s+answer|answer)\s*(?:is|:|=)\s*\**\s*([^\n]+)", re.IGNORECASE)
_BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")


def _clean(ans: str) -> str | None:
    a = ans.strip().strip("*").strip().strip('"').strip("'").strip().rstrip(".").strip()
    if a.lower() in _NO_ANSWER:
        return None
    return a


def extract_answer(text: str | None) -> str | None:
    """The answer in ``text``: JSON ``answer`` field, else fallbacks; None if nothing found."""
    if text is None:
        return None
    t = text.strip()
    if not t or is_error_text(t):
        return None
    # Only look after the thinking, if the model echoed it.
    if "</think>" in t:
        t = t.rsplit("</think>", 1)[1]
    # 1. A well-formed JSON dict with an "answer" key (last one wins).
    for blob in reversed(_JSON_OBJ_RE.findall(t)):
        try:
            obj = json.loads(blob)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            for k, v in obj.items():
                if str(k).lower() == "answer":
                    got = _clean(json.dumps(v) if isinstance(v, (list, dict)) else str(v))
                    if got is not None:
                        return got
    # 2. Malformed JSON: "answer": value   (quoted or bare).
    matches = list(_ANSWER_FIELD_RE.finditer(t))
    for m in reversed(matches):
        got = _clean(next(g for g in m.groups() if g is not None))
        if got is not None:
            return got
    # 3. \boxed{...}
    boxed = _BOXED_RE.findall(t)
    if boxed and _clean(boxed[-1]) is not None:
        return _clean(boxed[-1])
    # 4. "Answer: ..." / "The final answer is ..." lines.
    lines = _ANSWER_LINE_RE.findall(t)
    if lines and _clean(lines[-1]) is not None:
        return _clean(lines[-1])
    # 5. Already a bare answer (e.g. a stored extracted answer "(29, 3)"): keep it whole
    # so the checker can read dates and (weeks, days) pairs, not just one number.
    wd = list(_WEEKS_DAYS_RE.finditer(t))
    if wd:
        return f"({wd[-1].group(1)}, {wd[-1].group(2)})"
    if "\n" not in t and len(t.split()) <= 5 and (_NUM_RE.search(t) or DATE_RE.search(t)):
        return _clean(t)
    # 6. Free text: the last date or number.
    d = list(DATE_RE.finditer(t))
    if d:
        return d[-1].group(0)
    nums = _NUM_RE.findall(t)
    if nums:
        return nums[-1].replace(",", "")
    return None


# --------------------------------------------------------------------------- checking


def check_answer(extracted: str | None, gold: dict[str, Any]) -> bool:
    """Is ``extracted`` correct for ``gold`` (see module docstring for the rules)?"""
    if extracted is None or is_error_text(extracted):
        return False
    gt = str(gold.get("answer", "")).strip()
    otype = gold.get("output_type") or infer_output_type(gt)
    if otype == "date":
        a, g = parse_date(extracted), parse_date(gt)
        return a is not None and a == g
    if otype == "weeks_days":
        a, g = parse_weeks_days(extracted), parse_weeks_days(gt)
        return a is not None and a == g
    v = parse_number(extracted)
    if v is None:
        return False
    if otype == "integer":
        g = to_float(gt)
        # Python's round (half to even) is what the benchmark's checker uses.
        return g is not None and round(v) == g
    lo, hi = to_float(gold.get("lower")), to_float(gold.get("upper"))
    if lo is None or hi is None:
        # No limits known (e.g. gold built from files without them): the
        # benchmark's limits are the gold ±5 %, so rebuild that window.
        g = to_float(gt)
        if g is None:
            return False
        lo, hi = sorted((g * 0.95, g * 1.05))
    return lo <= v <= hi


def answer_tolerance(gold: dict[str, Any]) -> float:
    """Half the gold's Lower–Upper window for decimals (±5 % of the gold when limits are absent); else 0."""
    gt = str(gold.get("answer", "")).strip()
    otype = gold.get("output_type") or infer_output_type(gt)
    if otype != "decimal":
        return 0.0
    lo, hi = to_float(gold.get("lower")), to_float(gold.get("upper"))
    if lo is not None and hi is not None:
        return abs(hi - lo) / 2
    g = to_float(gt)
    return abs(g) * 0.05 if g is not None else 0.0


CHECKERS = ("lenient", "official")
PROMPTS = ("ours", "study")


def option(cfg: DatasetConfig, name: str, allowed: tuple[str, ...], default: str) -> str:
    """``dataset.options[name]`` checked against ``allowed``."""
    v = (cfg.options or {}).get(name) or default
    if v not in allowed:
        raise MedCalcLoadError(f"dataset.options.{name}={v!r} is unknown; use one of {list(allowed)}")
    return str(v)


def judge_text(answer_text: str | None, answer: str | None, gold: dict[str, Any], checker: str) -> Judgment:
    """Judge one reply (``answer_text``) or an already extracted ``answer`` (imported rows).

    ``Judgment.answer`` is the form the paper metric compares: ``official`` —
    what the study stored (its extracted string, or its evaluator's exception
    text, which the metric's drop rule removes); ``lenient`` — the extracted
    answer normalized for its output type (raw when it does not parse).
    """
    if checker == "official":
        if answer is not None:  # already extracted (the study's stored answer): check only
            try:
                ok = bool(medcalc_official.check(answer, gold))
            except Exception:  # noqa: BLE001 - the study judged a raising answer wrong
                ok = False
            return Judgment(answer, answer, ok)
        v = medcalc_official.judge_reply(answer_text, gold)
        return Judgment(v.answer, v.extracted, v.correct)
    if checker != "lenient":
        raise ValueError(f"unknown MedCalc checker {checker!r}; use one of {list(CHECKERS)}")
    e = extract_answer(answer if answer is not None else answer_text)
    ok = check_answer(e, gold) if e is not None else False
    if answer is not None:
        return Judgment(answer, e, ok)
    otype = gold.get("output_type") or infer_output_type(str(gold.get("answer", "")))
    return Judgment(normalize(e, otype) or e, e, ok)


class MedCalc(DatasetBase):
    """MedCalc-Bench plug-in (see module docstring)."""

    name = NAME
    checkers = CHECKERS
    default_checker = "lenient"

    def __init__(self) -> None:
        # Malformed rows skipped by the last load(): skip records (file, row, field, reason).
        self.skipped: list[dict] = []

    def load(self, cfg: DatasetConfig) -> pa.Table:
        """Problems from ``cfg.path`` (test_data.csv); first ``cfg.limit`` rows if set.

        The subset is the file's first rows (``dataset.options.shuffle`` shuffles by
        ``dataset.seed`` first, as for every plug-in).  With ``dataset.options.on_bad_row=raise``
        a malformed row raises instead of being skipped.
        """
        path = cfg.path
        if not path:
            raise MedCalcLoadError("medcalc dataset config has no `path`; set it to test_data.csv")
        rows, skips = read_benchmark_csv(path)
        self.skipped = skips
        if skips and (cfg.options or {}).get("on_bad_row") == "raise":
            s = skips[0]
            raise MedCalcLoadError(
                f"{s['file']} line {s['row']}, column {s['field']!r}: {s['reason']} "
                f"({len(skips)} malformed row(s) in total)"
            )
        if not rows:
            raise MedCalcLoadError(f"{path}: no usable rows ({len(skips)} skipped)")
        sample = option(cfg, "sample", ("first", "genex"), "first")
        style = option(cfg, "prompt", PROMPTS, "ours")
        option(cfg, "checker", CHECKERS, "lenient")  # validated here, used by scoring
        rows = select(medcalc_study.select_sample(rows, sample), cfg)
        out = []
        for r in rows:
            gold = make_gold(
                r["Ground Truth Answer"].strip(),
                r.get("Lower Limit", "").strip(),
                r.get("Upper Limit", "").strip(),
                r["Calculator ID"].strip(),
                r["Calculator Name"].strip(),
                r.get("Output Type"),
            )
            meta = {
                "calculator_name": r["Calculator Name"].strip(),
                "calculator_id": r["Calculator ID"].strip(),
                "category": r.get("Category", ""),
                "note_id": r.get("Note ID", ""),
                "output_type": gold["output_type"],
                "question": r["Question"],
            }
            out.append(
                {
                    "dataset": NAME,
                    "problem_id": r["Row Number"].strip(),
                    **self.messages(r, style),
                    "gold": json.dumps(gold),
                    "meta": json.dumps(meta),
                }
            )
        return from_rows(out, PROBLEMS)

    @staticmethod
    def messages(r: dict[str, str], style: str) -> dict[str, str | None]:
        """``prompt`` (user turn) and ``system`` of one CSV row in prompt ``style``."""
        if style == "study":  # the study passed the CSV fields unstripped
            system, user = medcalc_study.study_messages(r["Patient Note"], r["Question"])
            return {"prompt": user["content"], "system": system["content"]}
        return {
            "prompt": PROMPT_TEMPLATE.format(note=r["Patient Note"].strip(), question=r["Question"].strip()),
            "system": None,
        }

    def judge(self, answer_text: str | None, answer: str | None, gold: dict[str, Any], checker: str) -> Judgment:
        return judge_text(answer_text, answer, gold, checker)

    def extract(self, text: str | None) -> str | None:
        return extract_answer(text)

    def check(self, extracted: str | None, gold: dict[str, Any]) -> bool:
        return check_answer(extracted, gold)

    def tolerance(self, gold: dict[str, Any]) -> float:
        """Absolute tolerance for comparing two decimal answers (0 for exact types)."""
        return answer_tolerance(gold)

    def normalize(self, text: str | None, gold: dict[str, Any]) -> str | None:
        """Canonical form of an answer, for strict answer comparison across models."""
        otype = gold.get("output_type") or infer_output_type(str(gold.get("answer", "")))
        return normalize(text, otype)
