"""Stage `transfer`: every source CoT variant x every target model -> the target's answer.

The CoT is placed in the *target's* own thinking format (its chat template,
its tags) and the target answers greedily after it.  Default CoTs become the
``Transfer <SRC>`` settings; ensemble CoTs become ``Ensemble <G1>+<G2>/<E>``;
a model's own Sampled CoT without its answer statements gives the Sampled
``without_answer`` variant.  One artifact per target model.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.artifacts import read_table
from pipeline.config import hash_fields
from pipeline.engine.core import Sampling
from pipeline.schema import ANSWERS
from pipeline.stages.base import Context, Job, execute_jobs, gold_map, prompt_map, stage_meta, timed

KEY = ("dataset", "problem_id", "method", "source", "variant", "sample", "target")


class TransferStage:
    name = "transfer"
    requires = ("truncate",)
    version = "1"

    def jobs(self, ctx: Context) -> list[Job]:
        tc = ctx.cfg.transfer
        [cots_path] = ctx.outputs["truncate"]
        cots = read_table(cots_path).to_pylist()
        prompts, golds = prompt_map(ctx), gold_map(ctx)
        # [issue10 hook] the problem's system message; "transfer" phase (e.g. gpt-oss's transfer reasoning effort)
        systems = dict(zip(ctx.problems.column("problem_id").to_pylist(), ctx.problems.column("system").to_pylist()))
        # [issue10 hook] the problem's forced answer prefix (null: none)
        prefixes = dict(zip(ctx.problems.column("problem_id").to_pylist(),
                            ctx.problems.column("answer_prefix").to_pylist()))
        sources = set(tc.sources or ctx.cfg.model_names)
        targets = tc.targets or ctx.cfg.model_names
        jobs = []
        for tname in targets:
            m = ctx.cfg.model(tname)
            args = {"transfer": hash_fields(tc), "target": hash_fields(m), "cots": ctx.artifact_hash(cots_path),
                    "v": self.version}
            path = ctx.store.path("transfer", tname, args)
            items = []
            for c in cots:
                if c["variant"] not in tc.variants or c.get("error"):
                    continue
                if c["method"] == "default" and c["source"] in sources:
                    method = "transfer"
                elif c["method"] == "ensemble":
                    method = "ensemble"
                elif c["method"] == "sampled" and c["source"] == tname and c["variant"] != "full":
                    method = "sampled"
                else:
                    continue
                items.append({
                    "request": {"prompt": prompts[c["problem_id"]], "cot": c["cot"],
                                "system": systems[c["problem_id"]], "phase": "own" if method == "sampled" else "transfer",
                                "answer_prefix": prefixes[c["problem_id"]],  # [issue10 hook]
                                "sampling": Sampling.from_config(m.greedy, 0), "max_tokens": tc.answer_budget},
                    "row": {"dataset": c["dataset"], "problem_id": c["problem_id"], "method": method,
                            "source": c["source"], "variant": c["variant"], "sample": c["sample"],
                            "target": tname, "cot": c["cot"], "gold": golds[c["problem_id"]]},
                })
            meta = stage_meta(ctx, self.name, args, {"cots": str(cots_path)}, [tname])
            jobs.append(Job(tname, "answer", path, ANSWERS, KEY, items, meta, tc.chunk_size))
        return jobs

    def run(self, ctx: Context) -> list[Path]:
        with timed(ctx, self.name):
            return execute_jobs(ctx, self.jobs(ctx), "transfer")
