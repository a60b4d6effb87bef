"""A run's answers laid out as the study's notebooks read its released files.

The notebooks of the study (``MedCalc-Bench/evaluation/notebooks/``) work file
by file: one file per (setting, variant, answering model), rows paired by
position, each row read as an answer string and a stored ``Correct`` /
``Incorrect``.  :func:`load_files` builds that view from a scored table, so the
analyses run the same on an imported run (``crosscot import-genex``, then
``crosscot score --judge stored``) and on a live run's ``scored.arrow``:

* a *file* is a :class:`FileKey` ``(method, source, variant, target)``;
* a row is a :class:`Cell`: the answer as the notebooks read it (a failed
  target generation, a row without ``Target Answer``, reads as ``""``), its
  result string (``"Correct"``, ``"Incorrect"``, ``""`` when failed) and, for
  transfer rows, the source's own answer and result as that transfer file
  recorded them (``source_answers.arrow`` of an import; for a live run, the
  source's Default answer);
* rows pair by ``problem_id``.  Every released file lists the same 100 rows in
  the same order, so this is the notebooks' positional pairing (a test checks it).

Only the models that answer in the run (its targets) count, as sources too:
the notebooks read "the five LRMs' files", and an RL import's small sources
are not among them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.scoring.consistency import PAPER_DROP, order_models


@dataclass(frozen=True, order=True)
class FileKey:
    method: str
    source: str
    variant: str
    target: str


@dataclass(frozen=True)
class Cell:
    answer: str  # "" when the target generation failed
    result: str  # "Correct" | "Incorrect" | "" (failed)
    failed: bool
    # The source's own answer/result as this transfer file recorded it (None: not a transfer row,
    # or a live run's failed row, which records nothing).
    source_answer: str | None = None
    source_result: str | None = None


Files = dict[FileKey, dict[str, Cell]]


def invalid(answer: str | None) -> bool:
    """The notebooks' drop rule: the answer holds one of the evaluator's four error phrases."""
    return answer is not None and any(p in answer for p in PAPER_DROP)


def _result(correct: bool | None, failed: bool) -> str:
    if failed:
        return ""
    return "Correct" if correct else "Incorrect"


def load_files(scored: pl.DataFrame, source_answers: pl.DataFrame | None = None) -> tuple[Files, list[str]]:
    """The run's files (see the module docstring) and its models in table order."""
    df = scored.filter(pl.col("sample") == 0)
    models = order_models(set(df["target"].unique().to_list()))
    src: dict[tuple[str, str, str, str], tuple[str | None, str | None]] = {}
    if source_answers is not None:
        for r in source_answers.iter_rows(named=True):
            src[(r["problem_id"], r["source"], r["variant"], r["target"])] = (r["source_answer"], r["source_result"])
    own: dict[tuple[str, str], tuple[str, str]] = {}
    files: Files = {}
    for r in df.iter_rows(named=True):
        failed = r["error"] is not None and r["answer"] is None
        ans = r["answer"] if r["answer"] is not None else (r.get("extracted") or "")
        cell_src = (
            src.get((r["problem_id"], r["source"], r["variant"], r["target"])) if r["method"] == "transfer" else None
        )
        cell = Cell(
            answer="" if failed else (ans or ""),
            result=_result(r["correct"], failed),
            failed=failed,
            source_answer=cell_src[0] if cell_src else None,
            source_result=cell_src[1] if cell_src else None,
        )
        key = FileKey(r["method"], r["source"], r["variant"], r["target"])
        files.setdefault(key, {})[r["problem_id"]] = cell
        if r["method"] == "default" and r["target"] == r["source"] and r["variant"] == "full":
            own[(r["source"], r["problem_id"])] = (cell.answer, cell.result)
    if source_answers is None and own:
        # A live run: the source's own answer beside a transfer row is its Default answer.
        for key, rows in files.items():
            if key.method != "transfer":
                continue
            for pid, c in rows.items():
                if not c.failed and (key.source, pid) in own:
                    a, res = own[(key.source, pid)]
                    rows[pid] = Cell(c.answer, c.result, c.failed, a, res)
    keep = set(models)
    files = {k: v for k, v in files.items() if k.target in keep and (k.method != "transfer" or k.source in keep)}
    return dict(sorted(files.items())), models


def paired(a: dict[str, Cell], b: dict[str, Cell]) -> list[tuple[Cell, Cell]]:
    """Rows of two files paired by problem id (the notebooks' ``zip``, see the module docstring)."""
    return [(a[p], b[p]) for p in sorted(a.keys() & b.keys(), key=_pid_order)]


def _pid_order(pid: str) -> tuple[int, str]:
    return (int(pid), pid) if pid.isdigit() else (0, pid)


def read_run(run_dir: Path) -> tuple[Files, list[str]]:
    """The files of ``run_dir/scored.arrow`` (and ``source_answers.arrow`` when the run is an import)."""
    from pipeline.importers.genex_source import SOURCE_ANSWERS_FILE
    from pipeline.store.artifacts import read_table

    scored = pl.from_arrow(read_table(run_dir / "scored.arrow"))
    assert isinstance(scored, pl.DataFrame)
    side = run_dir / SOURCE_ANSWERS_FILE
    sa = pl.from_arrow(read_table(side)) if side.is_file() else None
    assert sa is None or isinstance(sa, pl.DataFrame)
    return load_files(scored, sa)
