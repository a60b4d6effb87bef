"""Nothing already there is replaced silently: every writing command refuses to write over an
existing result without ``--force`` (one line, exit 2), and never writes over its input.

Each case checksums every pre-existing file before and after the refused command."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline.cli import main

CORPUS = Path(__file__).resolve().parents[2] / "data" / "bad_inputs"
GENEX = CORPUS / "genex_ok"


def sums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def refused(capsys, argv: list[str], root: Path, expect: str) -> None:
    """``argv`` exits 2 with one line containing ``expect`` and leaves every file under ``root`` as it was."""
    before = sums(root)
    assert before, "nothing to protect: the case is wrong"
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crosscot: error: ") and expect in err[0], err
    assert sums(root) == before


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    run = tmp_path / "imp"
    assert main(["import-genex", str(GENEX), "--out", str(run)]) == 0
    return run


@pytest.fixture
def scored(imported: Path) -> Path:
    assert main(["score", str(imported), "--judge", "stored", "--n-boot", "10"]) == 0
    return imported


def test_import_over_an_import(imported: Path, capsys) -> None:
    refused(capsys, ["import-genex", str(GENEX), "--out", str(imported)], imported, "--force")
    assert main(["import-genex", str(GENEX), "--out", str(imported), "--force"]) == 0  # asked for: replaced


def test_import_ii_over_a_medcalc_run(imported: Path, capsys) -> None:
    refused(capsys, ["import-genex-ii", str(GENEX), "--out", str(imported)], imported, "already exist")


def test_score_over_scored_tables(scored: Path, capsys) -> None:
    refused(
        capsys, ["score", str(scored), "--judge", "stored", "--n-boot", "10", "--metric", "paper"], scored, "--force"
    )


def test_report_over_a_report(scored: Path, capsys) -> None:
    assert main(["report", str(scored)]) == 0
    refused(capsys, ["report", str(scored)], scored, "--force")


def test_report_of_damaged_tables_keeps_the_good_report(scored: Path, capsys) -> None:
    assert main(["report", str(scored)]) == 0
    (scored / "tables" / "accuracy.csv").write_bytes(bytes(range(256)))
    refused(capsys, ["report", str(scored), "--force"], scored, "accuracy.csv")


def test_run_over_another_configurations_run(tmp_path: Path, capsys) -> None:
    rd = tmp_path / "run"
    rd.mkdir()
    (rd / "config.json").write_text("{}\n")
    (rd / "run-key.json").write_text(json.dumps({"key": "another"}) + "\n")
    (rd / "report.md").write_text("# the earlier run\n")
    refused(capsys, ["run", "experiment=demo_tiny", f"run_dir={rd}", "progress=false"], rd, "force=true")


def test_judge_input_is_never_the_output(tmp_path: Path, capsys) -> None:
    f = tmp_path / "replies.jsonl"
    f.write_text('{"problem_id": "1", "text": "3"}\n')
    refused(
        capsys,
        [
            "judge",
            "--dataset",
            "medcalc",
            "--data",
            str(CORPUS / "garbage.csv"),
            "--in",
            str(f),
            "--out",
            str(f),
            "--force",
        ],
        tmp_path,
        "input is never an output",
    )


def test_import_into_its_own_source_folder(tmp_path: Path, capsys) -> None:
    import shutil

    src = tmp_path / "src"
    shutil.copytree(GENEX, src)
    refused(capsys, ["import-genex", str(src), "--out", str(src), "--force"], src, "input is never an output")


def test_plan_json_over_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "plan.json").write_text('{"earlier": true}\n')
    refused(
        capsys,
        ["plan", "--node", "cpu2", "--json", str(tmp_path / "plan.json"), "experiment=demo_tiny"],
        tmp_path,
        "--force",
    )


def test_faults_json_over_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "f.json").write_text("{}\n")
    refused(capsys, ["faults", "--only", "unknown judge", "--json", str(tmp_path / "f.json")], tmp_path, "--force")


def test_ratings_over_tables(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r"
    (out / "tables").mkdir(parents=True)
    (out / "tables" / "ratings_tests.csv").write_text("a\n1\n")
    (out / "report.md").write_text("# earlier\n")
    csv = tmp_path / "ratings.csv"
    csv.write_text("x\n")
    refused(capsys, ["ratings", str(csv), "--out", str(out)], out, "--force")
