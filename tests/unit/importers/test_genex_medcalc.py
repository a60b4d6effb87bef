"""Importer of the reference study's JSONL generations: naming scheme, rows, skips, atomic output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline.importers.genex_medcalc import GenexImportError, import_genex, read_genex
from pipeline.schema import ANSWERS
from pipeline.store.artifacts import read_provenance, read_table

DATA = Path(__file__).resolve().parents[3] / "../shared/data"
GENEX = DATA / "genex-medcalc-outputs"
BENCH = DATA / "medcalc-bench" / "test_data.csv"

QWQ, OSS, NRR = "Qwen_QwQ-32B", "openai_gpt-oss-20b", "nvidia_Nemotron-Research-Reasoning-Qwen-1.5B"


def _base(rn: int, gt: str = "5") -> dict:
    return {
        "Row Number": rn,
        "Calculator Name": "HAS-BLED",
        "Calculator ID": "25",
        "Category": "risk",
        "Note ID": "1",
        "Patient Note": "note",
        "Question": "q?",
        "Ground Truth Answer": gt,
        "Ground Truth Explanation": "e",
    }


def _own(model_id: str, rn: int, ans: str, res: str, thinking: str = "think", transferred: str | None = None) -> dict:
    r = _base(rn) | {
        "LLM Name": model_id,
        "LLM Answer": ans,
        "LLM Explanation": f"expl {ans}",
        "LLM Thinking": thinking,
        "Result": res,
    }
    if transferred is not None:
        r |= {"Thought Type": "x", "Transferred Thoughts": transferred}
    return r


def _transfer(src: str, tgt: str, rn: int, src_ans: str, tgt_ans: str | None, tgt_res: str | None) -> dict:
    r = _base(rn) | {
        "LLM Model": src,
        "LLM Answer": src_ans,
        "LLM Raw Thinking": f"cot {rn}",
        "LLM Explanation": "e",
        "Result": "Incorrect",
    }
    if tgt_ans is not None:
        r |= {"Target Model": tgt, "Target Answer": tgt_ans, "Target Explanation": "te", "Target Result": tgt_res}
    return r


def _write(path: Path, rows: list[dict], extra_lines: list[str] = ()) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(extra_lines))


def test_scheme_variants_and_fields(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    # Rows deliberately in different orders: alignment is by Row Number.
    _write(
        src / f"{QWQ}_thoughts_to_{OSS}_zero_shot_without_answer.jsonl",
        [
            _transfer("Qwen/QwQ-32B", "openai/gpt-oss-20b", 2, "4", "5", "Correct"),
            _transfer("Qwen/QwQ-32B", "openai/gpt-oss-20b", 1, "4", None, None),
        ],
    )
    _write(
        src / f"{QWQ}_thoughts_to_{OSS}_zero_shot_full.jsonl",
        [_transfer("Qwen/QwQ-32B", "openai/gpt-oss-20b", 1, "4", "4", "Incorrect")],
    )
    _write(src / f"{OSS}_zero_shot_original_low.jsonl", [_own("openai/gpt-oss-20b", 1, "5", "Correct")])
    _write(
        src / f"{OSS}_zero_shot_empty.jsonl", [_own("openai/gpt-oss-20b", 1, "3", "Incorrect", transferred="<empty>")]
    )
    _write(
        src / f"{OSS}_zero_shot_with_sampling_without_answer.jsonl",
        [_own("openai/gpt-oss-20b", 1, "5", "Correct", transferred="")],
    )
    _write(
        src / f"{NRR}_zero_shot_ensembled_thought_without_answer_gen_qwq_dapo_eval_oss.jsonl",
        [
            _own(
                "nvidia/Nemotron-Research-Reasoning-Qwen-1.5B",
                1,
                "name 'N' is not defined",
                "Incorrect",
                transferred="ens cot",
            )
        ],
    )
    _write(src / "Acme_Model-9B_zero_shot_original.jsonl", [_own("Acme/Model-9B", 1, "5", "Correct")])
    _write(src / "notes.jsonl", [_base(1)])  # does not fit the scheme
    _write(src / f"{OSS}_zero_shot_empty_extra.jsonl", [_base(1)])  # does not fit either
    _write(
        src / f"{QWQ}_zero_shot_original.jsonl",
        [_own("Qwen/QwQ-32B", 2, "5", "Correct")],
        extra_lines=["{not json\n", "\n"],
    )

    out = tmp_path / "run"
    dest = import_genex(src, out)
    assert dest == out / "answers.arrow"
    t = read_table(dest)
    assert t.schema.equals(ANSWERS)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind
    assert read_provenance(dest)["stage"] == "import-genex"
    rows = {(r["method"], r["source"], r["variant"], r["target"], r["problem_id"]): r for r in t.to_pylist()}

    wa = rows[("transfer", "QwQ", "without_answer", "OSS", "2")]
    assert (wa["answer"], wa["stored_correct"], wa["cot"]) == ("5", True, "cot 2")
    assert json.loads(wa["answer_text"]) == {"step_by_step_thinking": "te", "answer": "5"}
    missing = rows[("transfer", "QwQ", "without_answer", "OSS", "1")]
    assert missing["answer"] is None and missing["stored_correct"] is None and "Target Answer" in missing["error"]
    assert rows[("transfer", "QwQ", "full", "OSS", "1")]["stored_correct"] is False
    assert rows[("default", "OSS", "full", "OSS", "1")]["answer"] == "5"
    empty = rows[("empty", "OSS", "full", "OSS", "1")]
    assert empty["cot"] == "" and empty["variant"] == "full"
    assert rows[("sampled", "OSS", "without_answer", "OSS", "1")]["cot"] == "think"
    ens = rows[("ensemble", "QwQ+DAPO/OSS", "without_answer", "NRR", "1")]
    # Evaluator error messages stay as the (wrong) stored answer, not as a failed row.
    assert ens["cot"] == "ens cot" and ens["answer"] == "name 'N' is not defined" and ens["error"] is None
    assert ("default", "Acme_Model-9B", "full", "Acme_Model-9B", "1") in rows
    assert json.loads(wa["gold"])["answer"] == "5"

    with (out / "import_skips.csv").open() as fh:
        skips = list(csv.DictReader(fh))
    by = {(s["file"], s["action"]) for s in skips}
    assert ("notes.jsonl", "skipped") in by and (f"{OSS}_zero_shot_empty_extra.jsonl", "skipped") in by
    assert ("Acme_Model-9B_zero_shot_original.jsonl", "note") in by
    assert any(s["file"] == f"{QWQ}_zero_shot_original.jsonl" and s["field"] == "json" for s in skips)
    assert any(s["action"] == "kept_with_error" and s["row"] == "1" for s in skips)


def test_duplicate_setting_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / f"{OSS}_zero_shot_original.jsonl", [_own("openai/gpt-oss-20b", 1, "5", "Correct")])
    _write(tmp_path / f"{OSS}_zero_shot_original_low.jsonl", [_own("openai/gpt-oss-20b", 1, "4", "Incorrect")])
    with pytest.raises(GenexImportError, match="duplicate answer key"):
        read_genex(tmp_path)


def test_row_contradicting_file_name_is_skipped(tmp_path: Path) -> None:
    _write(
        tmp_path / f"{OSS}_zero_shot_original.jsonl",
        [_own("Qwen/QwQ-32B", 1, "5", "Correct"), _own("openai/gpt-oss-20b", 2, "5", "Correct")],
    )
    t, skips = read_genex(tmp_path)
    assert t.column("problem_id").to_pylist() == ["2"]
    assert skips[0]["field"] == "LLM Name" and skips[0]["action"] == "skipped"


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(GenexImportError, match="not found"):
        read_genex(tmp_path / "nope")
    with pytest.raises(GenexImportError, match="no \\*.jsonl"):
        read_genex(tmp_path)


@pytest.mark.shared_data(GENEX)
def test_real_folder_import(tmp_path: Path) -> None:
    bench = BENCH if BENCH.is_file() else None
    t = read_table(import_genex(GENEX, tmp_path, bench))
    assert t.num_rows == 5500  # 55 files × 100 problems
    methods = t.group_by("method").aggregate([("problem_id", "count")]).to_pydict()
    assert dict(zip(methods["method"], methods["problem_id_count"])) == {
        "transfer": 2500,
        "ensemble": 1500,
        "default": 500,
        "empty": 500,
        "sampled": 500,
    }
    with (tmp_path / "import_skips.csv").open() as fh:
        skips = list(csv.DictReader(fh))
    assert {s["action"] for s in skips} == {"kept_with_error"}
    assert len(skips) == sum(a is None for a in t.column("answer").to_pylist())
    # Only the failed target generations carry an error; they must stay in the table.
    assert len(skips) == 152 == sum(e is not None for e in t.column("error").to_pylist())
    if bench:
        g = json.loads(t.column("gold")[0].as_py())
        assert g["lower"] is not None and g["output_type"] in ("integer", "decimal", "date", "weeks_days")
