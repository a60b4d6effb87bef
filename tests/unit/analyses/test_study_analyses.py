"""``crosscot analyses``: the study's further analyses reproduce its printed numbers from the released files.

Pinned (with-answer files, the ones released): the figures the study printed,
quoted in the task that asked for these analyses; every analysis is also
compared, number for number, with a literal transcription of its notebook over
the raw JSONL files (``tests/reference/genex_notebooks.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from reference import genex_notebooks as ref

from pipeline.analyses.frame import load_files
from pipeline.analyses.study import run_analyses
from pipeline.cli import main
from pipeline.importers.genex_medcalc import import_genex
from pipeline.schema import ANSWERS, from_rows
from pipeline.scoring.judge import score_answers

DATA = Path(__file__).resolve().parents[3] / "../shared/data"
GENEX = DATA / "genex-medcalc-outputs"
BENCH = DATA / "medcalc-bench" / "test_data.csv"


@pytest.fixture(scope="module")
def analyses(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    if not GENEX.is_dir():
        pytest.fail(f"{GENEX} is absent; these tests reproduce the study's numbers from it")
    run = tmp_path_factory.mktemp("genex")
    import_genex(GENEX, run, BENCH if BENCH.is_file() else None)
    assert main(["score", str(run), "--judge", "stored", "--n-boot", "0"]) == 0
    assert main(["analyses", str(run), "--out", str(run / "an")]) == 0
    assert "## cot_effect" in (run / "an" / "analyses.md").read_text()
    return pl.read_csv(run / "an" / "analyses.csv")


def _get(df: pl.DataFrame, analysis: str, setting: str, group: str, metric: str) -> dict:
    r = df.filter(
        (pl.col("analysis") == analysis)
        & (pl.col("setting") == setting)
        & (pl.col("group") == group)
        & (pl.col("metric") == metric)
    )
    assert r.height == 1, (analysis, setting, group, metric)
    return r.row(0, named=True)


@pytest.mark.shared_data(GENEX)
def test_columns(analyses: pl.DataFrame) -> None:
    assert analyses.columns == ["analysis", "setting", "group", "metric", "value", "n"]
    assert set(analyses["analysis"]) == {
        "self_consistency",
        "cot_effect",
        "agreement_breakdown",
        "creator_involvement",
        "pooled_consistency",
    }


@pytest.mark.shared_data(GENEX)
def test_self_consistency_matches_study(analyses: pl.DataFrame) -> None:
    given = {"DAPO": (45, 98), "QwQ": (44, 92), "NRR": (20, 99), "OpenT": (31, 91), "OSS": (42, 96)}
    for m, (match, kept) in given.items():
        r = _get(analyses, "self_consistency", m, "full", "rate")
        assert r["n"] == kept and round(r["value"] * kept) == match, m
    assert round(100 * _get(analyses, "self_consistency", "all", "full", "mean")["value"], 1) == 38.4
    assert round(100 * _get(analyses, "self_consistency", "all", "full", "std")["value"], 1) == 10.2
    assert ref.self_consistency(GENEX) == given


@pytest.mark.shared_data(GENEX)
def test_cot_effect_matches_study(analyses: pl.DataFrame) -> None:
    classes = (
        "wrong_to_correct",
        "correct_to_wrong",
        "correct_to_correct",
        "wrong_to_wrong_same",
        "wrong_to_wrong_diff",
    )
    for setting, counts, total in (
        ("Default", (31, 29, 118, 64, 151), 393),
        ("Transfer NRR", (23, 73, 69, 34, 184), 383),
    ):
        for cls, c in zip(classes, counts):
            r = _get(analyses, "cot_effect", setting, "full", cls)
            assert r["n"] == total and round(r["value"] * total) == c, (setting, cls)
    overall = {
        "wrong_to_correct": (12.8, 3.9),
        "correct_to_wrong": (10.5, 3.9),
        "correct_to_correct": (26.9, 3.9),
        "wrong_to_wrong_same": (10.2, 3.1),
        "wrong_to_wrong_diff": (39.5, 4.1),
    }
    for cls, (mean, std) in overall.items():
        r = _get(analyses, "cot_effect", "all", "full", cls)
        assert r["n"] == 10 and round(100 * r["value"], 1) == mean, cls
        assert round(100 * _get(analyses, "cot_effect", "all", "full", f"{cls}_std")["value"], 1) == std, cls
    # Every setting, count for count, as the notebook computes it over the raw files.
    notebook = ref.cot_effect(GENEX)
    ours = analyses.filter(
        (pl.col("analysis") == "cot_effect") & (pl.col("setting") != "all") & ~pl.col("metric").str.ends_with("_std")
    )
    ens = {
        "Ensemble qwq_dapo/oss": "Ensemble QwQ+DAPO/OSS",
        "Ensemble qwq_oss/dapo": "Ensemble QwQ+OSS/DAPO",
        "Ensemble qwq_opent/oss": "Ensemble QwQ+OpenT/OSS",
    }
    got = {(r["setting"], r["metric"]): round(r["value"] * r["n"]) for r in ours.iter_rows(named=True)}
    want = {(ens.get(s, s), k): v for s, c in notebook.items() for k, v in c.items() if k != "n"}
    assert got == want


@pytest.mark.shared_data(GENEX)
def test_agreement_breakdown_matches_notebook(analyses: pl.DataFrame) -> None:
    notebook = ref.agreement_breakdown(GENEX)
    ens = {"qwq_dapo/oss": "QwQ+DAPO/OSS", "qwq_oss/dapo": "QwQ+OSS/DAPO", "qwq_opent/oss": "QwQ+OpenT/OSS"}
    n_checked = 0
    for key, classes in notebook.items():
        setting, group = key.rsplit("/", 1)
        if setting.startswith("Ensemble "):
            setting = "Ensemble " + ens[setting.removeprefix("Ensemble ")]
        for cls, (mean, std, count) in classes.items():
            r = _get(analyses, "agreement_breakdown", setting, group, cls)
            assert r["value"] == pytest.approx(mean, abs=1e-12) and r["n"] == count, (key, cls)
            assert _get(analyses, "agreement_breakdown", setting, group, f"{cls}_std")["value"] == pytest.approx(
                std, abs=1e-12
            )
            n_checked += 1
    assert n_checked == 38
    # A class that never occurs in a pair is left out of that pair's mean: n below 10.
    assert _get(analyses, "agreement_breakdown", "Transfer OSS", "full", "consistent_mixed")["n"] == 8
    q = _get(analyses, "agreement_breakdown", "Transfer QwQ", "full", "wrong_share")
    assert q["value"] == pytest.approx(0.432 / (0.378 + 0.432))


@pytest.mark.shared_data(GENEX)
def test_creator_involvement_matches_study(analyses: pl.DataFrame) -> None:
    inv = _get(analyses, "creator_involvement", "Transfer", "full", "involved")
    notinv = _get(analyses, "creator_involvement", "Transfer", "full", "not_involved")
    assert (round(inv["value"], 3), inv["n"]) == (0.775, 20) and (round(notinv["value"], 3), notinv["n"]) == (0.720, 30)
    # The study's printed figures come from the common rule (a failed row reads ""); the notebook as
    # released scores a row with missing Target fields as a disagreement and gives .741 / .682.
    assert ref.creator_involvement(GENEX, missing_as_disagreement=False)["full"][0] == pytest.approx(inv["value"])
    released = ref.creator_involvement(GENEX)["full"]
    assert (round(released[0], 3), round(released[3], 3)) == (0.741, 0.682)


@pytest.mark.shared_data(GENEX)
def test_pooled_consistency_matches_study(analyses: pl.DataFrame) -> None:
    m, s = (_get(analyses, "pooled_consistency", "Empty", "pooled", k) for k in ("mean", "std"))
    assert (round(m["value"], 3), round(s["value"], 3), m["n"]) == (0.302, 0.157, 10)
    notebook = ref.pooled_consistency(GENEX)
    for kind, (mean, std, n) in notebook.items():
        r = _get(analyses, "pooled_consistency", kind, "pooled", "mean")
        assert r["value"] == pytest.approx(mean, abs=1e-12) and r["n"] == n, kind
        assert _get(analyses, "pooled_consistency", kind, "pooled", "std")["value"] == pytest.approx(std, abs=1e-12)
    # With-answer files only here: 5 sources x C(5,2), 3 ensembles x C(5,2), one Sampled group.
    assert {k: v[2] for k, v in notebook.items()} == {"Transfer": 50, "Ensemble": 30, "Sampled": 10, "Empty": 10}


@pytest.mark.shared_data(GENEX)
def test_released_files_share_one_row_order() -> None:
    # Pairing by problem id is the notebooks' positional zip only because of this.
    orders = {tuple(json.loads(line)["Row Number"] for line in p.open() if line.strip()) for p in GENEX.glob("*.jsonl")}
    assert len(orders) == 1


def _live(rows: list[tuple[str, str, str, str, list[str | None]]]) -> pl.DataFrame:
    """A live run's scored answers: (method, source, variant, target, answers of problems 0..n)."""
    gold = json.dumps({"answer": "4", "lower": "4", "upper": "4", "calculator_id": "4", "output_type": "integer"})
    out = []
    for method, source, variant, target, answers in rows:
        for pid, a in enumerate(answers):
            out.append(
                {
                    "dataset": "medcalc",
                    "problem_id": str(pid),
                    "method": method,
                    "source": source,
                    "variant": variant,
                    "sample": 0,
                    "target": target,
                    "gold": gold,
                    "answer_text": None if a is None else json.dumps({"step_by_step_thinking": "", "answer": a}),
                    "error": "generation failed" if a is None else None,
                }
            )
    df = pl.from_arrow(score_answers(from_rows(out, ANSWERS), "ours", checker="lenient"))
    assert isinstance(df, pl.DataFrame)
    return df


def test_live_run_tables() -> None:
    # Two models A, B; gold 4.  A failed transfer row (None) reads "" and wrong.
    df = _live(
        [
            ("empty", "A", "full", "A", ["4", "3", "5"]),
            ("empty", "B", "full", "B", ["3", "3", "4"]),
            ("default", "A", "full", "A", ["4", "2", "5"]),
            ("default", "B", "full", "B", ["4", "4", "6"]),
            ("sampled", "A", "full", "A", ["4", "2", "7"]),
            ("sampled", "B", "full", "B", ["3", "4", "4"]),
            ("transfer", "A", "full", "A", ["4", "2", None]),
            ("transfer", "A", "full", "B", ["4", "2", "5"]),
            ("transfer", "B", "full", "A", ["4", "4", "6"]),
            ("transfer", "B", "full", "B", ["4", "3", "6"]),
        ]
    )
    files, models = load_files(df)
    assert models == ["A", "B"]
    rows = {
        (r["analysis"], r["setting"], r["group"], r["metric"]): (r["value"], r["n"])
        for r in run_analyses(files, models)
    }
    # Self-consistency of A: (4,4) both correct; (2,2) both wrong and equal; ("",7) both wrong, differ: 2/3.
    assert rows[("self_consistency", "A", "full", "rate")] == pytest.approx((2 / 3, 3))
    # B: (4,3) correct vs wrong; (3,4) wrong vs correct; (6,4) wrong vs correct: 0/3.
    assert rows[("self_consistency", "B", "full", "rate")] == (0.0, 3)
    # CoT effect, Default (self-transfers) against Empty: A 4->4 cc, 3->2 ww diff, 5->"" ww diff;
    # B 3->4 wc, 3->3 ww same, 4->6 cw.
    d = {
        m: rows[("cot_effect", "Default", "full", m)][0] * 6
        for m in (
            "wrong_to_correct",
            "correct_to_wrong",
            "correct_to_correct",
            "wrong_to_wrong_same",
            "wrong_to_wrong_diff",
        )
    }
    assert d == pytest.approx(
        {
            "wrong_to_correct": 1,
            "correct_to_wrong": 1,
            "correct_to_correct": 1,
            "wrong_to_wrong_same": 1,
            "wrong_to_wrong_diff": 2,
        }
    )
    # Transfer A: targets A, B answered (4,2,"") and (4,2,5): agree, agree (equal), disagree.
    assert rows[("pooled_consistency", "Transfer", "pooled", "mean")][1] == 2
    assert rows[("creator_involvement", "Transfer", "full", "involved")] == pytest.approx(((2 / 3 + 2 / 3) / 2, 2))
    assert rows[("agreement_breakdown", "Transfer A", "full", "inconsistent")] == pytest.approx((1 / 3, 1))


def test_cli_errors(tmp_path: Path, capsys) -> None:
    assert main(["analyses", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crosscot: error: analyses:") and "crosscot score" in err[0]
    assert main(["analyses", str(tmp_path), "--only", "self_consistenc"]) == 2
    assert "did you mean 'self_consistency'" in capsys.readouterr().err
