"""Stage `generate`: each model's own Empty, Default (greedy) and Sampled CoTs, and its answers.

One artifact per model (so sweeps share a model's generations across
experiments).  Two-phase, per item inside the engine: the model thinks until it
closes its thinking or hits ``thought_budget`` (then we close it), and its
answer request goes out the moment *its own* CoT closes.  Empty CoT places an
empty thinking block and asks for the answer directly.  Each finished row is
handed at once to the consumers of ``generation`` rows (truncate → transfer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from pipeline.config import hash_fields
from pipeline.engine.protocol import GenerateRequest, Sampling
from pipeline.engine.vllm_engine import request_seed
from pipeline.schema import GENERATE_ROWS, GENERATION_KEY, pick
from pipeline.stages.context import Context, stage_meta
from pipeline.stages.runner import Flow
from pipeline.store.sink import RowSink


class GenerateStage:
    name = "generate"
    requires: tuple[str, ...] = ()
    version = "2"  # 2: the answer after a CoT goes in by the CoT's token ids
    consumes: tuple[str, ...] = ()

    def open(self, ctx: Context) -> None:
        g = ctx.cfg.generate
        self._sinks: dict[str, RowSink] = {}
        self._meta: dict[str, dict] = {}
        for m in ctx.cfg.models.values():
            args = {
                "generate": hash_fields(g),
                "model": ctx.model_key(m.name),
                "problems": ctx.artifact_hash(ctx.problems_path),
                "v": self.version,
            }
            path = ctx.store.path("generate", m.name, args)
            self._sinks[m.name] = ctx.sink(path, GENERATE_ROWS, GENERATION_KEY)
            self._meta[m.name] = stage_meta(ctx, self.name, args, {"problems": str(ctx.problems_path)}, [m.name])
        ctx.artifacts["generate"] = [s.artifact for s in self._sinks.values()]

    def sinks(self) -> list[RowSink]:
        return list(self._sinks.values())

    def models(self, ctx: Context) -> list[str]:
        return [m for m, s in self._sinks.items() if not s.complete]

    def items(self, ctx: Context, model: str) -> Iterator[tuple[GenerateRequest, dict]]:
        """(request, row) per output row of ``model``, lazily (a large sweep is never held whole)."""
        g = ctx.cfg.generate
        m = ctx.cfg.model(model)
        for method in g.methods:
            for s in range(g.num_samples if method == "sampled" else 1):
                for p in ctx.problem_rows():
                    if method == "sampled":
                        samp = Sampling.from_config(m.sampled, request_seed(m.sampled.seed, p["problem_id"], s))
                    else:
                        samp = Sampling.from_config(m.greedy, 0)
                    # The problem's system message and forced answer prefix (None: none); replica
                    # routing: a problem's CoTs and their variants share one engine.
                    yield (
                        GenerateRequest(
                            prompt=p["prompt"],
                            sampling=samp,
                            thought_budget=g.thought_budget,
                            answer_budget=g.answer_budget,
                            system=p.get("system"),
                            answer_prefix=p.get("answer_prefix"),
                            cot="" if method == "empty" else None,
                            affinity=(p["problem_id"], m.name, s),
                        ),
                        {
                            "dataset": p["dataset"],
                            "problem_id": p["problem_id"],
                            "method": method,
                            "source": m.name,
                            "variant": "full",
                            "sample": s,
                            "target": m.name,
                            "gold": p["gold"],
                        },
                    )

    async def source(self, flow: Flow) -> None:
        for model, sink in self._sinks.items():
            todo = (
                0 if sink.complete else sum(1 for _, row in self.items(flow.ctx, model) if not sink.done(sink.key(row)))
            )
            if todo and model in flow.resident:
                flow.bar(self.name, more=todo)
            flow.spawn(f"generate {model}", self._feed(flow, model, sink))

    async def _feed(self, flow: Flow, model: str, sink: RowSink) -> None:
        async def handle(item: tuple[GenerateRequest, dict]) -> None:
            req, row = item

            async def work() -> list[dict]:
                res = await flow.call(self.name, model, req)
                return [{**row, **pick(res.row(), GENERATE_ROWS)}]

            job = flow.submit(self.name, sink, [sink.key(row)], [model], work, emit="generation")
            if job is not None:
                await job

        await flow.bounded(f"generate {model}", flow.pending_limit(model), self.items(flow.ctx, model), handle)

    def on_event(self, flow: Flow, kind: str, row: dict) -> None:  # consumes nothing
        return None

    def finish(self, ctx: Context) -> list[Path]:
        return [s.finish(self._meta[m]) for m, s in self._sinks.items()]
