"""``crosscot report <run_dir>``: render report.md / report.html with plots from the run's tables."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "render <run_dir>/report.md and a self-contained report.html from <run_dir>/tables/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run directory holding tables/ (from `crosscot score`)")


def run(args: argparse.Namespace) -> int:
    from pipeline.report import render

    t0 = time.perf_counter()
    from pipeline.errors import UserError

    try:
        out = render(Path(args.run_dir))
    except FileNotFoundError as e:
        raise UserError(f"report: {e}") from e
    print(f"wrote {out} and {Path(args.run_dir) / 'report.md'} in {time.perf_counter() - t0:.1f} s")
    return 0
