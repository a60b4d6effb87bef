"""Instruction Induction comparisons: importer, the study's 21-'task' aggregation, the corrected one, CLI and report."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.store.artifacts import read_table
from pipeline.cli import main
from pipeline.importers.genex_ii import FILES_FILE, import_genex_ii, parse_setting
from pipeline.scoring.ii import ii_tables

# The study's II table, full text: setting -> (paper, corrected).
EXPECTED = {
    "Transfer OSS": (0.657, 0.690),
    "Ensemble QwQ+OSS/DAPO": (0.624, 0.655),
    "Transfer DAPO": (0.607, 0.637),
    "Ensemble QwQ+OpenT/OSS": (0.605, 0.635),
    "Ensemble QwQ+DAPO/OSS": (0.600, 0.630),
    "Transfer NRR": (0.588, 0.618),
    "Transfer QwQ": (0.580, 0.609),
    "Empty": (0.565, 0.593),
    "Default": (0.560, 0.588),
    "Transfer OpenT": (0.516, 0.542),
    "Sampled": (0.497, 0.522),
}
IDS = {"QwQ": "Qwen_QwQ-32B", "OSS": "openai_gpt-oss-20b", "DAPO": "BytedTsinghua-SIA_DAPO-Qwen-32B"}


def _write(folder: Path, task: str, m1: str, m2: str, scores: list[float], stored: float | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data: dict = {
        str(i): {
            "model1_output": f"{m1} says {i}",
            "model2_output": f"{m2} says {i}",
            "bert_1_to_2": s,
            "bert_2_to_1": s,
            "bert_score": s,
            "model1_name": m1,
            "model2_name": m2,
        }
        for i, s in enumerate(scores)
    }
    data["weighted_task_score"] = sum(scores) / len(scores) if stored is None else stored
    (folder / f"{task}_bert_comparison_{m1}_vs_{m2}.json").write_text(json.dumps(data))


def _synthetic(root: Path) -> Path:
    src = root / "ii"
    for folder in ("transfer_oss", "ensemble_gen_qwq_dapo_eval_oss"):
        # File names list OSS before QwQ: the importer stores the pair in MODEL_ORDER (OSS, QwQ) either way.
        _write(src / folder, "rhymes", IDS["DAPO"], IDS["QwQ"], [0.5, 0.7])
        _write(src / folder, "synonyms", IDS["DAPO"], IDS["QwQ"], [0.9], stored=0.3)  # stored disagrees
        _write(src / folder, "rhymes", IDS["QwQ"], IDS["OSS"], [0.4, 0.4])
        _write(src / folder, "synonyms", IDS["QwQ"], IDS["OSS"], [0.8, 0.6])
        for m1, m2 in ((IDS["DAPO"], IDS["QwQ"]), (IDS["QwQ"], IDS["OSS"])):
            (src / folder / f"summary_bert_comparison_{m1}_vs_{m2}.json").write_text(
                json.dumps({"model1_name": m1, "model2_name": m2, "task_scores": {}})
            )
        (src / folder / "notes.json").write_text("{}")
    (src / "mystery").mkdir()
    return src


def test_parse_setting() -> None:
    assert parse_setting("default") == ("default", "", "full")
    assert parse_setting("sampling") == ("sampled", "", "full")
    assert parse_setting("transfer_opent") == ("transfer", "OpenT", "full")
    assert parse_setting("ensemble_gen_qwq_oss_eval_dapo") == ("ensemble", "QwQ+OSS/DAPO", "full")
    assert parse_setting("transfer_qwq_without_answer") == ("transfer", "QwQ", "without_answer")
    assert parse_setting("mystery") is None


def test_synthetic_import_and_both_aggregations(tmp_path: Path) -> None:
    import_genex_ii(_synthetic(tmp_path), tmp_path / "run")
    files = pl.from_arrow(read_table(tmp_path / "run" / FILES_FILE))
    items = pl.from_arrow(read_table(tmp_path / "run" / "ii_comparisons.arrow"))
    assert set(files["setting"]) == {"Transfer OSS", "Ensemble QwQ+DAPO/OSS"}
    assert set(zip(files["model_a"], files["model_b"])) == {("OSS", "QwQ"), ("QwQ", "DAPO")}
    swapped = items.filter((pl.col("model_a") == "OSS") & (pl.col("item") == "0")).row(0, named=True)
    assert swapped["answer_a"].startswith("openai_gpt-oss-20b")
    skips = (tmp_path / "run" / "import_skips.csv").read_text()
    assert "mystery" in skips and "notes.json" in skips and "differs from the item mean" in skips
    assert "transfer_oss/notes.json" in skips  # a skipped file is named with its setting folder
    t = ii_tables(files, n_boot=200, seed=0)
    s = {(r["setting"], r["metric"]): r for r in t["consistency_summary"].iter_rows(named=True)}
    # Pair (QwQ, DAPO): tasks 0.6 and 0.9 (item means, not the stored 0.3); (OSS, QwQ): 0.4 and 0.7.
    assert s[("Transfer OSS", "corrected")]["mean"] == pytest.approx(((0.6 + 0.9) / 2 + (0.4 + 0.7) / 2) / 2)
    assert s[("Transfer OSS", "paper")]["mean"] == pytest.approx(((0.6 + 0.9) / 3 + (0.4 + 0.7) / 3) / 2)
    assert s[("Transfer OSS", "paper")]["n_problems"] == 2
    r = s[("Transfer OSS", "corrected")]
    assert r["ci_low"] <= r["mean"] <= r["ci_high"]


def test_reproduces_study_ii_table_via_cli(study_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "ii"
    assert main(["import-genex-ii", str(study_data / "genex-ii-comparisons"), "--out", str(run)]) == 0
    assert main(["score", str(run), "--n-boot", "200"]) == 0
    s = pl.read_csv(run / "tables" / "consistency_summary.csv").filter(pl.col("variant") == "full")
    got = {(r["setting"], r["metric"]): r for r in s.iter_rows(named=True)}
    assert {k[0] for k in got} == set(EXPECTED)
    for setting, (paper, corrected) in EXPECTED.items():
        assert round(got[(setting, "paper")]["mean"], 3) == paper, setting
        assert round(got[(setting, "corrected")]["mean"], 3) == corrected, setting
        assert got[(setting, "paper")]["n_pairs"] == 10 and got[(setting, "paper")]["n_problems"] == 20
    ranking = sorted(EXPECTED, key=lambda k: -got[(k, "paper")]["mean"])
    assert ranking == list(EXPECTED)
    assert main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "Instruction Induction: paper vs corrected" in md and "21" in md
    assert "both correct" not in md  # the MedCalc notes do not apply
    for png in ("methods_paper.png", "methods_corrected.png", "heatmap_transfer_oss_full.png", "ii_tasks.png"):
        assert (run / "plots" / png).is_file()


def test_import_refuses_a_medcalc_run_dir(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "answers.arrow").write_bytes(b"")
    assert main(["import-genex-ii", str(_synthetic(tmp_path)), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crosscot: error: ") and "answers.arrow" in err[0]
    assert main(["import-genex-ii", str(tmp_path / "nope"), "--out", str(tmp_path / "r2")]) == 2


def test_score_rejects_medcalc_options_on_ii_run(tmp_path: Path, capsys) -> None:
    import_genex_ii(_synthetic(tmp_path), tmp_path / "run")
    assert main(["score", str(tmp_path / "run"), "--post-training-pairs", "a=b"]) == 2
    assert "Instruction Induction import" in capsys.readouterr().err
    assert not (tmp_path / "run" / "tables").exists()
