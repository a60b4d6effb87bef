"""Post-training (RL) comparison: do a model's CoTs generalize better after GRPO than before?

Input: a ``scored`` table holding, for each (base, post-trained) source pair,
the source's own run (method ``default``, target = source) and its CoTs
transferred to target models (method ``transfer``), as imported from the
study's ``genex-medcalc-rl`` folder by :mod:`pipeline.importers.genex_medcalc`.

Per transfer (source → target, variant), as the study computes it:

* ``accuracy`` — share correct over the rows that have a target result (a
  failed target generation, an ``error`` row, is left out of this figure);
* ``source_agreement`` — the study's rule (its notebook
  ``consistency-transfer-thoughts.ipynb``): the source's own answer is read
  from the source's *first transfer file in sorted file-name order* (its
  ``LLM Answer``/``Result`` there, kept by the importer in
  ``source_answers.arrow``; a live run has no such file and uses the source's
  Default answer), rows pair by position (problem id: the released files share
  one row order), a pair is dropped when either answer holds one of the four
  error phrases, a row without a target answer is kept as ``""`` (it
  disagrees), and two answers agree when the strings are equal or both are
  "Correct".  This gives the study's .226 → .438.
* ``source_agreement_project`` — the project's cleaner rule: the target's
  answer against the source's own answer (its Default answer on the same
  problem) under the ``paper`` consistency rule and its drop rule
  (:func:`pipeline.scoring.consistency.paper_metric`), over the rows that have
  a target result (.231 → .447).

A group (``base`` or ``post``) averages each metric (a plain mean) over every
source → target transfer of its sources (``n_transfers``).  ``post_training_detail`` keeps the
per-transfer figures, ``post_training_sources`` the share of empty CoTs per
source: a source whose CoTs are empty ("No Thoughts") hands its targets the
same input as any other empty source, so its transfer figures say nothing
about its reasoning (the study's Qwen-GRPO confound).
"""

from __future__ import annotations

from typing import Optional

import polars as pl

from pipeline.scoring.consistency import OWN, PAPER_DROP, get_metric, rl_matrices

# CoT texts that mean "no reasoning was transferred".
EMPTY_COTS = ("", "No Thoughts")

SUMMARY_SCHEMA = {
    "variant": pl.String,
    "group": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "n_transfers": pl.Int64,
}
DETAIL_SCHEMA = {
    "variant": pl.String,
    "group": pl.String,
    "base": pl.String,
    "source": pl.String,
    "target": pl.String,
    "accuracy": pl.Float64,
    "n_answered": pl.Int64,
    "source_agreement": pl.Float64,
    "n_compared": pl.Int64,
    "source_agreement_project": pl.Float64,
    "n_compared_project": pl.Int64,
}
METRICS = ("accuracy", "source_agreement", "source_agreement_project")
SOURCES_SCHEMA = {
    "group": pl.String,
    "base": pl.String,
    "source": pl.String,
    "n_cots": pl.Int64,
    "empty_cot_share": pl.Float64,
}


class PostTrainingError(ValueError):
    """The pairs cannot be parsed or name sources the run does not hold; the message says how to fix it."""


def parse_pairs(spec: str | list[str]) -> list[tuple[str, str]]:
    """``"base=post,base2=post2"`` (or a list of ``base=post``) → ``[(base, post), ...]``."""
    parts = [p for s in ([spec] if isinstance(spec, str) else spec) for p in s.split(",")]
    pairs = []
    for p in (p.strip() for p in parts):
        if not p:
            continue
        base, sep, post = p.partition("=")
        if not sep or not base.strip() or not post.strip():
            raise PostTrainingError(
                f"post-training pair {p!r} is not BASE=POST; write e.g. "
                "Qwen_Qwen2.5-1.5B-Instruct=_disk_u_koyena_medcalc-qwen-2.5-1.5b-inst-grpo"
            )
        pairs.append((base.strip(), post.strip()))
    if not pairs:
        raise PostTrainingError("no post-training pairs given; pass BASE=POST[,BASE=POST...]")
    return pairs


def resolve_pairs(pairs: list[tuple[str, str]], sources: list[str]) -> list[tuple[str, str]]:
    """Map each name (short name or the study's file-name id) to a transfer source of the run."""
    from pipeline.importers.genex_medcalc import short_name

    known = set(sources)
    out = []
    for base, post in pairs:
        names = []
        for n in (base, post):
            s = n if n in known else short_name(n)
            if s not in known:
                raise PostTrainingError(
                    f"post-training model {n!r} is not a transfer source of this run; "
                    f"use one of {sorted(known)} (short name or file-name id)"
                )
            names.append(s)
        if names[0] == names[1]:
            raise PostTrainingError(
                f"post-training pair {base}={post} names one model twice; pair a base with its post-trained model"
            )
        out.append((names[0], names[1]))
    return out


def transfer_sources(scored: pl.DataFrame) -> list[str]:
    return sorted(scored.filter(pl.col("method") == "transfer")["source"].unique().to_list())


def _study_source_answers(scored: pl.DataFrame, source_answers: Optional[pl.DataFrame]) -> dict:
    """(source, variant) -> {problem_id: (answer, result)}: the source's own answers the study compares with."""
    out: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    if source_answers is not None and source_answers.height:
        first = source_answers.group_by("source", "variant").agg(pl.col("file").min())
        rows = source_answers.join(first, on=["source", "variant", "file"])
        for r in rows.iter_rows(named=True):
            out.setdefault((r["source"], r["variant"]), {})[r["problem_id"]] = (
                r["source_answer"] or "",
                r["source_result"] or "",
            )
        return out
    own = scored.filter((pl.col("method") == "default") & (pl.col("target") == pl.col("source")))
    for r in own.iter_rows(named=True):
        for v in ("full", "without_answer"):
            out.setdefault((r["source"], v), {})[r["problem_id"]] = (
                r["answer"] or "",
                "Correct" if r["correct"] else "Incorrect",
            )
    return out


def _study_agreement(src: dict[str, tuple[str, str]], target_rows: pl.DataFrame) -> tuple[float, int]:
    agree = n = 0
    for r in target_rows.iter_rows(named=True):
        if r["problem_id"] not in src:
            continue
        sa, sr = src[r["problem_id"]]
        ta = "" if r["answer"] is None else r["answer"]
        if any(p in sa or p in ta for p in PAPER_DROP):
            continue
        n += 1
        agree += sa == ta or (sr == "Correct" and bool(r["correct"]) and r["error"] is None)
    return (agree / n if n else float("nan")), n


def post_training_tables(
    scored: pl.DataFrame, pairs: list[tuple[str, str]], source_answers: Optional[pl.DataFrame] = None
) -> dict[str, pl.DataFrame]:
    """``post_training`` (group means), ``post_training_detail`` and ``post_training_sources``.

    ``pairs`` are (base, post) names as given by the user; they are resolved
    against the run's transfer sources first.  ``source_answers`` is an
    import's ``source_answers.arrow`` (the source's fields in each transfer
    file), which the study's ``source_agreement`` reads; without it the
    source's Default answers stand in.
    """
    pairs = resolve_pairs(pairs, transfer_sources(scored))
    group_of = {}
    base_of = {}
    for base, post in pairs:
        for src, grp in ((base, "base"), (post, "post")):
            if src in group_of and group_of[src] != grp:
                raise PostTrainingError(f"{src!r} is named both as a base and as a post-trained model")
            group_of[src], base_of[src] = grp, base
    sel = scored.filter(pl.col("source").is_in(list(group_of)) & pl.col("method").is_in(["transfer", "default"]))
    # Only rows that have a target result count, for both figures (the study's rule).
    answered = sel.filter(pl.col("error").is_null())
    paper = get_metric("paper")
    study_src = _study_source_answers(sel, source_answers)
    transfers = sel.filter(pl.col("method") == "transfer")
    detail = []
    for source, variant, m in rl_matrices(answered):
        own = m.targets.index(f"{source} {OWN}")
        for j, t in enumerate(m.targets):
            if j == own:
                continue
            pres = m.present[:, j]
            agree, valid = paper(m, own, j)
            n_ans, n_cmp = int(pres.sum()), int(valid.sum())
            rows = transfers.filter(
                (pl.col("source") == source) & (pl.col("variant") == variant) & (pl.col("target") == t)
            )
            study, n_study = _study_agreement(study_src.get((source, variant), {}), rows)
            detail.append(
                {
                    "variant": variant,
                    "group": group_of[source],
                    "base": base_of[source],
                    "source": source,
                    "target": t,
                    "accuracy": float(m.correct[pres, j].mean()) if n_ans else float("nan"),
                    "n_answered": n_ans,
                    "source_agreement": study,
                    "n_compared": n_study,
                    "source_agreement_project": float(agree.sum() / n_cmp) if n_cmp else float("nan"),
                    "n_compared_project": n_cmp,
                }
            )
    missing = sorted(set(group_of) - {d["source"] for d in detail})
    if missing:
        raise PostTrainingError(
            f"no transfers with the source's own (Default) answers for {missing}; import the source's "
            "`_zero_shot_original` file together with its `_thoughts_to_` files"
        )
    det = pl.DataFrame(detail, schema=DETAIL_SCHEMA).sort("variant", "group", "base", "source", "target")
    summary = (
        det.unpivot(index=["variant", "group"], on=list(METRICS), variable_name="metric")
        .drop_nans("value")
        .group_by("variant", "group", "metric")
        .agg(pl.col("value").mean(), pl.len().cast(pl.Int64).alias("n_transfers"))
        .select(list(SUMMARY_SCHEMA))
        .cast(SUMMARY_SCHEMA)  # type: ignore[arg-type]
        .sort("variant", "metric", "group")
    )
    tr = sel.filter(pl.col("method") == "transfer")
    sources = (
        tr.group_by("source")
        .agg(
            pl.len().cast(pl.Int64).alias("n_cots"),
            pl.col("cot").fill_null("").str.strip_chars().is_in(list(EMPTY_COTS)).mean().alias("empty_cot_share"),
        )
        .with_columns(
            pl.col("source").replace_strict(group_of).alias("group"),
            pl.col("source").replace_strict(base_of).alias("base"),
        )
        .select(list(SOURCES_SCHEMA))
        .sort("base", "group")
    )
    return {"post_training": summary, "post_training_detail": det, "post_training_sources": sources}


def confounds(sources: pl.DataFrame, threshold: float = 0.5) -> list[str]:
    """Plain-language warnings for sources whose CoTs are (mostly) empty."""
    out = []
    by_base: dict[str, dict[str, float]] = {}
    for r in sources.iter_rows(named=True):
        by_base.setdefault(r["base"], {})[r["group"]] = r["empty_cot_share"]
        if r["empty_cot_share"] > threshold:
            out.append(
                f"{r['source']} ({r['group']}): {100 * r['empty_cot_share']:.0f} % of its transferred CoTs are empty "
                '(blank or "No Thoughts"), so its targets answered without its reasoning.'
            )
    for base, g in sorted(by_base.items()):
        if g.get("base", 0) > threshold and g.get("post", 0) > threshold:
            out.append(
                f"Both {base} and its post-trained model transfer empty CoTs: their targets saw the same input, so "
                "the base → post change for this pair measures no change in reasoning."
            )
    return out
