"""Stage `truncate`: the "without answer" and partial variants of every CoT, with a leakage audit.

Streaming: it consumes each ``generation`` row (Default, Sampled and ensemble
CoTs) the moment it is finished and emits its variants as ``cot`` rows, which
the transfer stage sends to every target at once.  For each CoT it writes the
``full`` variant, the ``without_answer`` variant (answer statements removed),
and ``prefix_<f>`` variants keeping the first fraction of sentences.  ``leak``
flags CoTs in which the source's final answer still appears after removal.
Empty CoTs are recorded as rows with their reason (they cannot be transferred).

Answer statements are removed by ``truncate.filter``:

* ``rule`` — the rule-based sentence filter of :mod:`pipeline.text.sentences`
  (runs inline, on the driver);
* ``llm`` — the pool model ``truncate.filter_model`` marks the sentences that
  state the answer (:mod:`pipeline.text.llm_filter`; one engine item per CoT;
  kept sentences verbatim and in order).  A window whose reply is unusable
  falls back to the rule filter for that window (``"llm->rule"``).  A *failed*
  filter call is an error (the row is not written, the run fails at the end and
  a rerun retries it) unless ``truncate.on_filter_error=rule``, which uses the
  rule filter for that CoT and records ``"rule(filter error)"`` — part of the
  artifact's hash, so such rows are never mistaken for LLM-filtered ones;
* ``rewrite`` — the study's answer removal: ``truncate.filter_model`` rewrites
  the CoT with ``openai_remove_answer.py``'s prompt (:mod:`pipeline.text.rewrite_filter`;
  one ``generate`` item per CoT, never told the answer; recorded as ``"rewrite"``).
  Failures are handled as for ``llm``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipeline.config import hash_fields
from pipeline.datasets import get_dataset
from pipeline.schema import COT_KEY, COTS
from pipeline.engine.protocol import CompleteRequest, Completion, GenerateRequest, GenerateResult, TemplateQuery
from pipeline.stages.context import Context, stage_meta
from pipeline.stages.runner import Flow
from pipeline.store.sink import RowSink
from pipeline.text.answers import RULES_VERSION, leaks, remove_answer_statements
from pipeline.text.sentences import keep_prefix

COT_METHODS = ("default", "sampled", "ensemble")


class TruncateStage:
    name = "truncate"
    requires = ("generate",)
    version = "2"  # 2: `filter` column, answer-form-aware rules (text.RULES_VERSION)
    consumes = ("generation",)

    def open(self, ctx: Context) -> None:
        t = ctx.cfg.truncate
        inputs = list(ctx.artifacts.get("generate", [])) + list(ctx.artifacts.get("ensemble", []))
        args = {
            "truncate": hash_fields(t),
            "inputs": sorted(ctx.artifact_hash(p) for p in inputs),
            "v": self.version,
            "rules": RULES_VERSION,
        }
        self._models: list[str] = []
        if t.filter in ("llm", "rewrite"):
            from pipeline.text import llm_filter, rewrite_filter  # rewrite: the study's prompt

            assert t.filter_model is not None  # config validation names it for these filters

            args["filter_model"] = ctx.model_key(t.filter_model)
            args["filter_prompt"] = (llm_filter if t.filter == "llm" else rewrite_filter).PROMPT_VERSION
            self._models = [t.filter_model]
        path = ctx.store.path("truncate", "cots", args)
        self._sink = ctx.sink(path, COTS, COT_KEY)
        self._meta = stage_meta(ctx, self.name, args, {"cots": [str(p) for p in inputs]}, self._models)
        self._ds = get_dataset(ctx.cfg.dataset.name)
        self._template: dict[str, asyncio.Future] = {}
        ctx.artifacts["truncate"] = [path]

    def sinks(self) -> list[RowSink]:
        return [self._sink]

    def models(self, ctx: Context) -> list[str]:
        return [] if self._sink.complete else list(self._models)

    async def source(self, flow: Flow) -> None:
        self._template = {}  # futures of this flow's event loop (one loop per wave)

    # ------------------------------------------------------------------ items
    def on_event(self, flow: Flow, kind: str, row: dict) -> None:
        if row["method"] not in COT_METHODS:
            return
        t = flow.ctx.cfg.truncate
        want = self.variant_names(row, t)
        base = {k: row[k] for k in ("dataset", "problem_id", "method", "source", "sample")}
        keys = [self._sink.key({**base, "variant": v}) for v in want]
        if t.filter in ("llm", "rewrite") and self._has_cot(row):
            job = flow.submit(
                self.name, self._sink, keys, self._models, lambda: self._filter(flow, row), emit="cot", progress=False
            )
            if job is not None:
                flow.spawn(f"truncate {row['source']}/{row['problem_id']}", job)
            return
        if all(self._sink.done(k) for k in keys):
            for k in keys:
                flow.emit("cot", self._sink.get(k))
            return
        # The rule filter runs inline on the driver: no engine item, so no Flow.submit.
        for r in self.variants(row, self._ds, t):
            k = self._sink.key(r)
            if not self._sink.done(k):
                self._sink.add(r)
            flow.emit("cot", self._sink.get(k))

    async def _filter(self, flow: Flow, row: dict) -> list[dict]:
        t = flow.ctx.cfg.truncate
        [model] = self._models
        answer = row_answer(row, self._ds)
        try:
            removed = await self._filter_call(flow, model, row["cot"].strip(), answer)
        except Exception as e:  # noqa: BLE001 - loud unless the user opted into the fallback
            if t.on_filter_error != "rule":
                what = "LLM answer filter" if t.filter == "llm" else "rewrite answer filter"
                raise RuntimeError(
                    f"{what} ({model}) failed: {type(e).__name__}: {e}; rerun to retry, "
                    "or set truncate.on_filter_error=rule to use the rule filter instead"
                ) from e
            removed = (remove_answer_statements(row["cot"].strip(), answer), "rule(filter error)")
        return self.variants(row, self._ds, t, removed)

    async def _filter_call(self, flow: Flow, model: str, cot: str, answer: str | None) -> tuple[str, str]:
        """(without-answer CoT, filter used) from the filter model: ``llm`` marks sentences, ``rewrite`` rewrites."""
        mcfg = flow.ctx.cfg.model(model)
        if flow.ctx.cfg.truncate.filter == "rewrite":  # one generate item per CoT
            from pipeline.text.rewrite_filter import rewrite_one

            async def generate(req: GenerateRequest) -> GenerateResult:
                return await flow.call(self.name, model, req)

            return await rewrite_one(generate, mcfg, cot)
        from pipeline.text.llm_filter import filter_one

        if model not in self._template:  # rendered once per model; concurrent CoTs share the one call
            self._template[model] = asyncio.ensure_future(flow.call(self.name, model, TemplateQuery()))
        template = await self._template[model]

        async def complete(req: CompleteRequest) -> Completion:
            return await flow.call(self.name, model, req)

        res = await filter_one(complete, mcfg, template, cot, answer)
        return res.cot, res.filter

    # --------------------------------------------------------------- variants
    @staticmethod
    def _has_cot(r: dict) -> bool:
        return not r.get("error") and bool((r.get("cot") or "").strip())

    @classmethod
    def variant_names(cls, r: dict, t) -> list[str]:
        if not cls._has_cot(r):
            return ["full", "without_answer"]
        return ["full", "without_answer"] + [f"prefix_{float(f):g}" for f in t.prefix_fractions]

    @staticmethod
    def variants(r: dict, ds, t, removed: tuple | None = None) -> list[dict]:
        base = {k: r[k] for k in ("dataset", "problem_id", "method", "source", "sample")}
        base.update(
            cot_tokens=r.get("cot_tokens"), finish_reason=r.get("cot_finish_reason"), forced_close=r.get("forced_close")
        )
        cot = (r.get("cot") or "").strip()
        if r.get("error") or not cot:
            reason = r.get("error") or (
                "empty CoT: the source wrote no thinking text, so there is "
                "nothing to transfer; raise generate.thought_budget if it was cut"
            )
            return [{**base, "variant": v, "cot": "", "error": reason} for v in ("full", "without_answer")]
        answer = row_answer(r, ds)  # the source's own final answer, to find the sentences that state it
        out = [{**base, "variant": "full", "cot": cot, "leak": leaks(cot, answer)}]
        if removed is None:
            wo, used = remove_answer_statements(cot, answer).strip(), "rule"
        else:
            wo, used = removed[0].strip(), removed[1]
        out.append(
            {
                **base,
                "variant": "without_answer",
                "cot": wo,
                "leak": leaks(wo, answer),
                "filter": used,
                "error": None
                if wo
                else (
                    "without_answer variant is empty: the rewrite model returned no text"
                    if used == "rewrite"
                    else "without_answer variant is empty: every sentence stated the answer"
                ),
            }
        )
        for f in t.prefix_fractions:
            pre = keep_prefix(cot, float(f)).strip()
            out.append({**base, "variant": f"prefix_{float(f):g}", "cot": pre, "leak": leaks(pre, answer)})
        return out

    def finish(self, ctx: Context) -> list[Path]:
        return [self._sink.finish(self._meta)]


def row_answer(r: dict, ds) -> str | None:
    """The source's own final answer, to find the sentences that state it."""
    return r.get("answer") or ds.extract(r.get("answer_text") or "")
