"""``analyses.csv`` and ``analyses.md`` (a section per analysis) from the analyses' rows."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from pipeline.analyses.study import COLUMNS, COT_CLASSES, Row
from pipeline.store.atomic import atomic_path

SCHEMA = {
    "analysis": pl.String,
    "setting": pl.String,
    "group": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "n": pl.Int64,
}

INTRO = {
    "self_consistency": "A model's self-transfer answer against its Sampled answer (self-consistency.ipynb): "
    "a match is both correct, or both wrong with equal strings; rate = matches / kept rows.",
    "cot_effect": "Each target's Empty answer against its answer under each CoT setting (rebuttal-ablation.ipynb), "
    "shares of the kept rows summed over the five targets; `all`: mean ± std over the settings.",
    "agreement_breakdown": "Per pair of a setting's targets, the share of kept rows that agree and are correct, "
    "agree and are wrong, agree with mixed results, or disagree (consistency_all.ipynb); "
    "mean over the pairs where the class occurs (n pairs); wrong share = cw / (cc + cw).",
    "creator_involvement": "Paper agreement of the pairs of a source's transfer files, by whether one target is "
    "the source itself (model_involvement.ipynb); ± std/√n.",
    "pooled_consistency": "Paper agreement of every pair of files in a group that ignores the variant, pooled over "
    "the groups of a kind (figure_1.ipynb).",
}


def frame(rows: list[Row]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA).select(list(COLUMNS))


def _pct(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{100 * x:.1f} %"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def _section(name: str, df: pl.DataFrame) -> str:
    lines = [f"## {name}", "", INTRO[name], ""]
    if name == "cot_effect":
        hdr = ["setting", "group", *COT_CLASSES, "n"]
        body = []
        for (setting, group), g in df.group_by("setting", "group", maintain_order=True):
            v = {r["metric"]: r for r in g.iter_rows(named=True)}
            cells = [
                _pct(v[c]["value"]) + (f" ± {_pct(v[c + '_std']['value'])}" if c + "_std" in v else "")
                if c in v
                else "–"
                for c in COT_CLASSES
            ]
            body.append([str(setting), str(group), *cells, str(next(iter(v.values()))["n"])])
        lines.append(_table(hdr, body))
    else:
        body = [
            [r["setting"], r["group"], r["metric"], f"{r['value']:.3f}", str(r["n"])] for r in df.iter_rows(named=True)
        ]
        lines.append(_table(["setting", "group", "metric", "value", "n"], body))
    return "\n".join(lines)


def markdown(df: pl.DataFrame) -> str:
    parts = ["# The study's further analyses", ""]
    for name in INTRO:
        sub = df.filter(pl.col("analysis") == name)
        parts.append(_section(name, sub) if sub.height else f"## {name}\n\nnot computable from this run's files")
        parts.append("")
    return "\n".join(parts)


def write(rows: list[Row], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    df = frame(rows)
    csv, md = out_dir / "analyses.csv", out_dir / "analyses.md"
    with atomic_path(csv) as tmp:
        df.write_csv(tmp)
    with atomic_path(md) as tmp:
        tmp.write_text(markdown(df), encoding="utf-8")
    return csv, md
