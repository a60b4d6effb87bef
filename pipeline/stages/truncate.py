"""Stage `truncate`: the "without answer" and partial variants of every CoT, with a leakage audit.

Inputs: the generations (Default and Sampled CoTs) and, when enabled, the
ensemble CoTs.  For each CoT it writes the ``full`` variant, the
``without_answer`` variant (answer statements removed), and ``prefix_<f>``
variants keeping the first fraction of sentences.  ``leak`` flags CoTs in
which the source's final answer still appears after removal (for either
filter).  Empty CoTs are recorded as skipped rows with their reason (they
cannot be transferred).

Answer statements are removed by ``truncate.filter``:

* ``rule`` — the rule-based sentence filter of :mod:`pipeline.text`;
* ``llm`` — the pool model ``truncate.filter_model`` marks the sentences that
  state the answer (:mod:`pipeline.filters`: one ``complete`` batch for all
  CoTs; kept sentences verbatim and in order), with the rule filter as
  fallback for unusable replies.

The ``filter`` column of ``without_answer`` rows records what was used:
``"rule"``, ``"llm"`` or ``"llm->rule"`` (at least one window fell back).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.artifacts import read_table, write_table
from pipeline.config import hash_fields
from pipeline.datasets import get_dataset
from pipeline.schema import COTS, from_rows
from pipeline.stages.base import Context, stage_meta, timed
from pipeline.text import RULES_VERSION, keep_prefix, leaks, remove_answer_statements

COT_KEY = ("dataset", "problem_id", "method", "source", "variant", "sample")


def cot_sources(ctx: Context) -> list[Path]:
    return list(ctx.outputs.get("generate", [])) + list(ctx.outputs.get("ensemble", []))


class TruncateStage:
    name = "truncate"
    requires = ("generate",)
    version = "2"  # 2: `filter` column, answer-form-aware rules (text.RULES_VERSION)

    def run(self, ctx: Context) -> list[Path]:
        with timed(ctx, self.name):
            inputs = cot_sources(ctx)
            t = ctx.cfg.truncate
            args = {"truncate": hash_fields(t), "inputs": sorted(ctx.artifact_hash(p) for p in inputs),
                    "v": self.version, "rules": RULES_VERSION}
            models = []
            if t.filter == "rewrite":  # [issue10 hook] the study's answer removal by a pool model
                from pipeline.rewrite_filter import PROMPT_VERSION as REWRITE_VERSION

                args["filter_model"] = ctx.model_key(t.filter_model)
                args["filter_prompt"] = REWRITE_VERSION
                models = [t.filter_model]
            if t.filter == "llm":
                from pipeline.filters import PROMPT_VERSION

                if not t.filter_model:
                    raise ValueError("truncate.filter=llm needs truncate.filter_model: the short name of a "
                                     "configured model (one of `models`) that marks answer sentences")
                args["filter_model"] = ctx.model_key(t.filter_model)
                args["filter_prompt"] = PROMPT_VERSION
                models = [t.filter_model]
            path = ctx.store.path("truncate", "cots", args)
            if path.exists():
                return [path]
            rows = []
            ds = get_dataset(ctx.cfg.dataset.name)
            src = [r for p in inputs for r in read_table(p).to_pylist()
                   if r["method"] in ("default", "sampled", "ensemble")]
            removed = self.llm_removed(ctx, src, ds) if t.filter in ("llm", "rewrite") else None
            for i, r in enumerate(src):
                rows.extend(self.variants(r, ds, t, removed[i] if removed is not None else None))
            meta = stage_meta(ctx, self.name, args, {"cots": [str(p) for p in inputs]}, models)
            write_table(path, from_rows(rows, COTS), meta)
            return [path]

    @staticmethod
    def llm_removed(ctx: Context, src: list[dict], ds) -> list:
        """(without_answer text, filter used) per source row; None for rows without a CoT."""
        from pipeline.filters import llm_filter

        todo = [i for i, r in enumerate(src) if not r.get("error") and (r.get("cot") or "").strip()]
        cots = [(src[i].get("cot") or "").strip() for i in todo]
        answers = [row_answer(src[i], ds) for i in todo]
        out: list = [None] * len(src)
        if ctx.cfg.truncate.filter == "rewrite":  # [issue10 hook]
            from pipeline.rewrite_filter import rewrite_filter

            for i, pair in zip(todo, rewrite_filter(ctx.pool, ctx.cfg.model(ctx.cfg.truncate.filter_model), cots)):
                out[i] = pair
            return out
        res = llm_filter(ctx.pool, ctx.cfg.model(ctx.cfg.truncate.filter_model), cots, answers)
        for i, fr in zip(todo, res):
            out[i] = (fr.cot, fr.filter)
        return out

    @staticmethod
    def variants(r: dict, ds, t, removed: tuple | None = None) -> list[dict]:
        base = {k: r[k] for k in ("dataset", "problem_id", "method", "source", "sample")}
        base.update(cot_tokens=r.get("cot_tokens"), finish_reason=r.get("cot_finish_reason"),
                    forced_close=r.get("forced_close"))
        cot = (r.get("cot") or "").strip()
        if r.get("error") or not cot:
            reason = r.get("error") or ("empty CoT: the source wrote no thinking text, so there is "
                                        "nothing to transfer; raise generate.thought_budget if it was cut")
            return [{**base, "variant": v, "cot": "", "error": reason} for v in ("full", "without_answer")]
        # The source's own final answer, to find the sentences that state it.
        answer = row_answer(r, ds)
        out = [{**base, "variant": "full", "cot": cot, "leak": leaks(cot, answer)}]
        if removed is None:
            wo, used = remove_answer_statements(cot, answer).strip(), "rule"
        else:
            wo, used = removed[0].strip(), removed[1]
        out.append({**base, "variant": "without_answer", "cot": wo, "leak": leaks(wo, answer), "filter": used,
                    "error": None if wo else ("without_answer variant is empty: the rewrite model returned no text"
                                               if used == "rewrite" else  # [issue10 hook]
                                               "without_answer variant is empty: every sentence stated the answer")})
        for f in t.prefix_fractions:
            pre = keep_prefix(cot, float(f)).strip()
            out.append({**base, "variant": f"prefix_{float(f):g}", "cot": pre, "leak": leaks(pre, answer)})
        return out


def row_answer(r: dict, ds) -> str | None:
    """The source's own final answer, to find the sentences that state it."""
    return r.get("answer") or ds.extract(r.get("answer_text") or "")

