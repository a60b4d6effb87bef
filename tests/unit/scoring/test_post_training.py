"""Post-training (RL) comparison: pairs, the study's per-transfer figures, group means, the empty-CoT confound."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.store.artifacts import read_table
from pipeline.cli import main
from pipeline.importers.genex_medcalc import import_genex
from pipeline.scoring.judge import score_answers
from pipeline.scoring.post_training import (
    PostTrainingError,
    confounds,
    parse_pairs,
    post_training_tables,
    resolve_pairs,
)

PAIRS = (
    "Qwen_Qwen2.5-1.5B-Instruct=_disk_u_koyena_medcalc-qwen-2.5-1.5b-inst-grpo,"
    "meta-llama_Llama-3.2-3B-Instruct=_disk_u_koyena_medcalc-llama-3-3b-inst-grpo,"
    "deepseek-ai_DeepSeek-R1-Distill-Qwen-1.5B=_disk_u_koyena_medcalc-deepseek-r1-distill-qwen-1.5b-inst-grpo"
)


def test_parse_and_resolve_pairs() -> None:
    assert parse_pairs("a=b, c = d") == [("a", "b"), ("c", "d")]
    for bad in ("a", "=b", "a=", ""):
        with pytest.raises(PostTrainingError):
            parse_pairs(bad)
    # Short names and the study's file-name ids both resolve.
    assert resolve_pairs([("Qwen_QwQ-32B", "DAPO")], ["QwQ", "DAPO"]) == [("QwQ", "DAPO")]
    with pytest.raises(PostTrainingError, match="not a transfer source"):
        resolve_pairs([("QwQ", "nope")], ["QwQ", "DAPO"])
    with pytest.raises(PostTrainingError, match="twice"):
        resolve_pairs([("QwQ", "Qwen_QwQ-32B")], ["QwQ"])


def _row(
    method: str,
    source: str,
    target: str,
    pid: int,
    answer: str | None,
    correct: bool | None,
    cot: str = "think",
    variant: str = "full",
) -> dict:
    return {
        "dataset": "medcalc",
        "problem_id": str(pid),
        "method": method,
        "source": source,
        "variant": variant,
        "sample": 0,
        "target": target,
        "cot": cot,
        "answer_text": None,
        "answer": answer,
        "gold": json.dumps({}),
        "stored_correct": correct,
        "error": None if correct is not None else "no Target Result",
        "extracted": answer,
        "correct": bool(correct),
        "judge": "stored",
    }


def _synthetic() -> pl.DataFrame:
    rows = []
    # Source "b" (base) and "p" (post); own answers on problems 1..4.
    own = {"b": ["1", "2", "3", "not defined"], "p": ["1", "2", "3", "4"]}
    for s, ans in own.items():
        rows += [_row("default", s, s, i + 1, a, a == "1") for i, a in enumerate(ans)]
    # Target T after b's CoT: agrees on 1, both correct? (1 is correct), 2 differs, 3 failed (no result), 4 dropped (source error).
    rows += [
        _row("transfer", "b", "T", 1, "1", True),
        _row("transfer", "b", "T", 2, "9", False),
        _row("transfer", "b", "T", 3, None, None),
        _row("transfer", "b", "T", 4, "4", False),
    ]
    # Target T after p's CoT: all agree with p, one failed; CoTs empty.
    rows += [_row("transfer", "p", "T", i, str(i), i == 1, cot=" No Thoughts\n") for i in (1, 2)]
    rows += [_row("transfer", "p", "T", 3, "3", False, cot="\n")]  # blank counts as empty too
    rows += [_row("transfer", "p", "T", 4, None, None, cot="No Thoughts")]
    return pl.DataFrame(rows)


def test_synthetic_figures() -> None:
    t = post_training_tables(_synthetic(), [("b", "p")])
    d = {r["source"]: r for r in t["post_training_detail"].iter_rows(named=True)}
    # Accuracy over the rows with a target result (failed row 3 left out): b 1/3, p 1/3.
    assert d["b"]["n_answered"] == 3 and d["b"]["accuracy"] == pytest.approx(1 / 3)
    # Project rule: problem 4 dropped (source's answer is an evaluator error), 3 has no result: 1 of {1, 2}.
    assert d["b"]["n_compared_project"] == 2 and d["b"]["source_agreement_project"] == pytest.approx(0.5)
    assert d["p"]["source_agreement_project"] == pytest.approx(1.0) and d["p"]["n_compared_project"] == 3
    # Study rule (no source_answers table: the Default answers stand in): the failed row 3 is kept
    # as "" and disagrees, problem 4 is still dropped: b 1 of {1, 2, 3}; p 3 of 4 (its row 4 failed).
    assert d["b"]["n_compared"] == 3 and d["b"]["source_agreement"] == pytest.approx(1 / 3)
    assert d["p"]["n_compared"] == 4 and d["p"]["source_agreement"] == pytest.approx(0.75)
    s = {(r["group"], r["metric"]): r for r in t["post_training"].iter_rows(named=True)}
    assert s[("post", "source_agreement_project")]["value"] == pytest.approx(1.0)
    assert s[("post", "source_agreement")]["value"] == pytest.approx(0.75)
    assert s[("base", "accuracy")]["n_transfers"] == 1
    assert t["post_training"].columns == ["variant", "group", "metric", "value", "n_transfers"]
    src = {r["source"]: r["empty_cot_share"] for r in t["post_training_sources"].iter_rows(named=True)}
    assert src == {"b": 0.0, "p": 1.0}
    assert any(w.startswith("p (post)") for w in confounds(t["post_training_sources"]))


def test_without_answer_variant_uses_the_same_code() -> None:
    df = _synthetic()
    wa = df.filter(pl.col("method") == "transfer").with_columns(pl.lit("without_answer").alias("variant"))
    t = post_training_tables(pl.concat([df, wa]), [("b", "p")])
    s = t["post_training"]
    assert set(s["variant"]) == {"full", "without_answer"}
    a = s.filter(pl.col("variant") == "full").drop("variant")
    b = s.filter(pl.col("variant") == "without_answer").drop("variant")
    assert a.equals(b)


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import SHARED_DATA

    src = SHARED_DATA / "genex-medcalc-rl"
    if not src.is_dir():
        pytest.fail(f"{src} is absent; the post-training tests reproduce the study's numbers from it")
    out = tmp_path_factory.mktemp("rl")
    import_genex(src, out, SHARED_DATA / "medcalc-bench" / "test_data.csv")
    return out


def test_reproduces_study_post_training(rl_run: Path) -> None:
    scored = pl.from_arrow(score_answers(read_table(rl_run / "answers.arrow"), "stored"))
    side = pl.from_arrow(read_table(rl_run / "source_answers.arrow"))
    t = post_training_tables(scored, parse_pairs(PAIRS), side)
    s = {(r["group"], r["metric"]): r for r in t["post_training"].iter_rows(named=True)}
    assert s[("base", "accuracy")]["value"] == pytest.approx(0.318, abs=0.005)
    assert s[("post", "accuracy")]["value"] == pytest.approx(0.369, abs=0.005)
    # The study's rule (its notebook: the source's answer from its first transfer file in sorted
    # file-name order, rows by position, a missing target answer kept as "") gives its .226 -> .438.
    assert s[("base", "source_agreement")]["value"] == pytest.approx(0.226, abs=0.0005)
    assert s[("post", "source_agreement")]["value"] == pytest.approx(0.438, abs=0.0005)
    # The project's own rule (paper rule vs the source's Default answer, rows with a target result).
    assert s[("base", "source_agreement_project")]["value"] == pytest.approx(0.2314, abs=0.0005)
    assert s[("post", "source_agreement_project")]["value"] == pytest.approx(0.4466, abs=0.0005)
    assert all(r["n_transfers"] == 15 for r in s.values())
    warn = confounds(t["post_training_sources"])
    assert any("Both Qwen_Qwen2.5-1.5B-Instruct" in w for w in warn)
    d = t["post_training_detail"]
    q = d.filter(pl.col("base") == "Qwen_Qwen2.5-1.5B-Instruct").sort("target", "group")
    # The confound in the numbers: empty CoTs on both sides give the targets the same input.
    assert (
        q.filter(pl.col("group") == "base")["accuracy"].to_list()
        == q.filter(pl.col("group") == "post")["accuracy"].to_list()
    )


def test_score_cli_writes_post_training_and_report(rl_run: Path, capsys) -> None:
    assert main(["score", str(rl_run), "--judge", "stored", "--n-boot", "50", "--post-training-pairs", PAIRS]) == 0
    t = pl.read_csv(rl_run / "tables" / "post_training.csv")
    assert t.columns == ["variant", "group", "metric", "value", "n_transfers"] and t.height == 6
    got = {(r["group"], r["metric"]): round(r["value"], 3) for r in t.iter_rows(named=True)}
    assert got[("base", "source_agreement")] == 0.226 and got[("post", "source_agreement")] == 0.438
    assert got[("base", "source_agreement_project")] == 0.231 and got[("post", "source_agreement_project")] == 0.447
    assert main(["report", str(rl_run)]) == 0
    md = (rl_run / "report.md").read_text()
    assert "## Post-training (RL)" in md and "Confound" in md and (rl_run / "plots" / "post_training.png").is_file()
    capsys.readouterr()
    assert main(["score", str(rl_run), "--post-training-pairs", "Qwen_Qwen2.5-1.5B-Instruct=QwQ-GRPO"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crosscot: error: post-training model 'QwQ-GRPO'")
