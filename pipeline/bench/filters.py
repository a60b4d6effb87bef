"""Measure the "without answer" filters on the reference study's released MedCalc CoTs.

Reads the five Default-CoT files (``<model>_zero_shot_original[_low].jsonl``:
field ``LLM Thinking`` = the CoT, ``LLM Answer`` = the model's final answer)
from the reference data folder (read in place, never copied), and reports per
source model and overall:

* ``leak``: share of CoTs whose final answer still appears (as a whole token,
  :func:`pipeline.text.answers.leaks`) after removal;
* ``leak (distinct.)``: the same over answers that are not small integers
  (decimals, numbers > 10, dates), where any appearance really reveals the
  answer; small-integer answers (scores 0-10) also appear as list numbers and
  criterion points, which the audit counts as leaks;
* ``kept``: mean kept-text ratio (kept chars / original chars).

Rows whose answer is an error text ("name 'N' is not defined") or whose CoT is
empty are left out (counted in the table).  The rule filter runs over all
CoTs; the LLM filter only when asked (``--llm smollm2 --sample 40``), on a
fixed seeded sample, and the rule filter is then reported on that sample too.

Usage: ``python -m pipeline.bench.filters OUT_DIR [--llm smollm2] [--sample 40]``
(set ``CROSSCOT_CACHE`` to where the small models are prepared).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import time
from pathlib import Path
from typing import Optional

from pipeline.text.answers import is_distinctive, leaks, remove_answer_statements

DATA_DIR = os.environ.get("CROSSCOT_GENEX_DIR", "/work/shared/data/genex-medcalc-outputs")
PATTERN = "*_zero_shot_original*.jsonl"


def load_cots(data_dir: str = DATA_DIR) -> tuple[list[dict], dict]:
    """Eligible CoT rows {source, row, cot, answer} and counts of left-out rows per source."""
    from pipeline.datasets.medcalc import is_error_text
    from pipeline.importers.genex_medcalc import MODEL_SHORT

    rows, skipped = [], {}
    files = sorted(glob.glob(os.path.join(data_dir, PATTERN)))
    if not files:
        raise FileNotFoundError(f"no {PATTERN} files in {data_dir} (set CROSSCOT_GENEX_DIR)")
    for f in files:
        model_id = Path(f).name.split("_zero_shot_original")[0]
        src = MODEL_SHORT.get(model_id, model_id)
        skipped[src] = 0
        with open(f) as fh:
            for line in fh:
                r = json.loads(line)
                cot = (r.get("LLM Thinking") or "").strip()
                ans = (str(r.get("LLM Answer") or "")).strip()
                if not cot or not ans or is_error_text(ans):
                    skipped[src] += 1
                    continue
                rows.append({"source": src, "row": r["Row Number"], "cot": cot, "answer": ans})
    return rows, skipped


def _metrics(rows: list[dict], outs: list[str]) -> dict:
    n = len(rows)
    if not n:
        return {"n": 0}
    lk = [leaks(o, r["answer"]) for r, o in zip(rows, outs)]
    dist = [i for i, r in enumerate(rows) if is_distinctive(r["answer"])]
    return {
        "n": n,
        "leak_full": sum(leaks(r["cot"], r["answer"]) for r in rows) / n,
        "leak": sum(lk) / n,
        "n_dist": len(dist),
        "leak_dist": (sum(lk[i] for i in dist) / len(dist)) if dist else float("nan"),
        "kept": sum(len(o) / len(r["cot"]) for r, o in zip(rows, outs)) / n,
    }


def _table(title: str, rows: list[dict], outs: list[str], extra: Optional[list[str]] = None) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| source | CoTs | leak (full CoT) | leak | CoTs w/ distinctive answer | leak (distinct.) | kept ratio |"
        + (" filter used |" if extra else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---|" if extra else ""),
    ]
    groups = sorted({r["source"] for r in rows}) + ["all"]
    for g in groups:
        idx = [i for i, r in enumerate(rows) if g == "all" or r["source"] == g]
        m = _metrics([rows[i] for i in idx], [outs[i] for i in idx])
        if not m["n"]:
            continue
        cell = ""
        if extra:
            used = [extra[i] for i in idx]
            cell = " " + ", ".join(f"{u}: {used.count(u)}" for u in sorted(set(used))) + " |"
        name = f"**{g}**" if g == "all" else g
        lines.append(
            f"| {name} | {m['n']} | {m['leak_full']:.1%} | {m['leak']:.1%} | {m['n_dist']} | "
            f"{m['leak_dist']:.1%} | {m['kept']:.3f} |{cell}"
        )
    return lines + [""]


def run_llm(model: str, cots: list[str], answers: list[str]):
    """The LLM filter with ``model`` (a conf/model short config name) on an in-process vLLM engine."""
    from pipeline.commands.models import compose_model
    from pipeline.engine.local import LocalPool
    from pipeline.engine.vllm_engine import ModelEngine
    from pipeline.text.llm_filter import llm_filter

    cfg = compose_model(model)
    t0 = time.time()
    eng = ModelEngine(cfg)
    load = time.time() - t0
    t1 = time.time()
    res = llm_filter(LocalPool({cfg.name: eng}), cfg, cots, answers)
    return res, load, time.time() - t1, eng.get_stats()


def main(out_dir, llm_model: Optional[str] = None, sample: Optional[int] = None, seed: int = 0) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, skipped = load_cots()
    t0 = time.time()
    rule = [remove_answer_statements(r["cot"], r["answer"]).strip() for r in rows]
    t_rule = time.time() - t0
    lines = [
        "# Answer filters on the reference MedCalc Default CoTs",
        "",
        f"Source files: `{PATTERN}` in `{DATA_DIR}`; {len(rows)} CoTs with an answer "
        f"(left out, empty CoT or error answer: {skipped}).",
        "",
        "leak = share of CoTs whose final answer still appears as a whole token after removal; "
        "distinctive answers = not an integer in [-10, 10]; kept ratio = mean kept chars / original chars.",
        "",
    ]
    lines += _table(f"Rule filter, all CoTs ({t_rule:.2f} s)", rows, rule)
    if llm_model:
        idx = list(range(len(rows)))
        if sample and sample < len(rows):
            idx = sorted(random.Random(seed).sample(idx, sample))
        sub = [rows[i] for i in idx]
        res, load, secs, stats = run_llm(llm_model, [r["cot"] for r in sub], [r["answer"] for r in sub])
        what = f"seeded sample of {len(sub)} (seed {seed})" if len(sub) < len(rows) else f"all {len(sub)} CoTs"
        lines += _table(f"Rule filter, {what}", sub, [rule[i] for i in idx])
        lines += _table(
            f"LLM filter ({llm_model}), {what}: {secs:.0f} s + {load:.0f} s load, "
            f"{stats.get('requests', 0)} windows, {stats.get('prefill_tokens', 0)} prefill tokens",
            sub,
            [fr.cot.strip() for fr in res],
            [fr.filter for fr in res],
        )
        nw, nr = sum(fr.windows for fr in res), sum(fr.windows_rule for fr in res)
        lines += [
            f"Windows answered usably by {llm_model}: {nw - nr} of {nw} ({(nw - nr) / max(1, nw):.0%}); "
            f"the other {nr} fell back to the rule filter.",
            "",
        ]
        notes = [f"- {r['source']} row {r['row']}: {fr.note}" for r, fr in zip(sub, res) if fr.note]
        if notes:
            lines += ["Fallback reasons (first 10):", ""] + notes[:10] + [""]
    path = out / "filters_bench.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--llm", default=None, help="model config name (conf/model), e.g. smollm2")
    ap.add_argument("--sample", type=int, default=None, help="seeded sample size for the LLM filter")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(main(a.out_dir, a.llm, a.sample, a.seed).read_text())
