"""``crosscot bench <name>... | all``: run the project's benchmarks (see :mod:`pipeline.bench.runner`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "run benchmarks: all, or any of the sections (replay, ensemble, kernel, plan, ...); writes <out>/BENCH.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.bench.runner import SECTIONS

    parser.add_argument("names", nargs="+", metavar="name", help="'all' or sections: " + ", ".join(SECTIONS))
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="output folder (default runs/bench)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")


def run(args: argparse.Namespace) -> int:
    from pipeline.bench.runner import SECTIONS, run_benches

    names = [] if args.names == ["all"] else list(args.names)
    bad = [n for n in names if n not in SECTIONS]
    if bad:
        print(f"crosscot: error: unknown bench {bad[0]!r}; use 'all' or one of: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    return run_benches(names, args.out, args.quick)
