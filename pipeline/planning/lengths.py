"""CoT length distributions for the planner: the study's released lengths, or lengths measured in a run.

The planner's simulation (:mod:`pipeline.planning.tails`) replays one CoT length per
generated CoT.  Where they come from, best first:

1. **measured** — ``cot_tokens`` of the CoTs a previous run generated
   (:func:`measured_lengths` reads a run folder's store), per source model;
2. **released** — the reference study's MedCalc generations
   (``../shared/data/genex-medcalc-outputs``, field ``LLM Thinking``, about 4
   characters per token, :func:`released_lengths`), for the models it covers;
3. **shape** — for any other model: the released lengths of all models, each
   divided by its model's mean (the shape of a reasoning tail), scaled to the
   plan's expected CoT length (``thought_fill x thought_budget``).

Every length is capped at the thought budget (the engine stops there).
"""

from __future__ import annotations

import glob
import json
import os
import random
import statistics
from pathlib import Path
from typing import Optional

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "genex-medcalc-outputs"
CHARS_PER_TOKEN = 4


def _model_ids() -> dict[str, str]:
    """Short name -> model id as written in the released file names (``Qwen_QwQ-32B``)."""
    from pipeline.importers.genex_medcalc import MODEL_SHORT

    return {short: mid for mid, short in MODEL_SHORT.items()}


def released_lengths(model: str, data_dir: "Path | str" = DATA) -> list[int]:
    """CoT lengths (tokens ~ characters / 4) of one model's released Default CoTs ([] if none).

    ``model`` is a short name (``QwQ``) or a released model id (``Qwen_QwQ-32B``).
    """
    mid = _model_ids().get(model, model)
    f = Path(data_dir) / f"{mid}_zero_shot_original.jsonl"
    if not f.is_file():
        return []
    out = []
    for line in f.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            text = r.get("LLM Thinking") or r.get("LLM Raw Thinking") or ""
            if text:
                out.append(max(1, len(text) // CHARS_PER_TOKEN))
    return out


def tail_shape(data_dir: "Path | str" = DATA) -> list[float]:
    """Released lengths of every model, each over its model's mean (mean 1 per model)."""
    shape: list[float] = []
    for short in _model_ids():
        ls = released_lengths(short, data_dir)
        if ls:
            m = statistics.fmean(ls)
            shape += [x / m for x in ls]
    if not shape:
        raise FileNotFoundError(
            f"no released CoT lengths under {data_dir} (expected e.g. "
            "Qwen_QwQ-32B_zero_shot_original.jsonl from ../shared/data/genex-medcalc-outputs)"
        )
    return shape


def measured_lengths(run_dir: str) -> dict[str, list[int]]:
    """``cot_tokens`` per source model of the generated CoTs in a run folder (or its store)."""
    from pipeline.store.artifacts import read_table

    store = os.path.join(run_dir, "store") if os.path.isdir(os.path.join(run_dir, "store")) else run_dir
    out: dict[str, list[int]] = {}
    files = sorted(glob.glob(os.path.join(store, "generate-*.arrow")))
    for f in files:
        t = read_table(f)  # a damaged file: one line naming it (CorruptArtifact)
        if not {"source", "cot_tokens", "method"} <= set(t.column_names):
            continue
        for src, method, n in zip(t["source"].to_pylist(), t["method"].to_pylist(), t["cot_tokens"].to_pylist()):
            if method != "empty" and n is not None:
                out.setdefault(str(src), []).append(int(n))
    if not out:
        raise FileNotFoundError(
            f"no generated CoTs with cot_tokens in {store} (generate-*.arrow); pass a run folder of a finished run"
        )
    return out


def cot_lengths(
    model: str,
    n: int,
    budget: int,
    fill: float,
    *,
    seed: int = 0,
    data_dir: "Path | str" = DATA,
    measured: Optional[dict[str, list[int]]] = None,
) -> tuple[list[int], str]:
    """``n`` CoT lengths for ``model`` and where they come from (``measured``, ``released``, ``shape``)."""
    rng = random.Random(f"{seed}:{model}")
    budget = max(1, int(budget))
    pool: list[float]
    if measured and measured.get(model):
        pool, src = [float(x) for x in measured[model]], "measured"
    elif released_lengths(model, data_dir):
        pool, src = [float(x) for x in released_lengths(model, data_dir)], "released"
    else:
        shape = tail_shape(data_dir)
        pool, src = [x * fill * budget for x in shape], "shape"
    if n == len(pool):  # the whole sample, in a shuffled order
        picks = pool[:]
        rng.shuffle(picks)
    else:
        picks = [rng.choice(pool) for _ in range(n)]
    return [min(budget, max(1, round(x))) for x in picks], src
