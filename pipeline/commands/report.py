"""``crosscot report <run_dir>``: render report.md / report.html with plots from the run's tables."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "render <run_dir>/report.md and a self-contained report.html from <run_dir>/tables/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run directory holding tables/ (from `crosscot score`)")
    parser.add_argument(
        "--force", action="store_true", help="replace report.md/report.html already there (else an error)"
    )


def check_tables(tables: Path) -> None:
    """Every CSV table reads (UTF-8, parses): a damaged one is named before any page is written."""
    import polars as pl

    from pipeline.errors import UserError
    from pipeline.errors_fs import read_utf8

    for p in sorted(tables.glob("*.csv")):
        try:
            pl.read_csv(read_utf8(p).encode())
        except (OSError, pl.exceptions.PolarsError) as e:
            raise UserError(
                f"report: the table {p} is damaged ({' '.join(str(e).split())[:120]}); "
                f"recompute it with `crosscot score {tables.parent} --force`"
            ) from None


def run(args: argparse.Namespace) -> int:
    from pipeline.report import render

    t0 = time.perf_counter()
    from pipeline.errors import UserError

    from pipeline.store.overwrite import guard_outputs

    rd = Path(args.run_dir)
    if not (rd / "tables").is_dir():
        raise UserError(f"report: no tables in {rd / 'tables'}; run `crosscot score {rd}` first")
    guard_outputs([rd / "report.md", rd / "report.html"], force=args.force, command="report", out_flag="run directory")
    check_tables(rd / "tables")
    try:
        out = render(Path(args.run_dir))
    except FileNotFoundError as e:
        raise UserError(f"report: {e}") from e
    print(f"wrote {out} and {Path(args.run_dir) / 'report.md'} in {time.perf_counter() - t0:.1f} s")
    return 0
