"""``crosscot import-genex-ii <dir> --out <run_dir>``: import the study's Instruction Induction comparisons."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipeline.cli_args import out_path

HELP = "import the study's genex-ii-comparisons (BERTScores per task and model pair) into <run_dir>"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src_dir", type=Path, help="the genex-ii-comparisons folder (one sub-folder per setting)")
    parser.add_argument(
        "--out",
        type=out_path,
        required=True,
        help="run directory to write ii_comparisons.arrow, ii_files.arrow, import_skips.csv",
    )
    parser.add_argument("--force", action="store_true", help="replace results already there (else an error)")


def run(args: argparse.Namespace) -> int:
    from pipeline.store.artifacts import read_table
    from pipeline.importers.genex_ii import FILES_FILE, GenexIIImportError, import_genex_ii

    t0 = time.perf_counter()
    from pipeline.store.overwrite import guard_run_folder

    guard_run_folder(args.out, [args.src_dir], args.force, "import-genex-ii")
    try:
        dest = import_genex_ii(args.src_dir, args.out)
    except GenexIIImportError as e:
        print(f"crosscot: error: {e}", file=sys.stderr)
        return 2
    n_items = read_table(dest).num_rows
    n_files = read_table(Path(args.out) / FILES_FILE).num_rows
    print(
        f"wrote {dest} ({n_items} items from {n_files} files) in {time.perf_counter() - t0:.1f} s; "
        f"next: crosscot score {args.out}"
    )
    return 0
