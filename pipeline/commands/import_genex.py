"""``crosscot import-genex <dir> --out <run_dir> [--benchmark-csv PATH]``: import the study's JSONL outputs."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from pipeline.cli_args import out_path

HELP = "import the reference study's released MedCalc-Bench JSONL generations into <run_dir>/answers.arrow"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src_dir", type=Path, help="folder with the study's *.jsonl files (genex-medcalc-outputs)")
    parser.add_argument(
        "--out", type=out_path, required=True, help="run directory to write answers.arrow and import_skips.csv into"
    )
    parser.add_argument(
        "--benchmark-csv",
        type=Path,
        default=None,
        help="MedCalc-Bench test_data.csv; joins Lower/Upper Limit and Output Type into the gold by Row Number",
    )
    parser.add_argument("--force", action="store_true", help="replace results already there (else an error)")


class _Held(logging.Handler):
    """Keeps log records back (see :func:`run`)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def run(args: argparse.Namespace) -> int:
    from pipeline.datasets.medcalc_csv import MedCalcLoadError
    from pipeline.importers.genex_medcalc import GenexImportError, import_genex
    from pipeline.store.artifacts import read_table
    from pipeline.store.overwrite import guard_run_folder

    t0 = time.perf_counter()
    from pipeline.errors import UserError

    guard_run_folder(
        args.out, [args.src_dir] + ([args.benchmark_csv] if args.benchmark_csv else []), args.force, "import-genex"
    )
    from pipeline.importers.genex_medcalc import log as import_log

    held = _Held()  # the per-record notes: shown once the import succeeds; a failure is its one line
    import_log.addHandler(held)
    import_log.propagate = False
    try:
        dest = import_genex(args.src_dir, args.out, args.benchmark_csv)
    except (GenexImportError, MedCalcLoadError, FileNotFoundError) as e:
        raise UserError(f"import-genex: {e}") from e
    finally:
        import_log.removeHandler(held)
        import_log.propagate = True
    for rec in held.records:
        import_log.handle(rec)
    n = read_table(dest).num_rows
    skips = (Path(args.out) / "import_skips.csv").read_text().count("\n") - 1
    print(
        f"wrote {dest} ({n} rows) in {time.perf_counter() - t0:.1f} s; {skips} record(s) in {Path(args.out) / 'import_skips.csv'}"
    )
    return 0
