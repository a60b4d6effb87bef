"""``crosscot ratings <csv> --out <dir>``: the study's human-ratings tests, source means vs consistency, and a report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipeline.cli_args import out_path

HELP = "pairwise tests of the study's human ratings (paper and paired), means vs consistency; writes <dir>/tables and a report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("csv", type=Path, help="the study's ratings CSV (genex-user-study/clean_data_all_rows.csv)")
    parser.add_argument(
        "--out", type=out_path, required=True, help="directory for tables/ratings_*.csv and report.md/html"
    )
    parser.add_argument(
        "--method",
        action="append",
        choices=("paper", "paired"),
        default=None,
        help="paper: the study's unpaired t-tests; paired: item- and participant-matched "
        "(Wilcoxon/Friedman). Repeatable; default both",
    )
    parser.add_argument(
        "--consistency",
        default=None,
        metavar="CSV|SRC=V,...",
        help="consistency per source: a MedCalc run's tables/consistency_summary.csv "
        "(Transfer/Ensemble <source>, metric paper, full) or OSS=0.733,DAPO=0.820,...",
    )
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples over participants")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--force", action="store_true", help="replace results already there (else an error)")


def run(args: argparse.Namespace) -> int:
    from pipeline.importers.genex_ratings import RatingsError, read_ratings
    from pipeline.report import render
    from pipeline.scoring.ratings import consistency_for_sources, correlation, ratings_tests, source_summary
    from pipeline.scoring.tables import write_frames

    t0 = time.perf_counter()
    from pipeline.store.overwrite import guard_outputs

    out = Path(args.out)  # checked before anything is read or computed
    names = ["ratings_tests", "ratings_sources"] + (["ratings_correlation"] if args.consistency else [])
    guard_outputs(
        [out / "tables" / f"{n}.csv" for n in names] + [out / "report.md", out / "report.html"],
        force=args.force,
        inputs=[args.csv],
        command="ratings",
        folder=out,
    )
    try:
        cons = consistency_for_sources(args.consistency) if args.consistency else None
        long = read_ratings(args.csv)
    except UnicodeDecodeError as e:
        from pipeline.errors_fs import NotUtf8

        raise NotUtf8(args.csv, e) from None
    except (RatingsError, ValueError) as e:
        print(f"crosscot: error: {e}", file=sys.stderr)
        return 2
    if args.n_boot < 0:
        print("crosscot: error: --n-boot must be >= 0; pass e.g. --n-boot 2000", file=sys.stderr)
        return 2
    frames = {
        "ratings_tests": ratings_tests(long, tuple(args.method or ("paper", "paired"))),
        "ratings_sources": source_summary(long, cons, args.n_boot, args.seed),
    }
    if cons:
        frames["ratings_correlation"] = correlation(long, cons, args.n_boot, args.seed)
    paths = write_frames(frames, Path(args.out) / "tables")
    html = render(Path(args.out))
    print(
        f"{long['participant'].n_unique()} participants, {long.height} ratings; wrote "
        + ", ".join(str(p) for p in paths.values())
        + f" and {html} in {time.perf_counter() - t0:.1f} s"
    )
    return 0
