"""Report rendering from tables: plots, markdown, self-contained HTML, extra sections."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.datasets.medcalc import make_gold
from pipeline.report import render
from pipeline.schema import ANSWERS, from_rows
from pipeline.scoring.judge import score_answers
from pipeline.scoring.tables import write_tables


def _run_dir(tmp_path: Path) -> Path:
    gold = json.dumps(make_gold("4", "4", "4", "4", "score", "integer"))
    rows = []
    for method, src in (("default", None), ("transfer", "QwQ"), ("empty", None)):
        for t in ("NRR", "QwQ", "OSS"):
            for i in range(8):
                ans = "4" if (i + len(t)) % 3 else str(i)
                rows.append(
                    {
                        "dataset": "medcalc",
                        "problem_id": str(i),
                        "method": method,
                        "source": src or t,
                        "variant": "full",
                        "sample": 0,
                        "target": t,
                        "gold": gold,
                        "answer": ans,
                        "stored_correct": ans == "4",
                    }
                )
    run = tmp_path / "run"
    write_tables(score_answers(from_rows(rows, ANSWERS), "ours"), run / "tables", n_boot=100)
    return run


def test_render_writes_everything(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    (run / "telemetry.json").write_text(json.dumps({"wall_s": 12.5, "stages": {"generate": 10}}))
    out = render(run, extra_sections=[("Lead notes", "Some **bold** text.")], include_telemetry=True)
    assert out == run / "report.html"
    md = (run / "report.md").read_text()
    assert "## Consistency" in md and "Transfer QwQ" in md and "## Lead notes" in md and "wall_s" in md
    assert "real" in md.lower() and "1,047" in md  # the CI note on the real n
    pngs = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert "methods_paper.png" in pngs and "heatmap_transfer_qwq_full.png" in pngs and "accuracy_full.png" in pngs
    for p in (run / "plots").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = out.read_text()
    # Self-contained: every image inline, no file references left.
    assert html.count("data:image/png;base64,") == len(pngs)
    assert not re.search(r'src="plots/', html)
    assert "<table>" in html and "Lead notes" in html


def test_telemetry_only_raw_without_caller_sections(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    (run / "telemetry.json").write_text(json.dumps({"wall_s": 1.0}))
    render(run)
    assert "## Telemetry" in (run / "report.md").read_text()
    render(run, extra_sections=[("Run summary", "- wall time: 1.0 s")])
    md = (run / "report.md").read_text()
    assert "## Telemetry" not in md and "## Run summary" in md


def test_render_without_tables_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="crosscot score"):
        render(tmp_path)


def test_commands_end_to_end(tmp_path: Path) -> None:
    """import-genex → score → report through the command modules' contract (HELP/add_arguments/run)."""
    import argparse

    from pipeline.commands import import_genex, report, score

    src = tmp_path / "src"
    src.mkdir()
    for model_file, model_id in (("Qwen_QwQ-32B", "Qwen/QwQ-32B"), ("openai_gpt-oss-20b", "openai/gpt-oss-20b")):
        for kind in ("original", "empty"):
            recs = [
                {
                    "Row Number": rn,
                    "Calculator Name": "HAS-BLED",
                    "Calculator ID": "25",
                    "Ground Truth Answer": "3",
                    "LLM Name": model_id,
                    "LLM Answer": str(rn % 4),
                    "LLM Explanation": "e",
                    "LLM Thinking": "t",
                    "Result": "Correct" if rn % 4 == 3 else "Incorrect",
                }
                for rn in range(1, 9)
            ]
            (src / f"{model_file}_zero_shot_{kind}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    run = tmp_path / "run"

    def call(mod, argv: list[str]) -> int:
        assert isinstance(mod.HELP, str) and mod.HELP
        p = argparse.ArgumentParser()
        mod.add_arguments(p)
        return mod.run(p.parse_args(argv))

    assert call(import_genex, [str(src), "--out", str(run)]) == 0
    assert call(score, [str(run), "--judge", "stored", "--metric", "paper", "--n-boot", "50"]) == 0
    assert (run / "scored.arrow").is_file() and (run / "tables" / "accuracy.csv").is_file()
    assert call(report, [str(run)]) == 0
    assert (run / "report.html").is_file()
    from pipeline.cli import main

    assert main(["score", str(tmp_path / "missing")]) == 2  # user errors: one line, exit 2 (pipeline.errors)
    assert main(["score", str(run), "--metric", "nope"]) == 2


def test_union_seconds_merges_overlaps_and_clips():
    from pipeline.report.telemetry import union_seconds

    iv = [(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (5.5, 5.7)]
    assert union_seconds(iv) == 4.0  # [0, 3] and [5, 6]
    assert union_seconds(iv, 2.5, 5.5) == 1.0  # [2.5, 3] and [5, 5.5]
    assert union_seconds([]) == 0.0
