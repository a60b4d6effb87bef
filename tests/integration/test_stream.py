"""Streaming with real engines: rows do not depend on in-flight or flush settings, and stages overlap.

Two runs of the same tiny config (real vLLM CPU engines in Ray actors, Sampled CoT included) that
share nothing, one item in flight per engine with a checkpoint after every row against the
defaults: byte-identical artifacts (same names, i.e. `stream.*` is not in any hash) and tables.
In the default run a CoT's transfers go out while other CoTs are still being generated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.schema import TELEMETRY_COLUMNS
from pipeline.store.artifacts import read_table

REPO = Path(__file__).resolve().parents[2]
BASE = [
    "experiment=demo_tiny",
    "dataset.size=6",
    "generate.thought_budget=32",
    "generate.answer_budget=8",
    "transfer.answer_budget=8",
    "progress=false",
    "score.n_boot=50",
]


def _run(run_dir: Path, *extra: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CROSSCOT_FAULT_DELAY_S", None)
    r = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", *BASE, f"run_dir={run_dir}", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.slow
def test_stream_settings_do_not_change_rows_and_stages_overlap(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _run(a, "stream.max_in_flight=1", "stream.flush_rows=1")
    _run(b)
    names_a = sorted(p.name for p in (a / "store").glob("*.arrow"))
    assert names_a == sorted(p.name for p in (b / "store").glob("*.arrow")), "stream.* must not enter any hash"
    seen_telemetry = False
    for name in names_a:
        ta = read_table(a / "store" / name).replace_schema_metadata(None)
        tb = read_table(b / "store" / name).replace_schema_metadata(None)
        # Prefix-cache hits record how a row ran (what was cached before it), not what it is.
        tele = [c for c in TELEMETRY_COLUMNS if c in ta.column_names]
        seen_telemetry |= bool(tele)
        assert ta.drop_columns(tele).equals(tb.drop_columns(tele)), name
    assert seen_telemetry, "generate rows carry their requests' cache telemetry"
    gen_rows = [r for p in (b / "store").glob("generate-*.arrow") for r in read_table(p).to_pylist()]
    assert all(r["think_prompt_tokens"] > 0 for r in gen_rows if r["method"] != "empty" and not r["error"])
    for f in ("consistency_summary.csv", "accuracy.csv", "consistency_pairs.csv", "errors.csv"):
        assert (a / "tables" / f).read_bytes() == (b / "tables" / f).read_bytes(), f
    assert any(r["method"] == "sampled" for r in read_table(b / "answers.arrow").to_pylist())

    tel = json.loads((b / "telemetry.json").read_text())
    gen, xfer = tel["stage_models"]["generate"], tel["stage_models"]["transfer"]
    assert min(t["first_submit"] for t in xfer.values()) < max(t["last_done"] for t in gen.values()), (
        "transfer starts before generate ends"
    )
    assert 0.0 <= tel["outside_engine_share_excl_startup"] <= 1.0 and tel["engine_startup_seconds"] > 0
    # One item in flight per engine really bounded what the engines saw.
    tel_a = json.loads((a / "telemetry.json").read_text())
    assert all(e["max_in_flight"] == 1 for e in tel_a["engines"].values())
    assert max(e["max_in_flight"] for e in tel["engines"].values()) > 1
