"""Report section for the sentence-level ensemble, from ``<run_dir>/ensemble_candidates.arrow``.

Shows, per ensemble: the share of selected sentences written by each generator,
the number of steps per problem and why problems stopped, and a histogram of the
candidates' mean scores (winners vs the rest) saved as ``plots/ensemble_scores.png``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional


def ensemble_section(run_dir: Path, stop_reasons: Optional[dict] = None) -> Optional[tuple[str, str]]:
    """(title, markdown) of the ensemble section, or None when the run has no ensemble table.

    ``stop_reasons``: {source: {problem_id: reason}} from the ensemble artifacts' provenance
    (covers problems stopped by the thought budget, which have no winner row for it).
    """
    import polars as pl

    from pipeline.report.writer import slug
    from pipeline.store.artifacts import read_table

    path = Path(run_dir) / "ensemble_candidates.arrow"
    if not path.is_file():
        return None
    df = pl.from_arrow(read_table(path).drop(["scores"]))
    if df.height == 0:
        return ("Sentence-level ensemble", "The ensemble produced no candidates.")
    md: list[str] = [
        "Each step, every generator proposes candidate next sentences; the evaluators score each "
        "candidate by the mean negative log-likelihood of its own tokens after the CoT so far (in the "
        "evaluator's own format); the lowest mean score is appended. Table: `ensemble_candidates.arrow`."
    ]
    for src in df["source"].unique(maintain_order=True).to_list():
        d = df.filter(pl.col("source") == src)
        win = d.filter(pl.col("winner"))
        md.append(f"### Ensemble {src}")
        share = win.group_by("generator").len().sort("generator")
        tot = max(1, win.height)
        gens = d["generator"].unique(maintain_order=True).to_list()
        dropped = pl.col("generator_error").is_not_null() if "generator_error" in d.columns else pl.lit(False)
        lines = [
            "| generator | selected sentences | share | candidates proposed | valid | duplicates | steps dropped out |",
            "|---|---|---|---|---|---|---|",
        ]
        for g in gens:
            n = share.filter(pl.col("generator") == g)["len"].sum()
            dg = d.filter(pl.col("generator") == g)
            out = dg.filter(dropped)
            lines.append(
                f"| {g} | {n} | {n / tot:.1%} | {dg.height - out.height} | {dg['valid'].sum()} | "
                f"{dg['duplicate'].sum()} | {out.height} |"
            )
        md.append("\n".join(lines))
        n_out = d.filter(dropped).height
        if n_out:  # loud: a generator whose context overflowed sat out those steps
            first = d.filter(dropped)["generator_error"][0]
            md.append(
                f"**{n_out} generator step(s) dropped out** (the generator's context overflowed; the "
                f"other generators' candidates were scored): first reason: {first}"
            )
        steps = win.group_by("problem_id").len()["len"]
        probs = d["problem_id"].n_unique()
        md.append(
            f"Steps per problem (selected sentences): mean {steps.mean():.1f}, min {steps.min()}, "
            f"max {steps.max()} over {probs} problems."
        )
        if stop_reasons and src in stop_reasons:
            counts: dict[str, int] = {}
            for r in stop_reasons[src].values():
                counts[str(r)] = counts.get(str(r), 0) + 1
            md.append(
                "Why problems stopped: "
                + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                + " (closed: the selected sentence closed the thinking; budget: thought budget reached; "
                "max_steps: step cap)."
            )
        else:
            reasons = win.filter(pl.col("stop_reason").is_not_null()).group_by("stop_reason").len().sort("stop_reason")
            if reasons.height:
                md.append(
                    "Stop reasons (problems that stopped on a selected sentence): "
                    + ", ".join(f"{r['stop_reason']} {r['len']}" for r in reasons.iter_rows(named=True))
                    + "."
                )
        png = _histogram(d, Path(run_dir) / "plots" / f"ensemble_scores_{slug(src)}.png", src)
        if png is not None:
            md.append(f"![Candidate scores, {src}](plots/{png.name})")
    return ("Sentence-level ensemble", "\n\n".join(md))


def _histogram(d, path: Path, src: str) -> Optional[Path]:
    import polars as pl

    from pipeline.report.writer import pyplot

    scored = d.filter(pl.col("valid") & ~pl.col("duplicate") & pl.col("mean_score").is_not_null())
    vals = [v for v in scored["mean_score"].to_list() if v is not None and math.isfinite(v)]
    if not vals:
        return None
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    win = [v for v, w in zip(scored["mean_score"].to_list(), scored["winner"].to_list()) if w and math.isfinite(v)]
    rest = [v for v, w in zip(scored["mean_score"].to_list(), scored["winner"].to_list()) if not w and math.isfinite(v)]
    bins = 20
    ax.hist([rest, win], bins=bins, stacked=True, label=["not selected", "selected"], color=["#bbbbbb", "#1f77b4"])
    ax.set_xlabel("mean score (mean NLL over evaluators; lower = less surprising)")
    ax.set_ylabel("candidates")
    ax.set_title(f"Ensemble {src}: candidate scores", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
