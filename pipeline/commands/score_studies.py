"""The parts of ``crosscot score`` for the study's other tables: II imports and post-training pairs.

``crosscot score <run_dir>`` on a run made by ``crosscot import-genex-ii``
(``ii_comparisons.arrow``/``ii_files.arrow``, no ``answers.arrow``) writes the
II tables (:mod:`pipeline.scoring.ii`); ``--post-training-pairs`` on a MedCalc
run adds ``tables/post_training*.csv`` (:mod:`pipeline.scoring.post_training`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow as pa


def is_ii_run(run_dir: Path) -> bool:
    from pipeline.importers.genex_ii import FILES_FILE

    return (run_dir / FILES_FILE).is_file() and not (run_dir / "answers.arrow").is_file()


def score_ii(args: argparse.Namespace, t0: float) -> int:
    from pipeline.store.artifacts import read_table
    from pipeline.importers.genex_ii import FILES_FILE
    from pipeline.scoring.ii import ii_tables
    from pipeline.scoring.tables import write_frames

    run_dir = Path(args.run_dir)
    bad = [f"--{k.replace('_', '-')}" for k in ("post_training_pairs", "metric") if getattr(args, k, None)] + (
        ["--judge"] if getattr(args, "judge", "ours") != "ours" else []
    )
    if bad:
        print(
            f"crosscot: error: {run_dir} is an Instruction Induction import; {', '.join(bad)} apply to MedCalc "
            "runs only (its metrics are paper and corrected); drop them",
            file=sys.stderr,
        )
        return 2
    files = pl.from_arrow(read_table(run_dir / FILES_FILE))
    assert isinstance(files, pl.DataFrame)
    paths = write_frames(ii_tables(files, n_boot=args.n_boot, seed=args.seed), run_dir / "tables")
    print(
        f"scored the II comparisons ({files.height} files) in {time.perf_counter() - t0:.1f} s; tables: "
        + ", ".join(str(p) for p in paths.values())
    )
    return 0


def post_training_frames(
    scored: pa.Table, pairs: list[tuple[str, str]], run_dir: Path | None = None
) -> dict[str, pl.DataFrame] | None:
    """The post-training tables, or None after printing the user error.

    An imported run's ``source_answers.arrow`` (in ``run_dir``) gives the study's rule the source's
    answers as its transfer files recorded them.
    """
    from pipeline.importers.genex_source import SOURCE_ANSWERS_FILE
    from pipeline.scoring.post_training import PostTrainingError, post_training_tables
    from pipeline.store.artifacts import read_table

    df = pl.from_arrow(scored)
    assert isinstance(df, pl.DataFrame)
    side = None if run_dir is None else run_dir / SOURCE_ANSWERS_FILE
    sa = pl.from_arrow(read_table(side)) if side is not None and side.is_file() else None
    assert sa is None or isinstance(sa, pl.DataFrame)
    try:
        return post_training_tables(df, pairs, sa)
    except PostTrainingError as e:
        print(f"crosscot: error: {e}", file=sys.stderr)
        return None
