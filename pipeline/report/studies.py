"""Report sections for the study's other tables: post-training (RL), Instruction Induction, human ratings.

:func:`sections` looks at ``<run_dir>/tables/`` and returns ``(title, markdown)``
sections for whichever of these tables exist (drawing their plots into
``plots/``); :func:`notes` returns the notes that replace the MedCalc ones for
an II run.  :mod:`pipeline.report.writer` calls both.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.report.writer import fmt, md_table, pyplot, read_frame, setting_key

STUDY_TABLES = ("post_training", "ii_tasks", "ratings_tests")

II_NOTES = """\
* **Instruction Induction consistency** of a target pair is its mean BERTScore F1 (both directions
  averaged, as stored by the study) between the two targets' induced instructions, per task and then
  over tasks; a setting's value is the mean (± population std) over its C(k, 2) target pairs.
* `paper` is exactly the study's aggregation: its file glob also reads each pair's `summary_*` file,
  which has no task score and counts as 0, so each pair is averaged over 21 "tasks" (20 real ones and
  the summary).  `corrected` averages over the 20 real tasks; it is `paper` × 21/20 and keeps the
  settings' order.
* The study's Default here is each model re-fed its own CoT.
* **Intervals** are percentile bootstrap 95 % intervals over tasks.
"""


def has_study_tables(tables: Path) -> bool:
    return any((tables / f"{n}.csv").is_file() for n in STUDY_TABLES)


def notes(tables: Path) -> str | None:
    """Notes replacing the MedCalc ones, or None to keep them."""
    return II_NOTES if (tables / "ii_tasks.csv").is_file() else None


def sections(run_dir: Path, plots: Path) -> list[tuple[str, str]]:
    tables = run_dir / "tables"
    out = []
    post = read_frame(tables, "post_training")
    if post is not None:
        out.append(("Post-training (RL): base vs post-trained sources", _post_training(tables, post, plots)))
    tasks = read_frame(tables, "ii_tasks")
    if tasks is not None:
        out.append(("Instruction Induction: paper vs corrected aggregation", _ii(tables, tasks, plots)))
    tests = read_frame(tables, "ratings_tests")
    if tests is not None:
        out.append(("Human ratings", _ratings(tables, tests, plots)))
    return out


# --------------------------------------------------------------------------- post-training


def _post_training(tables: Path, post: pl.DataFrame, plots: Path) -> str:
    from pipeline.scoring.post_training import confounds

    md = [
        "Per transfer: accuracy over the rows that have a target result; `source_agreement` = the study's "
        "rule (the source's answer as its first transfer file in file-name order recorded it, rows by "
        'position, error answers dropped, a missing target answer kept as ""); '
        "`source_agreement_project` = the target's answer vs the source's own (Default) answer under the "
        "paper rule and its drop rule, over the rows with a target result.  Each group averages over all "
        "its source → target transfers."
    ]
    rows = []
    for (variant, metric), g in sorted(post.group_by(["variant", "metric"]), key=lambda kv: kv[0]):
        v = {r["group"]: r for r in g.iter_rows(named=True)}
        b, p = v.get("base"), v.get("post")
        delta = p["value"] - b["value"] if b and p else None
        rows.append(
            [
                variant,
                metric,
                fmt(b and b["value"]),
                fmt(p and p["value"]),
                fmt(delta),
                f"{b['n_transfers'] if b else 0} / {p['n_transfers'] if p else 0}",
            ]
        )
    md.append(md_table(["variant", "metric", "base", "post", "post − base", "transfers (base / post)"], rows))
    detail = read_frame(tables, "post_training_detail")
    if detail is not None and detail.height:
        p = _plot_post_training(detail, plots / "post_training.png")
        md.append(f"![Post-training]({'plots/' + p.name})")
        per = (
            detail.group_by("variant", "base", "group", "source")
            .agg(pl.col("accuracy").mean(), pl.col("source_agreement").mean(), pl.len().alias("n"))
            .sort("variant", "base", "group")
        )
        md.append(
            "Per source (mean over its targets):\n\n"
            + md_table(
                ["variant", "base model", "group", "source", "accuracy", "source agreement", "targets"],
                [
                    [
                        r["variant"],
                        r["base"],
                        r["group"],
                        r["source"],
                        fmt(r["accuracy"]),
                        fmt(r["source_agreement"]),
                        str(r["n"]),
                    ]
                    for r in per.iter_rows(named=True)
                ],
            )
        )
    src = read_frame(tables, "post_training_sources")
    if src is not None:
        warn = confounds(src)
        if warn:
            md.append("**Confound — empty CoTs.**\n\n" + "\n".join(f"* {w}" for w in warn))
    return "\n\n".join(md)


def _plot_post_training(detail: pl.DataFrame, path: Path) -> Path:
    plt = pyplot()
    metrics = ["accuracy", "source_agreement"]
    variants = sorted(detail["variant"].unique().to_list(), key=lambda v: (v != "full", v))
    bases = sorted(detail["base"].unique().to_list())
    fig, axes = plt.subplots(
        1, len(metrics) * len(variants), figsize=(5.5 * len(metrics) * len(variants), 4), squeeze=False
    )
    for k, (variant, met) in enumerate((v, m) for v in variants for m in metrics):
        ax = axes[0][k]
        x = np.arange(len(bases) + 1)
        for j, grp in enumerate(("base", "post")):
            d = detail.filter((pl.col("variant") == variant) & (pl.col("group") == grp))
            vals = [d.filter(pl.col("base") == b)[met].mean() for b in bases] + [d[met].mean()]
            vals = [np.nan if v is None else float(v) for v in vals]
            ax.bar(x + (j - 0.5) * 0.38, vals, 0.38, label=grp)
        ax.set_xticks(x, [b[:24] for b in bases] + ["all"], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{met} ({variant})")
        ax.legend()
    fig.suptitle("Post-training: base vs post-trained sources (mean over targets)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- Instruction Induction


def _ii(tables: Path, tasks: pl.DataFrame, plots: Path) -> str:
    summary = read_frame(tables, "consistency_summary")
    md = []
    if summary is not None and summary.height:
        s = summary.filter(pl.col("variant") == "full") if "full" in summary["variant"].to_list() else summary
        idx = {(r["setting"], r["metric"]): r["mean"] for r in s.iter_rows(named=True)}
        settings = sorted({r["setting"] for r in s.iter_rows(named=True)}, key=lambda t: -(idx.get((t, "paper")) or -1))
        md.append(
            "Settings by the study's ranking (full text):\n\n"
            + md_table(
                ["setting", "paper (21 'tasks')", "corrected (20 tasks)"],
                [[t, fmt(idx.get((t, "paper"))), fmt(idx.get((t, "corrected")))] for t in settings],
            )
        )
    p = _plot_ii_tasks(tasks, plots / "ii_tasks.png")
    md.append(f"Per task (mean over target pairs):\n\n![II tasks](plots/{p.name})")
    return "\n\n".join(md)


def _plot_ii_tasks(tasks: pl.DataFrame, path: Path) -> Path:
    plt = pyplot()
    t = tasks.filter(pl.col("variant") == "full") if "full" in tasks["variant"].to_list() else tasks
    m = t.group_by("setting", "task").agg(pl.col("task_score").mean())
    settings = sorted(m["setting"].unique().to_list(), key=setting_key)
    names = sorted(m["task"].unique().to_list())
    mat = np.full((len(settings), len(names)), np.nan)
    si, ti = {s: i for i, s in enumerate(settings)}, {n: j for j, n in enumerate(names)}
    for s, n, v in m.iter_rows():
        mat[si[s], ti[n]] = v
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(names) + 3), 0.4 * len(settings) + 2.5))
    im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(settings)), settings, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02, label="BERTScore F1")
    ax.set_title("Instruction Induction: task score by setting (mean over target pairs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- ratings


def _p(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.2g}" if x < 0.001 else f"{x:.3f}"


def _ratings(tables: Path, tests: pl.DataFrame, plots: Path) -> str:
    md = [
        "`paper`: the study's unpaired Student t-test on all pooled ratings, Cohen's d with the pooled SD, "
        "Bonferroni over its 24 tests; it treats the four sources one participant rated on one item as "
        "independent.  `paired`: matched on (participant, item); Wilcoxon signed-rank (t = W, d = d_z) for "
        "ratings, Friedman's test (t = chi², row `all`) then signed-rank tests for the Best Overall ranks; "
        "Bonferroni over the paired rows.  Best Overall is a rank: lower is better."
    ]
    for method in tests["method"].unique(maintain_order=True).to_list():
        t = tests.filter(pl.col("method") == method)
        md.append(
            f"**method = {method}**\n\n"
            + md_table(
                ["criterion", "model1", "model2", "n1", "n2", "t", "p", "d", "p (Bonferroni)"],
                [
                    [
                        r["criterion"],
                        r["model1"],
                        r["model2"],
                        str(r["n1"]),
                        str(r["n2"]),
                        fmt(r["t"]),
                        _p(r["p"]),
                        fmt(r["d"]),
                        _p(r["p_bonferroni"]),
                    ]
                    for r in t.iter_rows(named=True)
                ],
            )
        )
    src = read_frame(tables, "ratings_sources")
    if src is not None and src.height:
        p = _plot_rating_means(src, plots / "ratings_means.png")
        md.append(
            "Mean per source (95 % bootstrap CI over participants):\n\n"
            + md_table(
                ["criterion", "source", "mean [95 % CI]", "ratings", "participants", "consistency"],
                [
                    [
                        r["criterion"],
                        r["source"],
                        f"{fmt(r['mean'], 2)} [{fmt(r['ci_low'], 2)}, {fmt(r['ci_high'], 2)}]",
                        str(r["n_ratings"]),
                        str(r["n_participants"]),
                        fmt(r["consistency"]),
                    ]
                    for r in src.iter_rows(named=True)
                ],
            )
        )
        md.append(f"![Ratings by source](plots/{p.name})")
        if src["consistency"].drop_nulls().len():
            p = _plot_rating_vs_consistency(src, plots / "ratings_vs_consistency.png")
            md.append(f"![Mean rating vs consistency](plots/{p.name})")
    corr = read_frame(tables, "ratings_correlation")
    if corr is not None and corr.height:
        md.append(
            "Consistency vs mean preference across sources (ranks negated so higher = preferred; "
            "95 % bootstrap CI over participants):\n\n"
            + md_table(
                ["criterion", "sources", "Pearson [CI]", "Spearman [CI]"],
                [
                    [
                        r["criterion"],
                        str(r["n_sources"]),
                        f"{fmt(r['pearson'])} [{fmt(r['pearson_ci_low'])}, {fmt(r['pearson_ci_high'])}]",
                        f"{fmt(r['spearman'])} [{fmt(r['spearman_ci_low'])}, {fmt(r['spearman_ci_high'])}]",
                    ]
                    for r in corr.iter_rows(named=True)
                ],
            )
        )
        warns = sorted({w for w in corr["warning"].to_list() if w})
        if warns:
            md.append("**Warning:** the correlation " + "; ".join(warns) + ".")
    return "\n\n".join(md)


def _plot_rating_means(src: pl.DataFrame, path: Path) -> Path:
    plt = pyplot()
    crits = src["criterion"].unique(maintain_order=True).to_list()
    sources = src["source"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, len(crits), figsize=(3.6 * len(crits), 3.8), squeeze=False)
    for ax, c in zip(axes[0], crits):
        s = {r["source"]: r for r in src.filter(pl.col("criterion") == c).iter_rows(named=True)}
        m = np.array([s[x]["mean"] if x in s else np.nan for x in sources], dtype=float)
        lo = np.array([s[x]["ci_low"] if x in s else np.nan for x in sources], dtype=float)
        hi = np.array([s[x]["ci_high"] if x in s else np.nan for x in sources], dtype=float)
        err = np.where(np.isfinite([m - lo, hi - m]), np.clip([m - lo, hi - m], 0, None), 0)
        ax.bar(
            range(len(sources)),
            m,
            yerr=err,
            capsize=3,
            color=["#FFB366", "#6BB6FF", "#66D9A3", "#B366FF"][: len(sources)],
        )
        ax.set_xticks(range(len(sources)), sources, rotation=35, ha="right", fontsize=8)
        ax.set_title(c + (" (rank, lower = better)" if c == "Best Overall" else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_rating_vs_consistency(src: pl.DataFrame, path: Path) -> Path:
    plt = pyplot()
    crits = src["criterion"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, len(crits), figsize=(3.6 * len(crits), 3.6), squeeze=False)
    for ax, c in zip(axes[0], crits):
        s = src.filter((pl.col("criterion") == c) & pl.col("consistency").is_not_null())
        x, y = s["consistency"].to_numpy(), s["mean"].to_numpy()
        yerr = np.clip(np.vstack([y - s["ci_low"].to_numpy(), s["ci_high"].to_numpy() - y]), 0, None)
        ax.errorbar(x, y, yerr=yerr, fmt="o", capsize=3)
        for xi, yi, name in zip(x, y, s["source"].to_list()):
            ax.annotate(name, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("consistency")
        ax.set_title(c, fontsize=9)
    fig.suptitle(f"Mean rating vs consistency ({src['source'].n_unique()} sources only)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
