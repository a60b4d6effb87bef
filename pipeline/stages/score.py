"""Stage `score`: gather every answer of the run, judge it, and write the tables.

It concatenates the generations (Empty/Default/Sampled) and transfer answers
into ``<run_dir>/answers.arrow`` — the same schema the reference-study
importer writes — then runs the scoring library (:mod:`pipeline.scoring`):
extraction and correctness per dataset, consistency matrices and summaries,
accuracy with bootstrap intervals.  Rows that errored are counted per reason
in ``tables/errors.csv``; the run fails *after* writing everything when the
error share exceeds ``error_budget``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from pipeline.config import hash_fields
from pipeline.errors import UserError
from pipeline.schema import ANSWERS, conform
from pipeline.stages.context import Context, stage_meta, timed
from pipeline.store.artifacts import read_table, write_table


class ErrorBudgetExceeded(UserError):
    """More requests errored than ``error_budget`` allows (tables are written first); a user error: the
    inputs (over-long prompts) or budgets (max_model_len, token budgets) need fixing."""


def gather_answers(paths: list[Path]) -> pa.Table:
    tables = [conform(read_table(p), ANSWERS) for p in paths]
    return pa.concat_tables(tables) if tables else ANSWERS.empty_table()


class ScoreStage:
    name = "score"
    requires = ("generate", "transfer")
    version = "1"

    def run(self, ctx: Context) -> list[Path]:
        import polars as pl

        from pipeline.scoring.judge import score_answers
        from pipeline.scoring.tables import write_tables

        with timed(ctx, self.name):
            inputs = list(ctx.outputs.get("generate", [])) + list(ctx.outputs.get("transfer", []))
            answers = gather_answers(inputs)
            sc = ctx.cfg.score
            args = {"score": hash_fields(sc), "inputs": sorted(ctx.artifact_hash(p) for p in inputs)}
            meta = stage_meta(ctx, self.name, args, {"answers": [str(p) for p in inputs]}, ctx.cfg.model_names)
            run_dir = ctx.run_dir
            write_table(run_dir / "answers.arrow", answers, meta)
            # Errored rows stay in: a missing answer counts as wrong and as a value in
            # consistency, as in the reference study (dropping them would inflate both).
            # The dataset's checker (dataset.options.checker; null = the plug-in's default)
            scored = score_answers(answers, judge=sc.judge, checker=(ctx.cfg.dataset.options or {}).get("checker"))
            write_table(run_dir / "scored.arrow", scored, meta)
            write_tables(scored, run_dir / "tables", metrics=tuple(sc.metrics), n_boot=sc.n_boot, seed=sc.seed)
            errs = pl.from_arrow(answers.select(["method", "target", "error"])).filter(pl.col("error").is_not_null())
            summary = (
                errs.with_columns(pl.col("error").str.slice(0, 120).alias("reason"))
                .group_by(["method", "target", "reason"])
                .len()
                .sort("len", descending=True)
                .rename({"len": "count"})
            )
            (run_dir / "tables").mkdir(parents=True, exist_ok=True)
            summary.write_csv(run_dir / "tables" / "errors.csv")
            share = errs.height / max(1, answers.num_rows)
            ctx.timings["error_share"] = share
            ctx.timings["error_rows"] = errs.height
            if share > ctx.cfg.error_budget:
                raise ErrorBudgetExceeded(
                    f"{errs.height} of {answers.num_rows} requests errored ({share:.1%}) > error_budget="
                    f"{ctx.cfg.error_budget:.1%}; reasons in {run_dir / 'tables' / 'errors.csv'}; "
                    "fix the cause (often max_model_len or token budgets) or raise error_budget"
                )
            return [run_dir / "answers.arrow", run_dir / "scored.arrow"]
