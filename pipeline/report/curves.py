"""The partial-CoT curve: consistency and accuracy against the fraction of the CoT given.

``truncate.prefix_fractions`` makes ``prefix_<f>`` variants (the first share ``f`` of a CoT's
sentences); with ``full`` as fraction 1 and the ``Empty`` setting (no CoT) as fraction 0, each
source's curve shows how much of its CoT a target needs before it answers alike.  The points
come straight from ``tables/consistency_summary`` and ``tables/accuracy`` (the report's numbers,
with their bootstrap intervals); the viewer's Curves page and the report's plot share
:func:`prefix_curves`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl


def variant_fraction(variant: str) -> float | None:
    """1.0 for ``full``, ``f`` for ``prefix_<f>``, None for any other variant."""
    if variant == "full":
        return 1.0
    if variant.startswith("prefix_"):
        try:
            return float(variant[len("prefix_") :])
        except ValueError:
            return None
    return None


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def prefix_curves(summary: pl.DataFrame | None, acc: pl.DataFrame | None, metric: str = "paper") -> list[dict]:
    """One curve per setting that has prefix variants: ``{setting, consistency: [...], accuracy: {target: [...]}}``.

    Each point is ``{fraction, value, ci_low, ci_high}`` sorted by fraction; fraction 0 is the Empty
    setting's value when the run has it.  Empty when no setting has a ``prefix_<f>`` variant.
    """
    if summary is None or summary.height == 0:
        return []
    s = summary.filter(pl.col("metric") == metric)
    settings = sorted({r["setting"] for r in s.iter_rows(named=True) if str(r["variant"]).startswith("prefix_")})
    empty = s.filter((pl.col("setting") == "Empty") & (pl.col("variant") == "full")).to_dicts()
    acc = acc if acc is not None else pl.DataFrame()
    empty_acc = (
        acc.filter((pl.col("setting") == "Empty") & (pl.col("variant") == "full")).to_dicts() if acc.height else []
    )
    out = []
    for setting in settings:
        cons = []
        for r in s.filter(pl.col("setting") == setting).to_dicts() + [{**e, "variant": "prefix_0"} for e in empty]:
            f = variant_fraction(r["variant"])
            if f is not None:
                cons.append(
                    {
                        "fraction": f,
                        "value": _num(r["mean"]),
                        "ci_low": _num(r["ci_low"]),
                        "ci_high": _num(r["ci_high"]),
                    }
                )
        per_target: dict[str, list[dict]] = {}
        rows = acc.filter(pl.col("setting") == setting).to_dicts() if acc.height else []
        for r in rows + [{**e, "variant": "prefix_0"} for e in empty_acc]:
            f = variant_fraction(r["variant"])
            if f is not None:
                per_target.setdefault(r["target"], []).append(
                    {
                        "fraction": f,
                        "value": _num(r["accuracy"]),
                        "ci_low": _num(r["ci_low"]),
                        "ci_high": _num(r["ci_high"]),
                    }
                )
        out.append(
            {
                "setting": setting,
                "metric": metric,
                "consistency": sorted(cons, key=lambda p: p["fraction"]),
                "accuracy": {t: sorted(v, key=lambda p: p["fraction"]) for t, v in sorted(per_target.items())},
            }
        )
    return out


def plot_curves(curves: list[dict], path: Path) -> Path:
    """Consistency (left) and per-target accuracy (right) against the CoT fraction, one row per setting."""
    from pipeline.report.writer import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(len(curves), 2, figsize=(9, 3.2 * len(curves)), squeeze=False)
    for (ax_c, ax_a), c in zip(axes, curves):
        for ax, series, title in (
            (ax_c, {f"consistency ({c['metric']})": c["consistency"]}, "consistency"),
            (ax_a, c["accuracy"], "accuracy"),
        ):
            for label, pts in series.items():
                pts = [p for p in pts if p["value"] is not None]
                if not pts:
                    continue
                x = [p["fraction"] for p in pts]
                ax.plot(x, [p["value"] for p in pts], marker="o", label=label)
                lo = [p["ci_low"] if p["ci_low"] is not None else p["value"] for p in pts]
                hi = [p["ci_high"] if p["ci_high"] is not None else p["value"] for p in pts]
                ax.fill_between(x, lo, hi, alpha=0.15)
            ax.set_title(f"{c['setting']}: {title}")
            ax.set_xlabel("fraction of the CoT given")
            ax.set_ylim(-0.02, 1.02)
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def curves_markdown(curves: list[dict], plots: Path) -> str:
    """The report section: a table of the consistency points and the plot."""
    lines = [
        "Consistency and accuracy when targets get only the first share of the source's CoT sentences "
        "(`truncate.prefix_fractions`; 0 = the Empty setting, 1 = the full CoT), 95 % bootstrap intervals.",
        "",
        "| setting | fraction | consistency | 95 % CI |",
        "|---|---|---|---|",
    ]
    for c in curves:
        for p in c["consistency"]:
            v = "—" if p["value"] is None else f"{p['value']:.3f}"
            ci = "—" if p["ci_low"] is None else f"[{p['ci_low']:.3f}, {p['ci_high']:.3f}]"
            lines.append(f"| {c['setting']} | {p['fraction']:g} | {v} | {ci} |")
    p = plot_curves(curves, plots / "partial_cot_curves.png")
    lines += ["", f"![Partial-CoT curves](plots/{p.name})"]
    return "\n".join(lines)
