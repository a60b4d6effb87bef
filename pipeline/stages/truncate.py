"""Stage `truncate`: the "without answer" and partial variants of every CoT, with a leakage audit.

Inputs: the generations (Default and Sampled CoTs) and, when enabled, the
ensemble CoTs.  For each CoT it writes the ``full`` variant, the
``without_answer`` variant (answer statements removed by the rule-based
sentence filter of :mod:`pipeline.text`), and ``prefix_<f>`` variants keeping
the first fraction of sentences.  ``leak`` flags CoTs in which the source's
final answer still appears after removal.  Empty CoTs are recorded as skipped
rows with their reason (they cannot be transferred).
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.artifacts import read_table, write_table
from pipeline.config import hash_fields
from pipeline.datasets import get_dataset
from pipeline.schema import COTS, from_rows
from pipeline.stages.base import Context, stage_meta, timed
from pipeline.text import keep_prefix, leaks, remove_answer_statements

COT_KEY = ("dataset", "problem_id", "method", "source", "variant", "sample")


def cot_sources(ctx: Context) -> list[Path]:
    return list(ctx.outputs.get("generate", [])) + list(ctx.outputs.get("ensemble", []))


class TruncateStage:
    name = "truncate"
    requires = ("generate",)
    version = "1"

    def run(self, ctx: Context) -> list[Path]:
        with timed(ctx, self.name):
            inputs = cot_sources(ctx)
            t = ctx.cfg.truncate
            args = {"truncate": hash_fields(t), "inputs": sorted(ctx.artifact_hash(p) for p in inputs),
                    "v": self.version}
            path = ctx.store.path("truncate", "cots", args)
            if path.exists():
                return [path]
            rows = []
            ds = get_dataset(ctx.cfg.dataset.name)
            for p in inputs:
                for r in read_table(p).to_pylist():
                    if r["method"] not in ("default", "sampled", "ensemble"):
                        continue
                    rows.extend(self.variants(r, ds, t))
            meta = stage_meta(ctx, self.name, args, {"cots": [str(p) for p in inputs]}, [])
            write_table(path, from_rows(rows, COTS), meta)
            return [path]

    @staticmethod
    def variants(r: dict, ds, t) -> list[dict]:
        base = {k: r[k] for k in ("dataset", "problem_id", "method", "source", "sample")}
        base.update(cot_tokens=r.get("cot_tokens"), finish_reason=r.get("cot_finish_reason"),
                    forced_close=r.get("forced_close"))
        cot = (r.get("cot") or "").strip()
        if r.get("error") or not cot:
            reason = r.get("error") or ("empty CoT: the source wrote no thinking text, so there is "
                                        "nothing to transfer; raise generate.thought_budget if it was cut")
            return [{**base, "variant": v, "cot": "", "error": reason} for v in ("full", "without_answer")]
        # The source's own final answer, to find the sentences that state it.
        answer = r.get("answer") or ds.extract(r.get("answer_text") or "")
        out = [{**base, "variant": "full", "cot": cot, "leak": leaks(cot, answer)}]
        wo = remove_answer_statements(cot, answer).strip()
        out.append({**base, "variant": "without_answer", "cot": wo, "leak": leaks(wo, answer),
                    "error": None if wo else "without_answer variant is empty: every sentence stated the answer"})
        for f in t.prefix_fractions:
            pre = keep_prefix(cot, float(f)).strip()
            out.append({**base, "variant": f"prefix_{float(f):g}", "cot": pre, "leak": leaks(pre, answer)})
        return out


def source_answer(r: dict) -> str | None:
    return r.get("answer") or None


__all__ = ["TruncateStage", "json"]
