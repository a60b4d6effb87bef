"""The Item page's data: one item's problem, source CoT(s), every target's reply, and the same
problem under the other settings.

The CoT is shown as segments: the sentences the answer filter removed (or a prefix variant left
out) are marked ``removed`` against the full CoT, and the leak audit's hits (the source's own
answer, found by :func:`pipeline.text.answers.leak_spans`, the audit's own pattern) are marked
``leak``.  Everything returned is data; the page renders it as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import polars as pl

from pipeline.scoring.consistency import order_models
from pipeline.text.answers import leak_spans
from pipeline.text.sentences import split_sentences
from pipeline.view.overview import setting_order

if TYPE_CHECKING:
    from pipeline.view.data import RunData


def cot_segments(full: Optional[str], shown: str, answer: Optional[str]) -> list[dict]:
    """``shown`` laid over ``full``: ``[{text, removed, leak}]`` in the order of ``full``.

    The filters keep sentences verbatim and in order, so each sentence of ``full`` is either found
    in ``shown`` at or after the previous match (kept) or not (removed).
    """
    segs: list[tuple[str, bool]] = []
    if not full or full.strip() == shown.strip():
        segs = [(shown, False)]
    else:
        pos = 0
        for s in split_sentences(full):
            st = s.strip()
            j = shown.find(st, pos) if st else pos
            if st and j < 0:
                segs.append((s, True))
            else:
                segs.append((s, False))
                pos = j + len(st)
    out: list[dict] = []
    for text, removed in segs:
        cur = 0
        for a, b in [] if removed else leak_spans(text, answer):
            if a > cur:
                out.append({"text": text[cur:a], "removed": False, "leak": False})
            out.append({"text": text[a:b], "removed": False, "leak": True})
            cur = b
        if cur < len(text):
            out.append({"text": text[cur:], "removed": removed, "leak": False})
    merged: list[dict] = []
    for s in out:  # fewer, longer spans
        if merged and merged[-1]["removed"] == s["removed"] and not s["leak"] and not merged[-1]["leak"]:
            merged[-1]["text"] += s["text"]
        else:
            merged.append(s)
    return merged


def _one(df: pl.DataFrame) -> Optional[dict]:
    return df.row(0, named=True) if df.height else None


@dataclass
class ProblemFrames:
    """Everything one problem (and sample) holds: its answers (every column), CoTs, items, text."""

    answers: pl.DataFrame
    cots: pl.DataFrame
    index: pl.DataFrame
    problems: pl.DataFrame
    candidates: pl.DataFrame


def problem_frames(rd: "RunData", dataset: str, problem_id: str, sample: int) -> ProblemFrames:
    prob = (pl.col("dataset") == dataset) & (pl.col("problem_id") == problem_id)

    def sel(df: pl.DataFrame, with_sample: bool = True) -> pl.DataFrame:
        if not df.height:
            return df
        return df.filter(prob & (pl.col("sample") == sample)) if with_sample else df.filter(prob)

    return ProblemFrames(
        rd.full_rows(prob & (pl.col("sample") == sample)),
        sel(rd.cots),
        sel(rd.index),
        sel(rd.problems, False),
        sel(rd.candidates, False),
    )


def item_detail(rd: "RunData", key: dict, pf: Optional[ProblemFrames] = None) -> dict[str, Any]:
    """The Item page of ``key`` (``pf``: the problem's frames when the caller has them, as the export does)."""
    pf = pf or problem_frames(rd, key["dataset"], key["problem_id"], key["sample"])
    same_problem = pf.answers
    rows = same_problem.filter((pl.col("setting") == key["setting"]) & (pl.col("variant") == key["variant"]))
    if rows.height == 0:
        raise KeyError("no such item")
    p = _one(pf.problems)
    first = rows.row(0, named=True)
    gold = json.loads(first["gold"]) if first["gold"] else None
    # Each source's own (Default) answer: what the leak audit looks for in its CoT.
    own_rows = same_problem.filter((pl.col("method") == "default") & (pl.col("target") == pl.col("source")))
    own = {
        r["source"]: r["answer"] if r["answer"] is not None else r["extracted"] for r in own_rows.iter_rows(named=True)
    }

    targets, cots = [], []
    seen: set[tuple[str, str]] = set()
    by_target = {r["target"]: r for r in rows.iter_rows(named=True)}
    for t in order_models(list(by_target)):
        r = by_target[t]
        targets.append(
            {
                "target": t,
                "source": r["source"],
                "answer_text": r["answer_text"],
                "extracted": r["extracted"],
                "answer": r["answer"],
                "correct": r["correct"],
                "error": r["error"],
                "finish_reason": r["finish_reason"],
                "answer_tokens": r["answer_tokens"],
            }
        )
        ck = (r["method"], r["source"])
        if ck in seen or r["method"] == "empty":
            continue
        seen.add(ck)
        cot_method = "default" if r["method"] == "transfer" else r["method"]
        c_sel = (pl.col("method") == cot_method) & (pl.col("source") == r["source"])
        cot_rows = pf.cots.filter(c_sel) if pf.cots.height else pl.DataFrame()
        full_row = _one(cot_rows.filter(pl.col("variant") == "full")) if cot_rows.height else None
        this_row = _one(cot_rows.filter(pl.col("variant") == key["variant"])) if cot_rows.height else None
        full = full_row["cot"] if full_row else (r["cot"] if key["variant"] == "full" else None)
        shown = r["cot"] or ""
        answer = own.get(r["source"])
        cots.append(
            {
                "source": r["source"],
                "method": r["method"],
                "variant": key["variant"],
                "for_targets": [r["target"]] if r["method"] in ("default", "sampled") else "all",
                "segments": (segs := cot_segments(full, shown, answer)),
                "source_answer": answer,
                "leak": this_row["leak"] if this_row else None,
                "filter": this_row.get("filter") if this_row else None,
                "cot_tokens": this_row["cot_tokens"] if this_row else None,
                "n_removed": sum(1 for x in segs if x["removed"]),
            }
        )

    others = []
    idx = pf.index
    ans: dict[tuple[str, str], dict] = {}
    for r in same_problem.select("setting", "variant", "target", "extracted", "correct").iter_rows(named=True):
        ans.setdefault((r["setting"], r["variant"]), {})[r["target"]] = {
            "extracted": r["extracted"],
            "correct": r["correct"],
        }
    from pipeline.view.data import item_key

    for r in sorted(
        idx.iter_rows(named=True), key=lambda r: (setting_order(r["setting"]), r["variant"] != "full", r["variant"])
    ):
        others.append(
            {
                "setting": r["setting"],
                "variant": r["variant"],
                "key": item_key(r),
                "answers": ans.get((r["setting"], r["variant"]), {}),
                "current": item_key(r) == item_key(key),
            }
        )

    ensemble = []
    if first["method"] == "ensemble" and pf.candidates.height:
        c = pf.candidates.filter(pl.col("source") == first["source"]).sort("step", "generator", "candidate")
        for (step,), g in c.group_by(["step"], maintain_order=True):
            ensemble.append(
                {
                    "step": step,
                    "candidates": [
                        {
                            "generator": x["generator"],
                            "text": x["text"],
                            "mean_score": x["mean_score"],
                            "winner": x["winner"],
                            "scores": dict(x["scores"])
                            if isinstance(x["scores"], dict)
                            else {e["key"]: e["value"] for e in (x["scores"] or [])},
                            "closes": x["closes"],
                        }
                        for x in g.iter_rows(named=True)
                    ],
                }
            )

    return {
        "key": key,
        "setting": key["setting"],
        "variant": key["variant"],
        "method": first["method"],
        "problem": {
            "dataset": key["dataset"],
            "problem_id": key["problem_id"],
            "sample": key["sample"],
            "prompt": p["prompt"] if p else None,
            "system": p["system"] if p else None,
            "gold": gold,
            "meta": p["meta"] if p else None,
        },
        "cots": cots,
        "targets": targets,
        "others": others,
        "ensemble": ensemble,
        "all_targets": order_models(list(by_target) + [t for a in ans.values() for t in a]),
    }
