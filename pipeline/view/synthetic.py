"""A synthetic finished run of any size, for the viewer's benchmark and tests (no engines).

It writes ``scored.arrow`` (schema ``SCORED``), the problems and truncate artifacts under
``store/`` and the tables (:func:`pipeline.scoring.tables.write_tables`), laid out exactly like a
real run, with toy-arithmetic problems and answers drawn from a seeded generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.schema import COTS, PROBLEMS, SCORED
from pipeline.store.artifacts import write_table

MODELS = ("A", "B", "C", "D", "E")


def synthetic_run(run_dir: Path, rows: int = 200_000, seed: int = 0, n_boot: int = 0, tables: bool = True) -> Path:
    """Write a run of about ``rows`` answer rows into ``run_dir``; returns ``run_dir``.

    Settings: Empty, Default (variant ``full``), Sampled and Transfer <m> for every model (variants
    ``full`` and ``without_answer``); every setting has one row per (problem, target).
    """
    run_dir = Path(run_dir)
    (run_dir / "store").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    settings = [("empty", None), ("default", None), ("sampled", None)] + [("transfer", m) for m in MODELS]
    variants = ("full", "without_answer")
    groups = [(m, s, v) for m, s in settings for v in (("full",) if m in ("empty", "default") else variants)]
    n_problems = max(1, -(-rows // (len(groups) * len(MODELS))))
    pids = [f"p{i:06d}" for i in range(n_problems)]
    gold = rng.integers(10, 200, n_problems)
    cols: dict[str, list] = {f.name: [] for f in SCORED}
    for method, src, variant in groups:
        if True:
            for t in MODELS:
                source = src or t
                # Answers: right with some probability, else a nearby number.
                right = rng.random(n_problems) < 0.6
                ans = np.where(right, gold, gold + rng.integers(-3, 4, n_problems))
                cols["dataset"] += ["toy_arith"] * n_problems
                cols["problem_id"] += pids
                cols["method"] += [method] * n_problems
                cols["source"] += [source] * n_problems
                cols["variant"] += [variant] * n_problems
                cols["sample"] += [0] * n_problems
                cols["target"] += [t] * n_problems
                cols["cot"] += [f"Step one. The answer is {a}." if method != "empty" else "" for a in ans]
                cols["answer_text"] += [f"Answer: {a}" for a in ans]
                cols["answer"] += [str(a) for a in ans]
                cols["prompt_tokens"] += [40] * n_problems
                cols["answer_tokens"] += [4] * n_problems
                cols["finish_reason"] += ["stop"] * n_problems
                cols["gold"] += [json.dumps({"answer": str(g)}) for g in gold]
                cols["stored_correct"] += [None] * n_problems
                cols["error"] += [None] * n_problems
                cols["extracted"] += [str(a) for a in ans]
                cols["correct"] += [bool(a == g) for a, g in zip(ans, gold)]
                cols["judge"] += ["ours"] * n_problems
    # Cut to exactly ``rows`` (the last problems of the last setting lose some targets).
    scored = pa.Table.from_pydict(cols, schema=SCORED).slice(0, rows)
    write_table(run_dir / "scored.arrow", scored, {})
    problems = pa.Table.from_pydict(
        {
            "dataset": ["toy_arith"] * n_problems,
            "problem_id": pids,
            "prompt": [f"What is {g - 7} + 7?" for g in gold],
            "system": [None] * n_problems,
            "answer_prefix": [None] * n_problems,
            "gold": [json.dumps({"answer": str(g)}) for g in gold],
            "meta": [None] * n_problems,
        },
        schema=PROBLEMS,
    )
    write_table(run_dir / "store" / "problems-toy_arith-synthetic.arrow", problems, {})
    cots: dict[str, list] = {f.name: [] for f in COTS}
    for method in ("default", "sampled"):
        for m in MODELS:
            for variant in variants:
                for p, g in zip(pids, gold):
                    cot = f"Add seven. The answer is {g}." if variant == "full" else "Add seven."
                    for k, v in (
                        ("dataset", "toy_arith"),
                        ("problem_id", p),
                        ("method", method),
                        ("source", m),
                        ("variant", variant),
                        ("sample", 0),
                        ("cot", cot),
                        ("cot_tokens", 8),
                        ("finish_reason", "stop"),
                        ("forced_close", False),
                        ("leak", variant == "full"),
                        ("error", None),
                        ("filter", "rule" if variant != "full" else None),
                    ):
                        cots[k].append(v)
    write_table(run_dir / "store" / "truncate-cots-synthetic.arrow", pa.Table.from_pydict(cots, schema=COTS), {})
    if tables:
        from pipeline.scoring.tables import write_tables

        write_tables(scored, run_dir / "tables", n_boot=n_boot)
    return run_dir
