"""A run that is still going: its answers so far, from the store's artifacts and streaming shards.

Before the ``score`` stage writes ``scored.arrow``, the answers live in the store as published
artifacts (``generate-*.arrow``, ``transfer-*.arrow``) and as the append-only shards of the
artifacts still streaming (``<artifact>.parts/*.arrow``, see :mod:`pipeline.store.sink`).  The
viewer reads both, keeps one row per answer key and judges them with the run's own judge, so a
running run can be looked at; the tables appear once ``score`` has run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl


from pipeline.schema import ANSWER_KEY, ANSWERS, conform


def store_files(run_dir: Path, prefix: str) -> list[Path]:
    """Published artifacts and streaming shards whose name starts with ``prefix``."""
    store = Path(run_dir) / "store"
    return sorted(store.glob(f"{prefix}*.arrow")) + sorted(store.glob(f"{prefix}*.parts/*.arrow"))


def read_frames(paths: list[Path]) -> list[pl.DataFrame]:
    from pipeline.store.artifacts import read_table

    out = []
    for p in paths:
        try:
            out.append(pl.from_arrow(read_table(p)))
        except Exception:  # a shard removed by the run's finish between glob and read, or a foreign file
            continue
    return out


def live_stamp(run_dir: Path) -> Any:
    """Changes whenever an answer file is added, removed or rewritten."""
    files = store_files(run_dir, "generate-") + store_files(run_dir, "transfer-")
    stamp = []
    for p in files:
        try:
            st = p.stat()
        except OSError:
            continue
        stamp.append((p.name, st.st_mtime_ns, st.st_size))
    return tuple(stamp)


def live_scored(run_dir: Path) -> pl.DataFrame:
    """The answers so far, judged (schema ``SCORED``); empty when nothing was answered yet."""
    from pipeline.scoring.judge import score_answers

    frames = read_frames(store_files(run_dir, "generate-") + store_files(run_dir, "transfer-"))
    if not frames:
        return pl.from_arrow(score_answers(ANSWERS.empty_table()))
    df = pl.concat([f.select([c for c in ANSWERS.names if c in f.columns]) for f in frames], how="diagonal_relaxed")
    df = df.unique(subset=list(ANSWER_KEY), keep="last", maintain_order=True)
    answers = conform(df.to_arrow(), ANSWERS)
    return pl.from_arrow(
        score_answers(answers, judge=_cfg(run_dir).get("judge", "ours"), checker=_cfg(run_dir).get("checker"))
    )


def _cfg(run_dir: Path) -> dict:
    p = Path(run_dir) / "config.json"
    try:
        c = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return {
        "judge": (c.get("score") or {}).get("judge", "ours"),
        "checker": ((c.get("dataset") or {}).get("options") or {}).get("checker"),
    }
