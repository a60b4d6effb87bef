"""Stage `generate`: each model's own Empty, Default (greedy) and Sampled CoTs, and its answers.

One artifact per model (so sweeps share a model's generations across
experiments).  Two-phase: the model thinks until it closes its thinking or hits
``thought_budget`` (then we close it), then answers after its own CoT.  Empty
CoT places an empty thinking block and asks for the answer directly.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import hash_fields
from pipeline.engine.core import Sampling, request_seed
from pipeline.schema import GENERATIONS
from pipeline.stages.base import Context, Job, execute_jobs, stage_meta, timed

KEY = ("dataset", "problem_id", "method", "source", "variant", "sample", "target")


class GenerateStage:
    name = "generate"
    requires: tuple[str, ...] = ()
    version = "1"

    def jobs(self, ctx: Context) -> list[Job]:
        g = ctx.cfg.generate
        problems = ctx.problems.to_pylist()
        jobs = []
        for m in ctx.cfg.models.values():
            args = {"generate": {k: v for k, v in hash_fields(g).items()}, "model": hash_fields(m),
                    "problems": ctx.artifact_hash(ctx.problems_path), "v": self.version}
            path = ctx.store.path("generate", m.name, args)
            items = []
            for method in g.methods:
                for s in range(g.num_samples if method == "sampled" else 1):
                    for p in problems:
                        if method == "sampled":
                            samp = Sampling.from_config(m.sampled, request_seed(m.sampled.seed, p["problem_id"], s))
                        else:
                            samp = Sampling.from_config(m.greedy, 0)
                        items.append({
                            "request": {"prompt": p["prompt"], "system": p.get("system"),  # [issue10 hook]
                                        "answer_prefix": p.get("answer_prefix"),  # [issue10 hook]
                                        "cot": "" if method == "empty" else None,
                                        "sampling": samp, "think_tokens": g.thought_budget,
                                        "answer_tokens": g.answer_budget},
                            "row": {"dataset": p["dataset"], "problem_id": p["problem_id"], "method": method,
                                    "source": m.name, "variant": "full", "sample": s, "target": m.name,
                                    "gold": p["gold"]},
                        })
            meta = stage_meta(ctx, self.name, args, {"problems": str(ctx.problems_path)}, [m.name])
            jobs.append(Job(m.name, "generate", path, GENERATIONS, KEY, items, meta, g.chunk_size))
        return jobs

    def run(self, ctx: Context) -> list[Path]:
        with timed(ctx, self.name):
            return execute_jobs(ctx, self.jobs(ctx), "generate")
