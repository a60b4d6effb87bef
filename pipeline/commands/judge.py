"""``crosscot judge``: judge raw model replies with a dataset's checker, JSONL in, JSONL out.

    crosscot judge --dataset medcalc --data test_data.csv --checker official --in F.jsonl --out G.jsonl

Input rows: ``problem_id`` (MedCalc: the Row Number) and ``text`` (the model's
reply after its thinking).  Output rows, in input order, are the input rows
plus ``answer`` (the checker's answer: for ``official`` what MedCalc-Bench's
code stores, its extracted string or its evaluator's exception text) and
``correct``.  Nothing but the benchmark file is loaded; no engine starts.
The output is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.cli_args import out_path

HELP = "judge raw replies (JSONL: problem_id, text) with a dataset's checker; writes answer and correct"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=("medcalc",), help="dataset plug-in")
    parser.add_argument("--data", required=True, type=Path, help="the benchmark file (MedCalc: test_data.csv)")
    parser.add_argument("--checker", default="official", help="lenient or official (default official)")
    parser.add_argument("--in", dest="inp", required=True, type=Path, help="JSONL with problem_id and text")
    parser.add_argument("--out", required=True, type=out_path, help="JSONL to write (input rows + answer, correct)")
    parser.add_argument("--force", action="store_true", help="replace results already there (else an error)")


def fail(msg: str) -> int:
    print(f"crosscot: error: {msg}", file=sys.stderr)
    return 2


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Input rows; raises ValueError naming the line and the fix."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {n} is not JSON ({e.msg}); write one JSON object per line") from None
        if not isinstance(r, dict) or "problem_id" not in r or "text" not in r:
            raise ValueError(f"{path} line {n} lacks problem_id or text; each row needs both")
        rows.append(r)
    return rows


def _utf8(read: Any, path: Path) -> Any:
    """``read(path)``, with text that is not UTF-8 reported naming ``path`` (not as a bad row)."""
    from pipeline.errors_fs import NotUtf8

    try:
        return read(path)
    except UnicodeDecodeError as e:
        raise NotUtf8(path, e) from None


def judge_rows(rows: list[dict[str, Any]], golds: dict[str, dict[str, Any]], checker: str) -> list[dict[str, Any]]:
    """Input rows + ``answer`` and ``correct`` (MedCalc plug-in's :func:`judge_text`)."""
    from pipeline.datasets.medcalc import judge_text

    out = []
    for n, r in enumerate(rows, 1):
        pid = str(r["problem_id"])
        if pid not in golds:
            raise ValueError(f"row {n}: problem_id {pid!r} is not a Row Number of the benchmark file")
        j = judge_text(r["text"], None, golds[pid], checker)
        out.append({**r, "answer": j.answer, "correct": j.correct})
    return out


def run(args: argparse.Namespace) -> int:
    from pipeline.datasets.medcalc import CHECKERS
    from pipeline.datasets.medcalc_csv import MedCalcLoadError, make_gold, read_benchmark_csv
    from pipeline.store.atomic import write_text_atomic

    if args.checker not in CHECKERS:
        return fail(f"--checker {args.checker!r} is unknown; use one of {', '.join(CHECKERS)}")
    from pipeline.store.overwrite import guard_outputs

    guard_outputs([args.out], force=args.force, inputs=[args.inp, args.data], command="judge")
    if not args.inp.is_file():
        return fail(f"--in {args.inp} not found; give a JSONL file of problem_id and text rows")
    try:
        bench, _ = _utf8(read_benchmark_csv, args.data)
        rows = _utf8(read_rows, args.inp)
        golds = {
            r["Row Number"].strip(): make_gold(
                r["Ground Truth Answer"].strip(),
                r.get("Lower Limit", "").strip(),
                r.get("Upper Limit", "").strip(),
                r["Calculator ID"].strip(),
                r["Calculator Name"].strip(),
                r.get("Output Type"),
            )
            for r in bench
        }
        out = judge_rows(rows, golds, args.checker)
    except (MedCalcLoadError, ValueError) as e:
        return fail(str(e))
    write_text_atomic(args.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out))
    n_ok = sum(r["correct"] for r in out)
    print(f"judged {len(out)} replies with the {args.checker} checker: {n_ok} correct; wrote {args.out}")
    return 0
