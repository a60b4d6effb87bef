"""Importer of the study's Instruction Induction comparisons (``genex-ii-comparisons/``).

Layout, one folder per setting:

==========================================  ===========  ==================
folder                                      method       setting label
==========================================  ===========  ==================
``default``                                 default      ``Default``
``empty``                                   empty        ``Empty``
``sampling``                                sampled      ``Sampled``
``transfer_<src>``                          transfer     ``Transfer <SRC>``
``ensemble_gen_<a>_<b>_eval_<c>``           ensemble     ``Ensemble <A>+<B>/<C>``
==========================================  ===========  ==================

A folder name containing ``without_answer`` holds the without-answer variant
(the token is removed before parsing); otherwise the variant is ``full``.
Short names come from :data:`pipeline.importers.genex_medcalc.ENSEMBLE_SHORT` (lower-case names
in folder names) and :func:`pipeline.importers.genex_medcalc.short_name` (model ids in file names).

In each folder, per task and model pair, ``<task>_bert_comparison_<m1>_vs_<m2>.json``
maps item ids to both models' answers and BERTScore F1 (``bert_1_to_2``,
``bert_2_to_1``, ``bert_score``) and holds the task's ``weighted_task_score``
(the mean ``bert_score`` over its items).  One ``summary_bert_comparison_<m1>_vs_<m2>.json``
per pair repeats the task scores.

Outputs in the run directory (Arrow, atomic):

* ``ii_comparisons.arrow`` — one row per item: ``setting, method, source, variant, task,
  model_a, model_b, item, answer_a, answer_b, bert_a_to_b, bert_b_to_a, bert_score``;
* ``ii_files.arrow`` — one row per JSON file: ``setting, variant, model_a, model_b, file,
  kind`` (``task`` | ``summary``), ``task, n_items, task_score`` (recomputed mean) and
  ``stored_score`` (the file's ``weighted_task_score``; null for summaries).  The study's
  aggregation reads every file of a pair, summaries included (see :mod:`pipeline.scoring.ii`);
* ``import_skips.csv`` — what was skipped or noted, and why.

Model pairs are stored in :data:`pipeline.scoring.consistency.MODEL_ORDER` order
(``model_a`` before ``model_b``), whatever order the file name used.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.store.artifacts import content_hash, provenance, write_table
from pipeline.importers.genex_medcalc import Skips, ensemble_short, short_name, write_skips
from pipeline.schema import setting_name
from pipeline.scoring.consistency import order_models

ITEMS = pa.schema(
    [
        ("setting", pa.string()),
        ("method", pa.string()),
        ("source", pa.string()),
        ("variant", pa.string()),
        ("task", pa.string()),
        ("model_a", pa.string()),
        ("model_b", pa.string()),
        ("item", pa.string()),
        ("answer_a", pa.string()),
        ("answer_b", pa.string()),
        ("bert_a_to_b", pa.float64()),
        ("bert_b_to_a", pa.float64()),
        ("bert_score", pa.float64()),
    ]
)
FILES = pa.schema(
    [
        ("setting", pa.string()),
        ("variant", pa.string()),
        ("model_a", pa.string()),
        ("model_b", pa.string()),
        ("file", pa.string()),
        ("kind", pa.string()),
        ("task", pa.string()),
        ("n_items", pa.int64()),
        ("task_score", pa.float64()),
        ("stored_score", pa.float64()),
    ]
)
ITEMS_FILE = "ii_comparisons.arrow"
FILES_FILE = "ii_files.arrow"

_FILE_RE = re.compile(r"^(?P<task>.+?)_bert_comparison_(?P<m1>.+)_vs_(?P<m2>.+)\.json$")
_ENSEMBLE_RE = re.compile(r"^ensemble_gen_(?P<a>[a-z0-9-]+)_(?P<b>[a-z0-9-]+)_eval_(?P<c>[a-z0-9-]+)$")
SUMMARY_TASK = "summary"
# A recomputed task score farther than this from the stored one is reported.
SCORE_TOL = 1e-6


class GenexIIImportError(ValueError):
    """The folder cannot be imported; the message names the file and the fix."""


def parse_setting(folder: str, skips: Skips | None = None) -> tuple[str, str, str] | None:
    """``(method, source, variant)`` of a setting folder name, else None (unknown model names go to ``skips``)."""
    variant = "without_answer" if "without_answer" in folder else "full"
    name = re.sub(r"_?without_answer", "", folder).strip("_")
    if name == "default":
        return "default", "", variant
    if name == "empty":
        return "empty", "", variant
    if name in ("sampling", "sampled"):
        return "sampled", "", variant
    if name.startswith("transfer_") and len(name) > len("transfer_"):
        return "transfer", ensemble_short(name[len("transfer_") :], skips, folder), variant
    m = _ENSEMBLE_RE.match(name)
    if m:
        return "ensemble", "{}+{}/{}".format(*(ensemble_short(m[k], skips, folder) for k in "abc")), variant
    return None


def _float(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(float(x)) else None


def read_genex_ii(src_dir: str | Path) -> tuple[pa.Table, pa.Table, list[dict[str, str]]]:
    """Parse every setting folder under ``src_dir``; returns (items, files, skip records)."""
    src = Path(src_dir)
    if not src.is_dir():
        raise GenexIIImportError(f"II comparisons folder not found: {src}; pass the genex-ii-comparisons folder")
    skips = Skips(root=src)
    items: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    folders = sorted(p for p in src.iterdir() if p.is_dir())
    for folder in folders:
        parsed = parse_setting(folder.name, skips)
        if parsed is None:
            skips.add(
                folder,
                None,
                "folder",
                "skipped",
                "folder name is not a known II setting (see pipeline.importers.genex_ii)",
            )
            continue
        method, source, variant = parsed
        setting = setting_name(method, source)
        for path in sorted(folder.glob("*.json")):
            rel = f"{folder.name}/{path.name}"
            m = _FILE_RE.match(path.name)
            if m is None:
                skips.add(path, None, "file name", "skipped", "not <task>_bert_comparison_<m1>_vs_<m2>.json")
                continue
            a, b = short_name(m["m1"], skips, path), short_name(m["m2"], skips, path)
            swap = order_models([a, b]) != [a, b]
            ma, mb = (b, a) if swap else (a, b)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                skips.add(path, None, "json", "skipped", f"malformed JSON: {e}")
                continue
            if not isinstance(data, dict):
                skips.add(path, None, "json", "skipped", "top level is not a JSON object")
                continue
            row = {"setting": setting, "variant": variant, "model_a": ma, "model_b": mb, "file": rel}
            if m["task"] == SUMMARY_TASK:
                files.append(
                    {**row, "kind": "summary", "task": None, "n_items": 0, "task_score": None, "stored_score": None}
                )
                continue
            scores = []
            for key, rec in data.items():
                if not isinstance(rec, dict):
                    continue  # task_name / model names / weighted_task_score
                s = _float(rec.get("bert_score"))
                if s is None:
                    skips.add(
                        path, key, "bert_score", "skipped", f"bert_score {rec.get('bert_score')!r} is not a number"
                    )
                    continue
                ab, ba = _float(rec.get("bert_1_to_2")), _float(rec.get("bert_2_to_1"))
                out_a, out_b = rec.get("model1_output"), rec.get("model2_output")
                if swap:
                    ab, ba, out_a, out_b = ba, ab, out_b, out_a
                items.append(
                    {
                        "setting": setting,
                        "method": method,
                        "source": source,
                        "variant": variant,
                        "task": m["task"],
                        "model_a": ma,
                        "model_b": mb,
                        "item": str(key),
                        "answer_a": None if out_a is None else str(out_a),
                        "answer_b": None if out_b is None else str(out_b),
                        "bert_a_to_b": ab,
                        "bert_b_to_a": ba,
                        "bert_score": s,
                    }
                )
                scores.append(s)
            stored = _float(data.get("weighted_task_score"))
            score = sum(scores) / len(scores) if scores else None
            if not scores:
                skips.add(path, None, "items", "note", "no scored items; the task scores as missing")
            if stored is None:
                skips.add(
                    path, None, "weighted_task_score", "note", "no weighted_task_score; the recomputed mean is used"
                )
            elif score is not None and abs(stored - score) > SCORE_TOL:
                skips.add(
                    path,
                    None,
                    "weighted_task_score",
                    "note",
                    f"stored {stored:.6f} differs from the item mean {score:.6f}; the item mean is used",
                )
            files.append(
                {
                    **row,
                    "kind": "task",
                    "task": m["task"],
                    "n_items": len(scores),
                    "task_score": score,
                    "stored_score": stored,
                }
            )
    if not files:
        raise GenexIIImportError(f"{src}: no importable comparison files; is this the genex-ii-comparisons folder?")
    return pa.Table.from_pylist(items, ITEMS), pa.Table.from_pylist(files, FILES), skips.rows


def import_genex_ii(src_dir: str | Path, out_run_dir: str | Path) -> Path:
    """Import the II comparisons folder into ``out_run_dir``; returns the path of ``ii_comparisons.arrow``."""
    out = Path(out_run_dir)
    if (out / "answers.arrow").exists():
        raise GenexIIImportError(
            f"{out} already holds answers.arrow (a MedCalc run); import the II comparisons into a run directory of their own"
        )
    items, files, skips = read_genex_ii(src_dir)
    sizes = {str(p.relative_to(src_dir)): p.stat().st_size for p in sorted(Path(src_dir).glob("*/*.json"))}
    meta = provenance(
        "import-genex-ii",
        {"src_dir": str(src_dir)},
        {"json_files": content_hash(sizes)},
        {"n_files": len(sizes), "n_skip_records": len(skips)},
    )
    write_table(out / FILES_FILE, files, meta)  # atomic
    dest = write_table(out / ITEMS_FILE, items, meta)
    write_skips(skips, out / "import_skips.csv")
    return dest
