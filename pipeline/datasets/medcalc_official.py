"""MedCalc-Bench's own answer extraction and correctness rules (the ``official`` checker).

Written from the rules of the code the reference study ran (read, not copied):

* extraction — ``extract_answer`` in the study's fork of MedCalc-Bench,
  ``KoyenaPal/genex: MedCalc-Bench/evaluation/run.py``: the *last* match of
  ``[Aa]nswer.*?:\\s*["“”]?(.*?)(?:["“”]?\\s*[\\}\\n]|$)`` (upstream
  ``ncbi-nlp/MedCalc-Bench: evaluation/run.py`` matches only ``answer":``),
  placeholders echoed from the prompt count as "Not Found", then per
  calculator output type:

  - date (calculators 13, 68): a ``M/D/YYYY`` date only at the *start*,
    rewritten ``MM/DD/YYYY``; anything else is ``"N/A"``;
  - (weeks, days) (69): the first ``(w, d)``-like pair, after ``[]'"`` are
    dropped; an answer with no pair at all raises (the study's code reads
    the ground truth from the *answer* first: ``'NoneType' object has no
    attribute 'group'``);
  - integer (4, 15, …): ``N out of`` → N; else a comma list ``3, 4, 5`` → its
    length; else the last number (kept as written, "5.0" stays "5.0");
  - decimal (2, 3, …): an expression inside ``str(...)`` is evaluated (after
    the study's textual replacements); else a number before
    ``mL/min/1.73``; else the last percentage divided by 100; else the last
    number — each through Python's ``eval``, so "08" raises "leading zeros
    … are not permitted" and a decimal comes back as ``str(float)``.

* checking — ``check_correctness`` of ``evaluation/evaluate.py`` (MedCalc-Bench;
  the study imports it unchanged in run.py): dates equal as dates; pairs
  equal as tuples; integers ``round(eval(answer)) == eval(gold)`` (half to
  even); decimals ``eval(lower) <= eval(answer) <= eval(upper)``, inclusive.

* errors — the study wraps extraction and checking in one ``try``; on any
  exception it stores ``str(exception)`` as the answer and judges it wrong.
  :func:`judge_reply` returns that same string, so the paper metric's drop
  rule (answers containing "N/A", "not defined", "does not match", "are not
  permitted") works on live answers exactly as on the released files.

``eval`` itself is never called: :func:`safe_eval` parses with Python's own
parser (so syntax errors carry Python's messages) and evaluates only numbers,
arithmetic, comparisons and the functions the study's ``eval`` namespace
allows (``min pow round abs int float math.* np.*``); any other name raises
``NameError("name 'x' is not defined")`` as ``eval`` with no builtins does.
Before extraction whitespace runs are collapsed to one space, as the
study's ``LLMInference.answer`` did to every reply.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

DATE_IDS = frozenset({13, 68})
WEEKS_DAYS_IDS = frozenset({69})
INTEGER_IDS = frozenset({4, 15, 16, 17, 18, 20, 21, 25, 27, 28, 29, 32, 33, 36, 43, 45, 48, 51})
DECIMAL_IDS = frozenset(
    {
        2,
        3,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
        19,
        22,
        23,
        24,
        26,
        30,
        31,
        38,
        39,
        40,
        44,
        46,
        49,
        56,
        57,
        58,
        59,
        60,
        61,
        62,
        63,
        64,
        65,
        66,
        67,
    }
)

# The study's answer-field pattern (fork) and MedCalc-Bench upstream's.
FIELD_PATTERNS = {
    "study": re.compile(r'[Aa]nswer.*?:\s*["“”]?(.*?)(?:["“”]?\s*[\}\n]|$)'),
    "upstream": re.compile(r'[Aa]nswer":\s*(.*?)\}'),
}
PLACEHOLDERS = (
    "str(short_and_direct_answer_of_the_question)",
    "str(value which is the answer to the question)",
    "X.XX",
)
NOT_FOUND = "Not Found"
NA = "N/A"

_DATE_START = re.compile(r"^(0?[1-9]|1[0-2])\/(0?[1-9]|[12][0-9]|3[01])\/(\d{4})")
_PAIR = re.compile(r"\(?[\"\']?(\d+)\s*(weeks?)?[\"\']?,?\s*[\"\']?(\d+)\s*(days?)?[\"\']?\s*\)?")
_OUT_OF = re.compile(r"(\d+) out of")
_INT_LIST = re.compile(r"-?\d+(, ?-?\d+)+")
_NUMBER = re.compile(r"(-?\d+(\.\d+)?)")
_STR_EXPR = re.compile(r"str\((.*)\)")
_EGFR = re.compile(r"(-?\d+(\.\d+)?)\s*mL/min/1.73")
_PERCENT = re.compile(r"(-?\d+(\.\d+)?)\%")
# The study's textual clean-up of a str(...) expression, in its order (note "g" last but one:
# it deletes every letter g, so "log" becomes "lo" and fails, as it did there).
_EXPR_REPLACE = (
    ("^", "**"),
    ("is odd", "% 2 == 1"),
    ("is even", "% 2 == 0"),
    ("sqrt", "math.sqrt"),
    (".math", ""),
    ("weight", ""),
    ("height", ""),
    ("mg/dl", ""),
    ("g/dl", ""),
    ("mmol/L", ""),
    ("kg", ""),
    ("g", ""),
    ("mEq/L", ""),
)


def output_kind(calculator_id: Any) -> str:
    """``date`` / ``weeks_days`` / ``integer`` / ``decimal`` by the benchmark's calculator-id lists."""
    cid = int(calculator_id)
    if cid in DATE_IDS:
        return "date"
    if cid in WEEKS_DAYS_IDS:
        return "weeks_days"
    if cid in INTEGER_IDS:
        return "integer"
    if cid in DECIMAL_IDS:
        return "decimal"
    raise ValueError(f"Unknown calculator ID: {cid}")


# --------------------------------------------------------------------------- eval without eval

_BIN = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_CMP = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_FUNCS = {"min": min, "pow": pow, "round": round, "abs": abs, "int": int, "float": float}
_MODULES = {"math": math, "np": "numpy", "numpy": "numpy"}


def _module(name: str) -> Any:
    mod = _MODULES[name]
    if isinstance(mod, str):
        import numpy

        return numpy
    return mod


def safe_eval(expr: str) -> Any:
    """Python ``eval`` of ``expr`` restricted to the study's namespace, with Python's error messages."""
    tree = ast.parse(expr.strip() if isinstance(expr, str) else expr, filename="<string>", mode="eval")
    return _ev(tree.body)


def _ev(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        return _BIN[type(node.op)](_ev(node.left), _ev(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_ev(node.operand))
    if isinstance(node, ast.Compare):
        left, ok = _ev(node.left), True
        for op, comp in zip(node.ops, node.comparators):
            right = _ev(comp)
            if type(op) not in _CMP:
                raise TypeError(f"unsupported comparison {type(op).__name__}")
            ok = ok and _CMP[type(op)](left, right)
            left = right
        return ok
    if isinstance(node, ast.Tuple):
        return tuple(_ev(e) for e in node.elts)
    if isinstance(node, ast.Name):
        if node.id in _FUNCS:
            return _FUNCS[node.id]
        if node.id in _MODULES:
            return _module(node.id)
        raise NameError(f"name '{node.id}' is not defined")
    if isinstance(node, ast.Attribute):
        base = _ev(node.value)
        if base is math or getattr(base, "__name__", "") == "numpy":
            if node.attr.startswith("_"):
                raise AttributeError(f"module has no attribute '{node.attr}'")
            return getattr(base, node.attr)
        raise AttributeError(f"'{type(base).__name__}' object has no attribute '{node.attr}'")
    if isinstance(node, ast.Call):
        fn = _ev(node.func)
        if not callable(fn):
            raise TypeError(f"'{type(fn).__name__}' object is not callable")
        return fn(*[_ev(a) for a in node.args])
    raise TypeError(f"unsupported expression element {type(node).__name__}")


# --------------------------------------------------------------------------- extraction


def answer_field(text: str, pattern: str = "study") -> str:
    """The last ``answer`` field of a reply (whitespace collapsed first); "Not Found" when there is none."""
    t = re.sub(r"\s+", " ", text or "")
    found = FIELD_PATTERNS[pattern].findall(t)
    if not found:
        return NOT_FOUND
    a = found[-1].strip().strip('"')
    return NOT_FOUND if a in PLACEHOLDERS else a


def extract(text: str, calculator_id: Any, pattern: str = "study") -> str:
    """The study's extracted answer string; raises where the study's code raised (see module docstring)."""
    field = answer_field(text, pattern)
    kind = output_kind(calculator_id)
    if kind == "date":
        m = _DATE_START.search(field)
        return f"{int(m.group(1)):02}/{int(m.group(2)):02}/{m.group(3)}" if m else NA
    if kind == "weeks_days":
        m = _PAIR.search(field)
        if m is None:  # the study reads a ground truth from the answer here and fails on None
            raise AttributeError("'NoneType' object has no attribute 'group'")
        cleaned = field.replace("[", "(").replace("]", ")").replace("'", "").replace('"', "")
        m = _PAIR.search(cleaned)
        return f"({m.group(1)}, {m.group(3)})" if m else NA
    if kind == "integer":
        m = _OUT_OF.search(field)
        if m:
            return m.group(1)
        m = _INT_LIST.search(field)
        if m:  # "3, 4, 5" counts items (so does "1,200": the study's rule)
            return str(len(m.group(0).split(",")))
        nums = _NUMBER.findall(field)
        return nums[-1][0] if nums else NA
    # decimal
    m = _STR_EXPR.search(field)
    if m:
        expr = m.group(1)
        for a, b in _EXPR_REPLACE:
            expr = expr.replace(a, b)
        expr = expr.split("#")[0]
        if expr.count("(") > expr.count(")"):
            expr += ")" * (expr.count("(") - expr.count(")"))
        elif expr.count(")") > expr.count("("):
            expr = "(" * (expr.count(")") - expr.count("(")) + expr
        try:
            value: Any = safe_eval(expr)
        except Exception:  # noqa: BLE001 - the study maps any failure here to "N/A"
            return NA
        return str(value)
    m = _EGFR.search(field)
    if m:
        return str(safe_eval(m.group(1)))
    pct = _PERCENT.findall(field)
    if pct:
        return str(safe_eval(pct[-1][0]) / 100)
    nums = _NUMBER.findall(field)
    return str(safe_eval(nums[-1][0])) if nums else NA


# --------------------------------------------------------------------------- checking


def check(answer: str, gold: dict[str, Any]) -> bool:
    """``evaluate.py``'s ``check_correctness``; raises where it raised."""
    kind = output_kind(gold["calculator_id"])
    gt = str(gold["answer"]).strip()
    if kind == "date":
        a = datetime.strptime(answer, "%m/%d/%Y")
        return a == datetime.strptime(gt, "%m/%d/%Y")
    if kind == "weeks_days":
        g = _PAIR.search(gt)
        m = _PAIR.search(answer)
        if m is None:
            return False
        return (int(m.group(1)), int(m.group(3))) == (int(g.group(1)), int(g.group(3)))
    if kind == "integer":
        return round(safe_eval(answer)) == safe_eval(gt)
    value = safe_eval(answer)
    return safe_eval(str(gold["lower"])) <= value <= safe_eval(str(gold["upper"]))


@dataclass(frozen=True)
class Verdict:
    """One reply judged the study's way."""

    answer: str  # what the study stores as the answer: the extracted string, or the exception text
    extracted: Optional[str]  # the extracted answer; None when extraction raised
    correct: bool
    error: Optional[str]  # exception text when extraction or checking raised


def judge_reply(text: Optional[str], gold: dict[str, Any], pattern: str = "study") -> Verdict:
    """Extract and check one reply as the study's ``run.py`` did (one try around both)."""
    extracted: Optional[str] = None
    try:
        extracted = extract(text or "", gold["calculator_id"], pattern)
        ok = bool(check(extracted, gold))
    except Exception as e:  # noqa: BLE001 - the study stored str(e) and judged the reply wrong
        return Verdict(str(e), extracted, False, str(e))
    return Verdict(extracted, extracted, ok, None)
