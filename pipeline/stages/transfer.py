"""Stage `transfer`: every source CoT variant x every target model -> the target's answer.

Streaming: each ``cot`` row from truncate is sent to every target the moment it
exists (one engine item per target), so transfers run while other CoTs are still
being written.  The CoT is placed in the *target's* own thinking format (its chat
template, its tags) and the target answers greedily after it.  Default CoTs
become the ``Transfer <SRC>`` settings (a model's own full Default CoT on itself is the request its
``generate`` already answered when budgets and prompts match, so that row is reused, not recomputed); ensemble CoTs become
``Ensemble <G1>+<G2>/<E>``; a model's own Sampled CoT without its answer
statements gives the Sampled ``without_answer`` variant.  One artifact per
target model.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path
from typing import Awaitable, Callable, Optional

from pipeline.config import hash_fields
from pipeline.engine.protocol import AnswerRequest, Sampling
from pipeline.engine.vllm_engine import request_seed
from pipeline.schema import ANSWER_KEY, ANSWERS, GENERATION_KEY, pick
from pipeline.stages.context import Context, stage_meta
from pipeline.stages.runner import Flow
from pipeline.store.sink import RowSink


def transfer_method(c: dict, target: str, sources: set[str]) -> Optional[str]:
    """The setting a CoT row gives on ``target`` (None: not transferred there)."""
    if c["method"] == "default" and c["source"] in sources:
        return "transfer"
    if c["method"] == "ensemble":
        return "ensemble"
    if c["method"] == "sampled" and c["source"] == target and c["variant"] != "full":
        return "sampled"
    return None


def answer_sampling(m, method: str, c: dict) -> Sampling:
    """Greedy answers, except after the model's own Sampled CoT under the study's protocol (sampled there)."""
    if method == "sampled" and m.protocol.sampled_answer:
        return Sampling.from_config(m.sampled, request_seed(m.sampled.seed, c["problem_id"], c["sample"], "answer"))
    return Sampling.from_config(m.greedy, 0)


class TransferStage:
    name = "transfer"
    requires = ("truncate",)
    version = "2"  # 2: a self-transfer identical to its generate request reuses that row
    consumes = ("cot", "generation")

    def open(self, ctx: Context) -> None:
        tc = ctx.cfg.transfer
        [cots_path] = ctx.artifacts["truncate"]
        self._sinks: dict[str, RowSink] = {}
        self._meta: dict[str, dict] = {}
        self._sources = set(tc.sources or ctx.cfg.model_names)
        for tname in tc.targets or ctx.cfg.model_names:
            args = {
                "transfer": hash_fields(tc),
                "target": ctx.model_key(tname),
                "cots": ctx.artifact_hash(cots_path),
                "v": self.version,
            }
            path = ctx.store.path("transfer", tname, args)
            self._sinks[tname] = ctx.sink(path, ANSWERS, ANSWER_KEY)
            self._meta[tname] = stage_meta(ctx, self.name, args, {"cots": str(cots_path)}, [tname])
        self._prompts = {p["problem_id"]: p for p in ctx.problem_rows()}
        self._own: dict[tuple, dict] = {}  # (problem, model, sample) -> its Default generation's answer
        self._waits: dict[tuple, asyncio.Event] = {}
        ctx.artifacts["transfer"] = [s.artifact for s in self._sinks.values()]

    def sinks(self) -> list[RowSink]:
        return list(self._sinks.values())

    def models(self, ctx: Context) -> list[str]:
        return [m for m, s in self._sinks.items() if not s.complete]

    async def source(self, flow: Flow) -> None:
        return None

    def on_event(self, flow: Flow, kind: str, c: dict) -> None:
        tc = flow.ctx.cfg.transfer
        if kind == "generation":
            if c["method"] == "default" and self._same_request(flow.ctx, c["source"]):
                k = (c["problem_id"], c["source"], c["sample"])
                self._own[k] = pick(c, ANSWERS)
                ev = self._waits.pop(k, None)
                if ev is not None:
                    ev.set()
            return
        if c["variant"] not in tc.variants or c.get("error"):
            return
        for tname, sink in self._sinks.items():
            method = transfer_method(c, tname, self._sources)
            if method is None or sink.complete:
                continue
            p = self._prompts[c["problem_id"]]
            row = {
                "dataset": c["dataset"],
                "problem_id": c["problem_id"],
                "method": method,
                "source": c["source"],
                "variant": c["variant"],
                "sample": c["sample"],
                "target": tname,
                "cot": c["cot"],
                "gold": p["gold"],
            }
            # The problem's system message and forced answer prefix; the "transfer" phase (e.g. gpt-oss's
            # transfer reasoning effort) for another model's CoT, "own" for a model's own sample.
            # Replica routing: every variant of one source CoT on one target shares an engine.
            req = AnswerRequest(
                prompt=p["prompt"],
                cot=c["cot"],
                sampling=answer_sampling(flow.ctx.cfg.model(tname), method, c),
                answer_budget=tc.answer_budget,
                system=p.get("system"),
                phase="own" if method == "sampled" else "transfer",
                answer_prefix=p.get("answer_prefix"),
                affinity=(c["problem_id"], c["source"], c["sample"]),
            )
            job = flow.submit(self.name, sink, [sink.key(row)], [tname], self._work(flow, tname, req, row))
            if job is not None:
                flow.bar(self.name, more=1)
                flow.spawn(f"transfer {c['source']}->{tname}/{c['problem_id']}", job)

    def _work(self, flow: Flow, target: str, req: AnswerRequest, row: dict) -> Callable[[], Awaitable[list[dict]]]:
        async def work() -> list[dict]:
            reused = await self._reused(flow, row)
            if reused is not None:
                return [{**row, **reused}]
            res = await flow.call(self.name, target, req)
            return [{**row, **pick(asdict(res), ANSWERS)}]

        return work

    @staticmethod
    def _same_request(ctx: Context, model: str) -> bool:
        """Whether a model's full Default CoT transferred to itself is the request its generate made:
        the same answer budget and the same prompt (no transfer-only chat-template arguments)."""
        m = ctx.cfg.model(model)
        return (
            ctx.cfg.transfer.answer_budget == ctx.cfg.generate.answer_budget
            and not m.protocol.transfer_chat_template_kwargs
        )

    async def _reused(self, flow: Flow, row: dict) -> Optional[dict]:
        """The generate row's answer for a self-transfer identical to it (module docstring), else None.

        The generation row always reaches this stage (generate emits every row, new or read back),
        but on a resumed run it may come after the CoT's variants: wait for it, so whether a row is
        reused never depends on timing; stop waiting only when that generate item failed."""
        if (
            row["method"] != "transfer"
            or row["variant"] != "full"
            or row["source"] != row["target"]
            or not self._same_request(flow.ctx, row["source"])
        ):
            return None
        k = (row["problem_id"], row["source"], row["sample"])
        gen_key = tuple({**row, "method": "default"}.get(c) for c in GENERATION_KEY)
        while k not in self._own:
            if ("generate", gen_key) in flow.ctx.failed_items:
                return None
            ev = self._waits.setdefault(k, asyncio.Event())
            try:
                await asyncio.wait_for(ev.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
        own = self._own[k]
        if own.get("error") or (own.get("cot") or "").strip() != (row.get("cot") or ""):
            return None
        return {c: v for c, v in own.items() if c not in row}

    def finish(self, ctx: Context) -> list[Path]:
        return [s.finish(self._meta[m]) for m, s in self._sinks.items()]
