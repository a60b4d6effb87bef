"""Report rendering: tables → plots (matplotlib, Agg) → report.md + self-contained report.html.

Inputs (``<run_dir>/tables/``, from pipeline.scoring.tables):
``consistency_summary.csv`` (required), ``accuracy.csv``,
``consistency_pairs.csv``, ``rl_agreement.csv`` (optional).  Optional
``<run_dir>/telemetry.json`` becomes a raw section when the caller passes no
sections of its own; callers may append ``(title, markdown)`` sections.

Outputs: ``<run_dir>/plots/*.png`` (one consistency heatmap per setting and
variant, a methods-comparison bar chart per metric, an accuracy chart),
``<run_dir>/report.md`` (links the PNGs) and ``<run_dir>/report.html`` (the
same content with the PNGs base64-embedded, so it can be mailed alone).
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.report.telemetry import telemetry_file_markdown
from pipeline.scoring.consistency import MODEL_ORDER, order_models
from pipeline.store.atomic import write_text_atomic

_METHOD_RANK = {"Empty": 0, "Default": 1, "Sampled": 2, "Transfer": 3, "Ensemble": 4}

NOTES = """\
* **Consistency** of a setting is the mean (± population std) over the C(k, 2) pairs of
  target models of the share of problems on which the two targets agree.
  `paper`: answers identical or both correct; problems where either answer is an evaluator
  error ("N/A", "not defined", "does not match", "are not permitted") are left out of that
  pair; a missing answer (failed generation) is compared as a value.
  `strict`: normalized answers equal (decimals within the calculator's tolerance), no
  both-correct shortcut.
* **Intervals** are percentile bootstrap 95 % intervals over problems.  Accuracy intervals
  are computed over the real n, the number of problems actually answered (`n` in the table).  The
  reference study computed its accuracy intervals as if its 100-problem subset had the
  1,047 rows of the full test set, so its intervals are much narrower than ours.
"""


def setting_key(s: str) -> tuple[int, int, str]:
    head, _, rest = s.partition(" ")
    rank = {m: i for i, m in enumerate(MODEL_ORDER)}
    return (_METHOD_RANK.get(head, 9), rank.get(rest, len(rank)), rest)


def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def read_frame(tables: Path, name: str, required: bool = False) -> pl.DataFrame | None:
    p = tables / f"{name}.csv"
    if not p.is_file():
        if required:
            raise FileNotFoundError(
                f"{p} not found; run `crosscot score <run_dir>` first to write the tables the report reads"
            )
        return None
    return pl.read_csv(p, infer_schema_length=10000)


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_").lower()


# --------------------------------------------------------------------------- plots


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_heatmap(pairs: pl.DataFrame, setting: str, variant: str, path: Path) -> Path:
    """Targets × targets agreement, one panel per metric."""
    plt = pyplot()
    sub = pairs.filter((pl.col("setting") == setting) & (pl.col("variant") == variant))
    metrics = sub["metric"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, met in zip(axes[0], metrics):
        s = sub.filter(pl.col("metric") == met)
        models = order_models(s["model_a"].to_list() + s["model_b"].to_list())
        ix = {m: i for i, m in enumerate(models)}
        mat = np.eye(len(models))
        for a, b, v in s.select("model_a", "model_b", "value").iter_rows():
            mat[ix[a], ix[b]] = mat[ix[b], ix[a]] = v if v is not None else np.nan
        im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(models)), models, rotation=45, ha="right")
        ax.set_yticks(range(len(models)), models)
        for i in range(len(models)):
            for j in range(len(models)):
                if np.isfinite(mat[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{mat[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if mat[i, j] < 0.6 else "black",
                    )
        ax.set_title(f"{met}")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"{setting} ({variant}): pairwise agreement")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_methods(summary: pl.DataFrame, metric: str, path: Path) -> Path:
    """Consistency per setting with 95 % CI error bars; one bar per variant."""
    plt = pyplot()
    s = summary.filter(pl.col("metric") == metric)
    settings = sorted(s["setting"].unique().to_list(), key=setting_key)
    variants = sorted(s["variant"].unique().to_list(), key=lambda v: (v != "full", v))
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(max(6, 0.75 * len(settings) + 2), 4))
    x = np.arange(len(settings))
    for k, v in enumerate(variants):
        sv = {r["setting"]: r for r in s.filter(pl.col("variant") == v).iter_rows(named=True)}
        means = np.array([sv[t]["mean"] if t in sv else np.nan for t in settings], dtype=float)
        lo = np.array([sv[t].get("ci_low", np.nan) if t in sv else np.nan for t in settings], dtype=float)
        hi = np.array([sv[t].get("ci_high", np.nan) if t in sv else np.nan for t in settings], dtype=float)
        err = np.vstack([np.clip(means - lo, 0, None), np.clip(hi - means, 0, None)])
        err = np.where(np.isfinite(err), err, 0)
        ax.bar(x + (k - (len(variants) - 1) / 2) * width, means, width, yerr=err, capsize=3, label=v)
    ax.set_xticks(x, settings, rotation=40, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"consistency ({metric})")
    ax.set_title(f"Cross-model consistency by method ({metric}; bars: 95 % bootstrap CI)")
    ax.legend(title="variant")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy(acc: pl.DataFrame, variant: str, path: Path) -> Path:
    plt = pyplot()
    s = acc.filter(pl.col("variant") == variant)
    settings = sorted(s["setting"].unique().to_list(), key=setting_key)
    targets = order_models(s["target"].unique().to_list())
    width = 0.8 / max(1, len(targets))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(settings) + 2), 4))
    x = np.arange(len(settings))
    for k, t in enumerate(targets):
        st = {r["setting"]: r for r in s.filter(pl.col("target") == t).iter_rows(named=True)}
        m = np.array([st[z]["accuracy"] if z in st else np.nan for z in settings], dtype=float)
        lo = np.array([st[z]["ci_low"] if z in st else np.nan for z in settings], dtype=float)
        hi = np.array([st[z]["ci_high"] if z in st else np.nan for z in settings], dtype=float)
        err = np.where(np.isfinite([m - lo, hi - m]), np.clip([m - lo, hi - m], 0, None), 0)
        ax.bar(x + (k - (len(targets) - 1) / 2) * width, m, width, yerr=err, capsize=2, label=t)
    ax.set_xticks(x, settings, rotation=40, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Accuracy by setting and target ({variant}; bars: 95 % bootstrap CI over real n)")
    ax.legend(title="target", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- markdown


def _consistency_md(summary: pl.DataFrame) -> str:
    metrics = summary["metric"].unique(maintain_order=True).to_list()
    keys = sorted(
        {(r["setting"], r["variant"]) for r in summary.iter_rows(named=True)}, key=lambda k: (setting_key(k[0]), k[1])
    )
    idx = {(r["setting"], r["variant"], r["metric"]): r for r in summary.iter_rows(named=True)}
    rows = []
    for s, v in keys:
        cells = [s, v]
        for m in metrics:
            r = idx.get((s, v, m))
            if r is None:
                cells.append("–")
                continue
            ci = f" [{fmt(r.get('ci_low'))}, {fmt(r.get('ci_high'))}]" if "ci_low" in r else ""
            cells.append(f"{fmt(r['mean'])} ± {fmt(r['std'])}{ci}")
        rows.append(cells)
    return md_table(["setting", "variant"] + [f"{m} (mean ± std [95 % CI])" for m in metrics], rows)


def _accuracy_md(acc: pl.DataFrame) -> str:
    targets = order_models(acc["target"].unique().to_list())
    keys = sorted(
        {(r["setting"], r["variant"]) for r in acc.iter_rows(named=True)}, key=lambda k: (setting_key(k[0]), k[1])
    )
    idx = {(r["setting"], r["variant"], r["target"]): r for r in acc.iter_rows(named=True)}
    rows = []
    for s, v in keys:
        cells = [s, v]
        for t in targets:
            r = idx.get((s, v, t))
            cells.append(
                "–"
                if r is None
                else f"{100 * r['accuracy']:.0f} % [{100 * r['ci_low']:.0f}, {100 * r['ci_high']:.0f}] (n={r['n']})"
                if r["ci_low"] is not None and math.isfinite(r["ci_low"])
                else f"{100 * r['accuracy']:.0f} % (n={r['n']})"
            )
        rows.append(cells)
    return md_table(["setting", "variant"] + targets, rows)


def _rl_md(rl: pl.DataFrame) -> str:
    if rl.height == 0:
        return "_No transfer settings with the source's own (Default) answers._"
    targets = [t for t in order_models([t for t in rl["target"].unique().to_list() if t != "mean"])] + ["mean"]
    keys = sorted(
        {(r["source"], r["variant"], r["metric"]) for r in rl.iter_rows(named=True)},
        key=lambda k: (setting_key(f"Transfer {k[0]}"), k[1], k[2]),
    )
    idx = {(r["source"], r["variant"], r["metric"], r["target"]): r["value"] for r in rl.iter_rows(named=True)}
    rows = [[s, v, m] + [fmt(idx.get((s, v, m, t))) for t in targets] for s, v, m in keys]
    return md_table(["source", "variant", "metric"] + targets, rows)


def _judges(run_dir: Path) -> list[str]:
    p = run_dir / "scored.arrow"
    if not p.is_file():
        return []
    try:
        import pyarrow as pa
        import pyarrow.ipc as ipc

        with pa.memory_map(str(p), "r") as src:
            t = ipc.open_file(src).read_all().select(["judge"])
        return sorted({j for j in t.column("judge").to_pylist() if j})
    except Exception:  # the report must not fail on an unreadable side file
        return []


# --------------------------------------------------------------------------- html


def _md_to_html(md: str) -> str:
    try:
        from markdown_it import MarkdownIt

        return MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    except ImportError:
        # Fallback without a markdown library: still readable and self-contained.
        return "<pre>" + html.escape(md) + "</pre>"


def _embed_images(body: str, base: Path) -> str:
    def repl(m: re.Match[str]) -> str:
        src = m.group(1)
        p = (base / src) if not os.path.isabs(src) else Path(src)
        if not p.is_file():
            return m.group(0)
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    return re.sub(r'src="([^"]+\.png)"', repl, body)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f2f2f2}img{max-width:100%}code,pre{background:#f6f6f6}
"""


def render(
    run_dir: Path, extra_sections: list[tuple[str, str]] | None = None, include_telemetry: bool | None = None
) -> Path:
    """Write plots, ``report.md`` and ``report.html`` for ``run_dir``; returns the HTML path.

    ``include_telemetry``: add ``telemetry.json`` as a section (:func:`telemetry_file_markdown`).
    Default (None): only when no ``extra_sections`` are given — a caller that
    passes sections (the pipeline's report stage) formats telemetry itself.
    """
    if include_telemetry is None:
        include_telemetry = extra_sections is None
    run_dir = Path(run_dir)
    tables = run_dir / "tables"
    # The study's other tables (post-training, II, ratings) add their own sections.
    from pipeline.report import studies

    summary = read_frame(tables, "consistency_summary", required=not studies.has_study_tables(tables))
    acc = read_frame(tables, "accuracy")
    pairs = read_frame(tables, "consistency_pairs")
    rl = read_frame(tables, "rl_agreement")
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)

    md: list[str] = [f"# Cross-model CoT consistency report\n\nRun: `{run_dir.name}`"]
    judges = _judges(run_dir)
    if judges:
        md.append(f"Correctness judged by: {', '.join(judges)}.")
    if summary is not None:
        md.append("## Consistency\n\n" + _consistency_md(summary))
        for met in summary["metric"].unique(maintain_order=True).to_list():
            p = plot_methods(summary, met, plots / f"methods_{slug(met)}.png")
            md.append(f"![Consistency by method ({met})](plots/{p.name})")
    if acc is not None and acc.height:
        md.append("## Accuracy\n\n" + _accuracy_md(acc))
        for v in sorted(acc["variant"].unique().to_list(), key=lambda v: (v != "full", v)):
            p = plot_accuracy(acc, v, plots / f"accuracy_{slug(v)}.png")
            md.append(f"![Accuracy ({v})](plots/{p.name})")
    if rl is not None:
        md.append(
            "## Agreement with the source model's own answer\n\n"
            "Share of problems on which a target's answer after the source's CoT agrees with the source's "
            "own (Default) answer; `mean` averages over targets.\n\n" + _rl_md(rl)
        )
    if pairs is not None and pairs.height:
        md.append("## Pairwise agreement")
        keys = sorted(
            {(r["setting"], r["variant"]) for r in pairs.iter_rows(named=True)}, key=lambda k: (setting_key(k[0]), k[1])
        )
        for s, v in keys:
            p = plot_heatmap(pairs, s, v, plots / f"heatmap_{slug(s)}_{slug(v)}.png")
            md.append(f"### {s} ({v})\n\n![{s} {v}](plots/{p.name})")
    from pipeline.report.curves import curves_markdown, prefix_curves

    if curves := prefix_curves(summary, acc):
        md.append("## Partial CoT\n\n" + curves_markdown(curves, plots))
    md += [f"## {title}\n\n{body}" for title, body in studies.sections(run_dir, plots)]
    if summary is not None:
        md.append("## Notes\n\n" + (studies.notes(tables) or NOTES))
    tele = run_dir / "telemetry.json"
    if include_telemetry and tele.is_file():
        md.append("## Telemetry\n\n" + telemetry_file_markdown(tele))
    for title, body in extra_sections or []:
        md.append(f"## {title}\n\n{body}")
    text = "\n\n".join(md) + "\n"

    md_path = run_dir / "report.md"
    write_text_atomic(md_path, text)

    body = _embed_images(_md_to_html(text), run_dir)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>crosscot report</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
    html_path = run_dir / "report.html"
    write_text_atomic(html_path, page)
    return html_path
