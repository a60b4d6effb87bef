"""Importer of the reference study's released MedCalc-Bench generations (JSONL) into ``answers``.

The reference study ("Do explanations generalize across large reasoning
models?") released one JSONL file per (setting, answering model).  File names
follow one scheme, parsed here and nowhere else:

======================================================================  ===========  =================
file name                                                               method       source
======================================================================  ===========  =================
``<src>_thoughts_to_<tgt>_zero_shot_{full,without_answer}.jsonl``       transfer     src
``<model>_zero_shot_original[_low].jsonl``                              default      model
``<model>_zero_shot_empty.jsonl``                                       empty        model
``<model>_zero_shot_with_sampling[_without_answer].jsonl``              sampled      model
``<model>_zero_shot_ensembled_thought[_without_answer]_gen_<a>_<b>_eval_<c>.jsonl``
                                                                        ensemble     "A+B/C"
======================================================================  ===========  =================

Model ids appear with "/" replaced by "_" (``Qwen_QwQ-32B``) and map to short
names (``QwQ``); ensemble names use lower-case short names (``qwq``).  An
unknown model id is kept as a sanitized short name and recorded in the skips
table (action ``note``), never silently.

Rows are keyed by ``Row Number`` (not file order).  Transfer files hold the
target's answer in ``Target Answer``/``Target Result`` (the source's own in
``LLM Answer``/``Result``); other files use ``LLM Answer``/``Result``.  A
transfer row without the ``Target …`` fields is a failed target generation in
the reference run: it is kept with a null answer and an ``error`` (the study
counts such rows as wrong, and its consistency metric compares them as a
"no answer" value), and recorded in the skips table (action
``kept_with_error``).  Anything not fitting the scheme is skipped with a
reason there (action ``skipped``).

``import_genex`` writes ``<run_dir>/answers.arrow`` (atomically),
``<run_dir>/import_skips.csv`` and ``<run_dir>/source_answers.arrow`` (the source's
own answer as each transfer file recorded it, :mod:`pipeline.importers.genex_source`)
beside it.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.datasets.medcalc_csv import make_gold, read_benchmark_csv
from pipeline.datasets.rows import read_records, skip_record
from pipeline.schema import ANSWER_KEY, ANSWERS, from_rows
from pipeline.store.artifacts import content_hash, provenance, write_table
from pipeline.store.atomic import atomic_path

log = logging.getLogger(__name__)

DATASET = "medcalc"

# Model ids (as written in file names: "/" -> "_") -> short names used in tables.
MODEL_SHORT: dict[str, str] = {
    "nvidia_Nemotron-Research-Reasoning-Qwen-1.5B": "NRR",
    "open-thoughts_OpenThinker-7B": "OpenT",
    "openai_gpt-oss-20b": "OSS",
    "Qwen_QwQ-32B": "QwQ",
    "BytedTsinghua-SIA_DAPO-Qwen-32B": "DAPO",
}
# Lower-case names used inside ensemble file names.
ENSEMBLE_SHORT: dict[str, str] = {"qwq": "QwQ", "dapo": "DAPO", "oss": "OSS", "opent": "OpenT", "nrr": "NRR"}

SKIP_COLUMNS = ("file", "row", "field", "action", "reason")

_TRANSFER_RE = re.compile(r"^(?P<src>.+?)_thoughts_to_(?P<tgt>.+)_zero_shot_(?P<variant>full|without_answer)\.jsonl$")
_ENSEMBLE_RE = re.compile(
    r"^(?P<model>.+)_zero_shot_ensembled_thought(?P<wa>_without_answer)?"
    r"_gen_(?P<a>[A-Za-z0-9-]+)_(?P<b>[A-Za-z0-9-]+)_eval_(?P<c>[A-Za-z0-9-]+)\.jsonl$"
)
_SAMPLED_RE = re.compile(r"^(?P<model>.+)_zero_shot_with_sampling(?P<wa>_without_answer)?\.jsonl$")
_EMPTY_RE = re.compile(r"^(?P<model>.+)_zero_shot_empty\.jsonl$")
_DEFAULT_RE = re.compile(r"^(?P<model>.+)_zero_shot_original(?P<low>_low)?\.jsonl$")


class GenexImportError(ValueError):
    """The folder or a file cannot be imported; the message names file/row/field and the fix."""


@dataclass(frozen=True)
class FileSpec:
    """What a file name says: method, source (short), target (short), variant."""

    path: Path
    method: str
    source: str
    target: str
    variant: str


class Skips:
    """The importers' skip records (``import_skips.csv``): what was skipped or noted, and why.

    A file is recorded by its path relative to ``root`` when given (importers that read
    sub-folders), else by its name.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.rows: list[dict[str, str]] = []
        self.root = root

    def add(self, file: str | Path, row: Any, field: str, action: str, reason: str) -> None:
        # The datasets' skip record (file, row, field, reason) plus what the importer did about it.
        p = Path(file)
        name = p.relative_to(self.root).as_posix() if self.root is not None and p.is_relative_to(self.root) else p.name
        self.rows.append({**skip_record(name, "" if row is None else str(row), reason, field), "action": action})
        level = logging.INFO if action == "kept_with_error" else logging.WARNING
        log.log(level, "%s row %s field %s: %s (%s)", Path(file).name, row, field, reason, action)


def short_name(model_id: str, skips: Skips | None = None, file: str | Path = "") -> str:
    """Short name of a file-name model id; unknown ids are sanitized and recorded."""
    if model_id in MODEL_SHORT:
        return MODEL_SHORT[model_id]
    # Also accept the "/" form as found inside the rows.
    if model_id.replace("/", "_") in MODEL_SHORT:
        return MODEL_SHORT[model_id.replace("/", "_")]
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", model_id)
    if skips is not None:
        skips.add(
            file,
            None,
            "model",
            "note",
            f"unknown model id {model_id!r}; kept as short name {name!r} (add it to pipeline.importers.genex_medcalc.MODEL_SHORT to name it)",
        )
    return name


def ensemble_short(tok: str, skips: Skips | None = None, file: str | Path = "") -> str:
    """Short name of a lower-case model name inside ensemble/setting names; unknown ones are kept and recorded."""
    if tok.lower() in ENSEMBLE_SHORT:
        return ENSEMBLE_SHORT[tok.lower()]
    if skips is not None:
        skips.add(
            file,
            None,
            "model",
            "note",
            f"unknown ensemble model {tok!r}; kept as-is (add it to pipeline.importers.genex_medcalc.ENSEMBLE_SHORT to name it)",
        )
    return tok


def parse_filename(path: Path, skips: Skips) -> FileSpec | None:
    """FileSpec for a file name in the scheme, else None (caller records the skip)."""
    name = path.name
    m = _TRANSFER_RE.match(name)
    if m:
        return FileSpec(
            path, "transfer", short_name(m["src"], skips, path), short_name(m["tgt"], skips, path), m["variant"]
        )
    m = _ENSEMBLE_RE.match(name)
    if m:
        src = f"{ensemble_short(m['a'], skips, path)}+{ensemble_short(m['b'], skips, path)}/{ensemble_short(m['c'], skips, path)}"
        model = short_name(m["model"], skips, path)
        return FileSpec(path, "ensemble", src, model, "without_answer" if m["wa"] else "full")
    m = _SAMPLED_RE.match(name)
    if m:
        model = short_name(m["model"], skips, path)
        return FileSpec(path, "sampled", model, model, "without_answer" if m["wa"] else "full")
    m = _EMPTY_RE.match(name)
    if m:
        model = short_name(m["model"], skips, path)
        return FileSpec(path, "empty", model, model, "full")
    m = _DEFAULT_RE.match(name)
    if m:
        model = short_name(m["model"], skips, path)
        return FileSpec(path, "default", model, model, "full")
    return None


def _s(x: Any) -> str | None:
    return None if x is None else str(x)


def _stored_correct(value: Any) -> bool | None:
    if value == "Correct":
        return True
    if value == "Incorrect":
        return False
    return None


def _answer_text(explanation: Any, answer: Any) -> str | None:
    # Rebuild the model's reply in the JSON form the prompt asked for, so the
    # "ours" judge extracts from imported text exactly as from live outputs.
    if explanation is None and answer is None:
        return None
    return json.dumps({"step_by_step_thinking": _s(explanation) or "", "answer": _s(answer) or ""}, ensure_ascii=False)


def _row_to_answer(
    spec: FileSpec, rec: dict[str, Any], line_no: int, bench: dict[str, dict[str, str]] | None, skips: Skips
) -> dict[str, Any] | None:
    f = spec.path
    rn = rec.get("Row Number")
    if isinstance(rn, str) and rn.strip().isdigit():
        rn = int(rn)
    if not isinstance(rn, int):
        skips.add(f, f"line {line_no}", "Row Number", "skipped", f"Row Number {rn!r} missing or not an integer")
        return None
    gt = rec.get("Ground Truth Answer")
    if gt is None:
        skips.add(f, rn, "Ground Truth Answer", "skipped", "no Ground Truth Answer in the row")
        return None
    cid, cname = _s(rec.get("Calculator ID")) or "", _s(rec.get("Calculator Name")) or ""
    lower = upper = otype = None
    if bench is not None:
        b = bench.get(str(rn))
        if b is None:
            skips.add(
                f, rn, "Row Number", "note", "row not in the benchmark CSV; gold limits taken from the JSONL (none)"
            )
        else:
            lower, upper, otype = b["Lower Limit"], b["Upper Limit"], b.get("Output Type")
            if b["Ground Truth Answer"].strip() != str(gt).strip():
                skips.add(
                    f,
                    rn,
                    "Ground Truth Answer",
                    "note",
                    f"JSONL gold {gt!r} differs from benchmark CSV {b['Ground Truth Answer']!r}; the CSV's is used",
                )
                gt = b["Ground Truth Answer"].strip()
    gold = make_gold(str(gt).strip(), lower, upper, cid, cname, otype)

    row: dict[str, Any] = {
        "dataset": DATASET,
        "problem_id": str(rn),
        "method": spec.method,
        "source": spec.source,
        "variant": spec.variant,
        "sample": 0,
        "target": spec.target,
        "gold": json.dumps(gold),
        "finish_reason": None,
    }
    if spec.method == "transfer":
        row["cot"] = _s(rec.get("LLM Raw Thinking"))
        declared = rec.get("Target Model")
        if declared is not None and short_name(str(declared)) != spec.target:
            skips.add(
                f,
                rn,
                "Target Model",
                "skipped",
                f"row's Target Model {declared!r} contradicts the file name's target {spec.target!r}",
            )
            return None
        if "Target Answer" not in rec and "Target Result" not in rec:
            # The reference run failed for this target (the row only carries the
            # evaluator's error in LLM Answer).  Keep it: it counts as wrong.
            row.update(answer=None, answer_text=None, stored_correct=None)
            row["error"] = (
                f"{f.name} row {rn}: no Target Answer/Target Result (target generation failed in the "
                f"reference run; LLM Answer={_s(rec.get('LLM Answer'))!r}); counted as a wrong, missing answer"
            )
            skips.add(
                f, rn, "Target Answer", "kept_with_error", "no Target Answer/Target Result; kept as a missing answer"
            )
            return row
        ans, res, expl = rec.get("Target Answer"), rec.get("Target Result"), rec.get("Target Explanation")
        res_field = "Target Result"
    else:
        if spec.method in ("ensemble",):
            cot = rec.get("Transferred Thoughts")
            row["cot"] = _s(cot if cot is not None else rec.get("LLM Thinking"))
        elif spec.method == "empty":
            # The target answered after an empty thinking block.
            row["cot"] = ""
        else:
            row["cot"] = _s(rec.get("LLM Thinking"))
        declared = rec.get("LLM Name")
        if declared is not None and short_name(str(declared)) != spec.target:
            skips.add(
                f,
                rn,
                "LLM Name",
                "skipped",
                f"row's LLM Name {declared!r} contradicts the file name's model {spec.target!r}",
            )
            return None
        if "LLM Answer" not in rec:
            skips.add(f, rn, "LLM Answer", "skipped", "no LLM Answer in the row")
            return None
        ans, res, expl = rec.get("LLM Answer"), rec.get("Result"), rec.get("LLM Explanation")
        res_field = "Result"
    row["answer"] = _s(ans)
    row["answer_text"] = _answer_text(expl, ans)
    row["stored_correct"] = _stored_correct(res)
    if row["stored_correct"] is None:
        skips.add(f, rn, res_field, "note", f"{res_field} is {res!r}, not Correct/Incorrect; stored judgment left null")
    # Stored answers that are the study's evaluator error messages ("name 'N' is
    # not defined", ...) are kept verbatim and *without* an `error`: they are real
    # (unparseable) answers that count as wrong and in the accuracy denominator,
    # and the paper metric recognises and drops them itself.
    return row


def read_genex(src_dir: str | Path, benchmark_csv: str | Path | None = None) -> tuple[pa.Table, list[dict[str, str]]]:
    """Parse every ``*.jsonl`` in ``src_dir``; returns (ANSWERS table, skip records)."""
    src = Path(src_dir)
    if not src.is_dir():
        raise GenexImportError(f"genex folder not found: {src}; pass the folder holding the study's *.jsonl files")
    skips = Skips()
    bench: dict[str, dict[str, str]] | None = None
    if benchmark_csv is not None:
        bench_rows, bench_skips = read_benchmark_csv(benchmark_csv)
        bench = {r["Row Number"].strip(): r for r in bench_rows}
        for s in bench_skips:
            skips.add(s["file"], s["row"], s["field"], "note", f"benchmark CSV row skipped: {s['reason']}")
    files = sorted(src.glob("*.jsonl"))
    if not files:
        raise GenexImportError(f"{src}: no *.jsonl files; is this the genex-medcalc-outputs folder?")
    rows: list[dict[str, Any]] = []
    owner: dict[tuple, str] = {}
    for path in files:
        spec = parse_filename(path, skips)
        if spec is None:
            skips.add(
                path,
                None,
                "file name",
                "skipped",
                "file name does not fit the genex naming scheme (see pipeline.importers.genex_medcalc)",
            )
            continue

        def bad_line(line_no: int, why: str, path: Path = path) -> None:
            skips.add(path, f"line {line_no}", "json", "skipped", why)

        for line_no, rec in read_records(path, on_bad_line=bad_line):
            row = _row_to_answer(spec, rec, line_no, bench, skips)
            if row is None:
                continue
            key = tuple(row[k] for k in ANSWER_KEY)
            if key in owner:
                raise GenexImportError(
                    f"{path.name} row {row['problem_id']}: duplicate answer key {dict(zip(ANSWER_KEY, key))}, "
                    f"already read from {owner[key]}. Two files map to the same setting (e.g. both "
                    "`_original` and `_original_low` for one model); move one out of the folder."
                )
            owner[key] = path.name
            rows.append(row)
    if not rows:
        skipped = [r for r in skips.rows if r.get("action") == "skipped"]
        first = (
            f", first: {skipped[0].get('file')} {skipped[0].get('row')}: {skipped[0].get('reason')}" if skipped else ""
        )
        raise GenexImportError(
            f"{src}: no importable rows ({len(skipped)} record(s) skipped{first}); "
            "fix the files (one JSON object per line with the study's fields)"
        )
    return from_rows(rows, ANSWERS), skips.rows


def write_skips(skips: list[dict[str, str]], path: Path) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(SKIP_COLUMNS))
        w.writeheader()
        w.writerows(skips)


def import_genex(src_dir: str | Path, out_run_dir: str | Path, benchmark_csv: str | Path | None = None) -> Path:
    """Import the study's JSONL folder; returns the path of ``answers.arrow``."""
    table, skips = read_genex(src_dir, benchmark_csv)
    out = Path(out_run_dir)
    dest = out / "answers.arrow"
    files = {p.name: p.stat().st_size for p in sorted(Path(src_dir).glob("*.jsonl"))}
    meta = provenance(
        "import-genex",
        {"src_dir": str(src_dir), "benchmark_csv": None if benchmark_csv is None else str(benchmark_csv)},
        {"jsonl_files": content_hash(files)},
        {"n_files": len(files), "n_skip_records": len(skips)},
    )
    write_table(dest, table, meta)  # atomic: temp file + fsync + os.replace
    write_skips(skips, out / "import_skips.csv")
    # The source's own answer as each transfer file recorded it (the study's notebooks read it).
    from pipeline.importers.genex_source import SOURCE_ANSWERS_FILE, read_source_answers

    write_table(out / SOURCE_ANSWERS_FILE, read_source_answers(src_dir), meta)
    n_skipped = sum(s["action"] == "skipped" for s in skips)
    log.info(
        "imported %d answer rows into %s (%d skipped, %d records in import_skips.csv)",
        table.num_rows,
        dest,
        n_skipped,
        len(skips),
    )
    return dest
