"""``crosscot analyses <run_dir> --out DIR``: the study's further MedCalc analyses of a scored run.

Reads ``<run_dir>/scored.arrow`` (an import scored with ``--judge stored``, or a
live run) and, for an import, ``source_answers.arrow``; writes
``DIR/analyses.csv`` (``analysis,setting,group,metric,value,n``) and
``DIR/analyses.md``.  See :mod:`pipeline.analyses.study`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "the study's further analyses (self-consistency, CoT effect, ...) of <run_dir>/scored.arrow into DIR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a scored run (crosscot score) or a scored import")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <run_dir>/analyses)")
    parser.add_argument(
        "--only", action="append", default=None, help="run only this analysis (repeatable; default: all five)"
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.analyses.frame import read_run
    from pipeline.analyses.study import ANALYSES, run_analyses
    from pipeline.analyses.write import write
    from pipeline.config.checks import choose_each
    from pipeline.errors import UserError

    t0 = time.perf_counter()
    names = list(args.only or ANALYSES)
    choose_each("--only", names, list(ANALYSES), "analysis")
    run_dir = Path(args.run_dir)
    if not (run_dir / "scored.arrow").is_file():
        raise UserError(
            f"analyses: {run_dir / 'scored.arrow'} not found; run `crosscot score {run_dir}` first "
            "(`--judge stored` for an import)"
        )
    files, models = read_run(run_dir)
    if not files:
        raise UserError(f"analyses: {run_dir} holds no answers of its target models; score a MedCalc run first")
    rows = run_analyses(files, models, names)
    csv, md = write(rows, args.out or run_dir / "analyses")
    print(
        f"analyses of {len(files)} files ({len(models)} models) in {time.perf_counter() - t0:.1f} s: "
        f"{len(rows)} rows in {csv}; report {md}"
    )
    return 0
