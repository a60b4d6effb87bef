"""``crosscot score --checker``: the flag, the run's config.json default, and a clear error."""

from __future__ import annotations


import argparse
import json
from pathlib import Path

import pyarrow as pa

from pipeline.store.artifacts import read_table, write_table
from pipeline.commands import score as cmd
from pipeline.datasets.medcalc import make_gold
from pipeline.schema import ANSWERS, from_rows

GOLD = json.dumps(make_gold("14.525", "13.79875", "15.25125", "6", "BMI", "decimal"))


def _run_dir(tmp_path: Path) -> Path:
    rows = [
        {
            "dataset": "medcalc",
            "problem_id": "81",
            "method": "default",
            "source": t,
            "variant": "full",
            "sample": 0,
            "target": t,
            "gold": GOLD,
            "answer_text": json.dumps({"step_by_step_thinking": "...", "answer": "14.5 kg/m^2"}),
        }
        for t in ("A", "B")
    ]
    write_table(tmp_path / "answers.arrow", from_rows(rows, ANSWERS), {})
    return tmp_path


def _args(run_dir: Path, checker: str | None) -> argparse.Namespace:
    """The command's own parser (its defaults), as `crosscot score` builds it."""
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    # --force: each call re-scores the same run with another checker (replacing is the point here)
    return parser.parse_args([str(run_dir), "--n-boot", "0", "--force"] + (["--checker", checker] if checker else []))


def _score(run_dir: Path, checker: str | None) -> pa.Table:
    assert cmd.run(_args(run_dir, checker)) == 0
    return read_table(run_dir / "scored.arrow")


def test_checker_flag_and_run_default(tmp_path: Path, capsys) -> None:
    rd = _run_dir(tmp_path)
    assert _score(rd, "lenient").column("correct").to_pylist() == [True, True]
    assert _score(rd, "official").column("answer").to_pylist() == ["2", "2"]  # last number: the 2 of m^2
    (rd / "config.json").write_text(json.dumps({"dataset": {"options": {"checker": "official"}}}))
    assert _score(rd, None).column("correct").to_pylist() == [False, False]
    from pipeline.errors import run_command

    capsys.readouterr()
    assert run_command(lambda: cmd.run(_args(rd, "strictest")), []) == 2  # the CLI's one error path
    assert capsys.readouterr().err.startswith("crosscot: error: score: dataset 'medcalc' has no checker 'strictest'")
