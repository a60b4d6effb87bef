"""The study's further MedCalc analyses, each as its notebook computes it.

Every function takes the run's files (:mod:`pipeline.analyses.frame`) and
returns rows ``{analysis, setting, group, metric, value, n}`` for
``analyses.csv``.  Common rules (all five notebooks): rows paired by position,
the stored Correct/Incorrect, a row dropped when either answer holds one of
the four error phrases, population std (``np.std``).  What each notebook does
differently is said where it is done:

* ``self_consistency`` (self-consistency.ipynb): per model and variant, its
  self-transfer answer (Default) against its Sampled answer; a failed target
  row reads ``""`` and wrong and is kept; a match is both correct, or both
  wrong with equal strings.
* ``cot_effect`` (rebuttal-ablation.ipynb): each target's Empty answer
  against its answer under each CoT setting, five classes, counts summed over
  the targets; a failed target row reads the transfer file's *source* fields
  (``LLM Answer``/``Result``, the stored error text), so it is usually dropped.
* ``agreement_breakdown`` (consistency_all.ipynb, "detailed" cell): per pair of
  a setting's targets, the share of consistent-correct / consistent-wrong /
  consistent-mixed / inconsistent rows; per class, mean and std over the pairs
  where it occurs at least once.  Default (full) is the ``original`` files,
  Default (without answer) the self-transfer files.
* ``creator_involvement`` (model_involvement.ipynb, transfer part): the pairs
  of a source's five transfer files, split by whether one target is the source.
* ``pooled_consistency`` (figure_1.ipynb): groups that ignore the variant
  (a Transfer S group holds its full and without-answer files), every
  unordered pair in a group, pooled over the groups of a kind.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from pipeline.analyses.frame import Cell, FileKey, Files, invalid, paired
from pipeline.schema import setting_name

COLUMNS = ("analysis", "setting", "group", "metric", "value", "n")
VARIANTS = ("full", "without_answer")
COT_CLASSES = (
    "wrong_to_correct",
    "correct_to_wrong",
    "correct_to_correct",
    "wrong_to_wrong_same",
    "wrong_to_wrong_diff",
)
BREAKDOWN = ("consistent_correct", "consistent_wrong", "inconsistent", "consistent_mixed")

Row = dict[str, Any]


def _row(analysis: str, setting: str, group: str, metric: str, value: float, n: int) -> Row:
    return {
        "analysis": analysis,
        "setting": setting,
        "group": group,
        "metric": metric,
        "value": float(value),
        "n": int(n),
    }


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return (float(np.mean(xs)), float(np.std(xs))) if xs else (math.nan, math.nan)


def _paper(a: Cell, b: Cell) -> int | None:
    """The paper rule on two rows: None when dropped, else 1 (equal strings or both correct) or 0."""
    if invalid(a.answer) or invalid(b.answer):
        return None
    return int(a.answer == b.answer or (a.result == "Correct" and b.result == "Correct"))


def _rate(a: dict[str, Cell], b: dict[str, Cell]) -> tuple[float, int]:
    r = [x for x in (_paper(p, q) for p, q in paired(a, b)) if x is not None]
    return (sum(r) / len(r), len(r)) if r else (math.nan, 0)


# --------------------------------------------------------------------------- self_consistency
def self_consistency(files: Files, models: list[str]) -> list[Row]:
    out: list[Row] = []
    for v in VARIANTS:
        rates = []
        for m in models:
            d, s = files.get(FileKey("transfer", m, v, m)), files.get(FileKey("sampled", m, v, m))
            if d is None or s is None:
                continue
            match = kept = 0
            for a, b in paired(d, s):
                if invalid(a.answer) or invalid(b.answer):
                    continue
                kept += 1
                ca, cb = a.result == "Correct", b.result == "Correct"
                match += (ca and cb) or (not ca and not cb and a.answer == b.answer)
            if kept:
                rates.append(match / kept)
                out.append(_row("self_consistency", m, v, "rate", match / kept, kept))
        if rates:
            mean, std = _mean_std(rates)
            out += [
                _row("self_consistency", "all", v, "mean", mean, len(rates)),
                _row("self_consistency", "all", v, "std", std, len(rates)),
            ]
    return out


# --------------------------------------------------------------------------- cot_effect
def _cot_settings(files: Files, models: list[str], v: str) -> dict[str, list[FileKey]]:
    """Setting -> the files its targets answered in (the notebook's ten settings)."""
    st: dict[str, list[FileKey]] = defaultdict(list)
    for k in files:
        if k.variant != v or k.method in ("empty", "default"):
            continue
        if k.method == "transfer" and k.source == k.target:
            st["Default"].append(k)
        st[setting_name(k.method, k.source)].append(k)
    return dict(st)


def _classify(e_ok: bool, c_ok: bool, e_ans: str, c_ans: str) -> str:
    if not e_ok and c_ok:
        return "wrong_to_correct"
    if e_ok and not c_ok:
        return "correct_to_wrong"
    if e_ok and c_ok:
        return "correct_to_correct"
    return "wrong_to_wrong_same" if e_ans == c_ans else "wrong_to_wrong_diff"


def cot_effect(files: Files, models: list[str]) -> list[Row]:
    out: list[Row] = []
    for v in VARIANTS:
        rates: dict[str, list[float]] = defaultdict(list)
        for setting, keys in sorted(_cot_settings(files, models, v).items()):
            counts = dict.fromkeys(COT_CLASSES, 0)
            total = 0
            for k in keys:
                empty = files.get(FileKey("empty", k.target, "full", k.target))
                if empty is None:
                    continue
                for e, c in paired(empty, files[k]):
                    # A failed target row: the notebook reads the file's source fields instead.
                    ans, res = (
                        (c.source_answer or "", c.source_result or "")
                        if c.failed and c.source_answer is not None
                        else (c.answer, c.result)
                    )
                    if invalid(e.answer) or invalid(ans):
                        continue
                    total += 1
                    counts[_classify(e.result == "Correct", res == "Correct", e.answer, ans)] += 1
            if not total:
                continue
            for cls in COT_CLASSES:
                rates[cls].append(counts[cls] / total)
                out.append(_row("cot_effect", setting, v, cls, counts[cls] / total, total))
        for cls, xs in rates.items():
            mean, std = _mean_std(xs)
            out += [
                _row("cot_effect", "all", v, cls, mean, len(xs)),
                _row("cot_effect", "all", v, f"{cls}_std", std, len(xs)),
            ]
    return out


# --------------------------------------------------------------------------- agreement_breakdown
def _breakdown_groups(files: Files) -> dict[tuple[str, str], list[FileKey]]:
    g: dict[tuple[str, str], list[FileKey]] = defaultdict(list)
    for k in files:
        if k.method == "default":
            g[("Default", k.variant)].append(k)
            continue
        if k.method == "transfer" and k.source == k.target and k.variant == "without_answer":
            g[("Default", k.variant)].append(k)
        g[(setting_name(k.method, k.source), k.variant)].append(k)
    return dict(g)


def _breakdown_class(a: Cell, b: Cell) -> str | None:
    if invalid(a.answer) or invalid(b.answer):
        return None
    same = a.answer == b.answer
    if same and a.result == b.result == "Correct":
        return "consistent_correct"
    if same and a.result == b.result == "Incorrect":
        return "consistent_wrong"
    return "consistent_mixed" if same else "inconsistent"


def agreement_breakdown(files: Files, models: list[str]) -> list[Row]:
    out: list[Row] = []
    for (setting, v), keys in sorted(_breakdown_groups(files).items()):
        shares: dict[str, list[float]] = defaultdict(list)
        for a, b in itertools.combinations(sorted(keys), 2):
            cls = [c for c in (_breakdown_class(p, q) for p, q in paired(files[a], files[b])) if c is not None]
            for name in set(cls):  # a class enters a setting's mean only for the pairs where it occurs
                shares[name].append(cls.count(name) / len(cls))
        if not shares:
            continue
        for name in BREAKDOWN:
            if name in shares:
                mean, std = _mean_std(shares[name])
                out += [
                    _row("agreement_breakdown", setting, v, name, mean, len(shares[name])),
                    _row("agreement_breakdown", setting, v, f"{name}_std", std, len(shares[name])),
                ]
        if "consistent_correct" in shares and "consistent_wrong" in shares:
            cc, cw = float(np.mean(shares["consistent_correct"])), float(np.mean(shares["consistent_wrong"]))
            n = min(len(shares["consistent_correct"]), len(shares["consistent_wrong"]))
            out.append(_row("agreement_breakdown", setting, v, "total_consistent", cc + cw, n))
            if cc + cw > 0:
                out.append(_row("agreement_breakdown", setting, v, "wrong_share", cw / (cc + cw), n))
    return out


# --------------------------------------------------------------------------- creator_involvement
def creator_involvement(files: Files, models: list[str]) -> list[Row]:
    """Paper agreement of the pairs of each source's transfer files, by whether the source is a target.

    The released notebook scores a row whose ``Target`` fields are missing as
    a disagreement before its drop rule; the study's printed .775 / .720 come
    from the common rule (a failed row reads ``""``), which is used here.
    """
    out: list[Row] = []
    for v in VARIANTS:
        inv: list[float] = []
        notinv: list[float] = []
        by_source: dict[str, list[FileKey]] = defaultdict(list)
        for k in files:
            if k.method == "transfer" and k.variant == v:
                by_source[k.source].append(k)
        for s, keys in by_source.items():
            for a, b in itertools.combinations(sorted(keys), 2):
                rate, n = _rate(files[a], files[b])
                if n:
                    (inv if s in (a.target, b.target) else notinv).append(rate)
        for name, xs in (("involved", inv), ("not_involved", notinv)):
            if xs:
                out += [
                    _row("creator_involvement", "Transfer", v, name, float(np.mean(xs)), len(xs)),
                    _row(
                        "creator_involvement",
                        "Transfer",
                        v,
                        f"{name}_stderr",
                        float(np.std(xs) / np.sqrt(len(xs))),
                        len(xs),
                    ),
                ]
    return out


# --------------------------------------------------------------------------- pooled_consistency
def _pooled_groups(files: Files) -> dict[str, list[FileKey]]:
    g: dict[str, list[FileKey]] = defaultdict(list)
    for k in files:
        if k.method == "default":
            continue  # figure_1 leaves the original files out; its Default is the self-transfer without answer
        if k.method == "transfer" and k.source == k.target and k.variant == "without_answer":
            g["Default"].append(k)
        g[setting_name(k.method, k.source)].append(k)
    return dict(g)


def _kind(setting: str) -> str:
    return setting.split(" ", 1)[0] if setting.startswith(("Transfer ", "Ensemble ")) else setting


def pooled_consistency(files: Files, models: list[str]) -> list[Row]:
    pooled: dict[str, list[float]] = defaultdict(list)
    for setting, keys in sorted(_pooled_groups(files).items()):
        for a, b in itertools.combinations(sorted(keys), 2):
            rate, n = _rate(files[a], files[b])
            if n:
                pooled[_kind(setting)].append(rate)
    out: list[Row] = []
    for kind, xs in pooled.items():
        mean, std = _mean_std(xs)
        out += [
            _row("pooled_consistency", kind, "pooled", "mean", mean, len(xs)),
            _row("pooled_consistency", kind, "pooled", "std", std, len(xs)),
        ]
    return out


ANALYSES = {
    "self_consistency": self_consistency,
    "cot_effect": cot_effect,
    "agreement_breakdown": agreement_breakdown,
    "creator_involvement": creator_involvement,
    "pooled_consistency": pooled_consistency,
}


def run_analyses(files: Files, models: list[str], names: Iterable[str] = tuple(ANALYSES)) -> list[Row]:
    return [r for name in names for r in ANALYSES[name](files, models)]
