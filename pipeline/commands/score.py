"""``crosscot score <run_dir>``: judge answers, write scored.arrow and the result tables."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "judge <run_dir>/answers.arrow, write <run_dir>/scored.arrow and <run_dir>/tables/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run directory holding answers.arrow")
    parser.add_argument(
        "--judge",
        default="ours",
        help="ours: the dataset plug-in's checker; stored: the judgment that came with imported data",
    )
    parser.add_argument(
        "--metric",
        action="append",
        default=None,
        help="consistency metric (repeatable; default: paper and strict)",
    )
    parser.add_argument(
        "--checker",
        default=None,
        help="answer checker of the dataset plug-in (MedCalc: lenient or official); default: the run's "
        "dataset.options.checker from config.json, else the plug-in's default",
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument(
        "--post-training-pairs",
        default=None,
        metavar="BASE=POST,...",
        help="(base, post-trained) source pairs by short name or the study's file-name id; "
        "also writes tables/post_training*.csv",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace scored.arrow and tables/ already in the run directory (else an error)",
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.config.checks import choose, choose_each, number
    from pipeline.config.schemas import JUDGES
    from pipeline.errors import UserError
    from pipeline.scoring.consistency import METRICS
    from pipeline.scoring.judge import score_answers
    from pipeline.scoring.tables import write_tables
    from pipeline.store.artifacts import provenance, read_table, write_table
    from pipeline.store.overwrite import guard_scored

    t0 = time.perf_counter()
    src = Path(args.run_dir) / "answers.arrow"
    metrics = tuple(args.metric or ("paper", "strict"))
    choose_each("--metric", list(metrics), METRICS.names(), "consistency metric")
    choose("--judge", args.judge, JUDGES, "judge")
    number("--n-boot", args.n_boot, 0, integer=True)
    # An Instruction Induction import is scored from its stored BERTScores.
    from pipeline.commands.score_studies import is_ii_run, score_ii

    if is_ii_run(Path(args.run_dir)):
        return score_ii(args, t0)
    pairs = None
    if args.post_training_pairs:
        from pipeline.scoring.post_training import PostTrainingError, parse_pairs

        try:
            pairs = parse_pairs(args.post_training_pairs)
        except PostTrainingError as e:
            raise UserError(str(e)) from e
    if not src.is_file():
        raise UserError(f"score: {src} not found; run `crosscot import-genex` or the pipeline first")
    checker = args.checker or run_checker(Path(args.run_dir))
    try:
        scored = score_answers(read_table(src), judge=args.judge, checker=checker)
    except ValueError as e:  # unreadable answers or a judge that cannot score them: the user's input
        raise UserError(f"score: {e}") from e
    # Post-training tables (checked before anything is written).
    post = None
    if pairs is not None:
        from pipeline.commands.score_studies import post_training_frames

        post = post_training_frames(scored, pairs, Path(args.run_dir))
        if post is None:
            return 2
    meta = provenance(
        "score",
        {"judge": args.judge, "checker": checker, "metrics": list(metrics), "n_boot": args.n_boot, "seed": args.seed},
        {"answers": str(src)},
    )
    guard_scored(Path(args.run_dir), args.force, "score")
    write_table(Path(args.run_dir) / "scored.arrow", scored, meta)  # atomic
    paths = write_tables(scored, Path(args.run_dir) / "tables", metrics=metrics, n_boot=args.n_boot, seed=args.seed)
    if post is not None:
        from pipeline.scoring.tables import write_frames

        paths.update(write_frames(post, Path(args.run_dir) / "tables"))
    print(
        f"scored {scored.num_rows} rows (judge {args.judge}) in {time.perf_counter() - t0:.1f} s; tables: "
        + ", ".join(str(p) for p in paths.values())
    )
    return 0


def run_checker(run_dir: Path) -> str | None:
    """``dataset.options.checker`` of the run that wrote ``run_dir`` (its config.json), if any."""
    import json

    cfg = run_dir / "config.json"
    if not cfg.is_file():
        return None
    try:
        return ((json.loads(cfg.read_text()).get("dataset") or {}).get("options") or {}).get("checker")
    except (json.JSONDecodeError, AttributeError):
        return None
