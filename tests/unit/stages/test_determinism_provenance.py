"""Every artifact, telemetry.json and the report say which determinism a run had (fake engines)."""

from __future__ import annotations

import json

from pipeline.engine.fake import FakePool
from pipeline.stages.dag import run
from pipeline.store.artifacts import read_provenance


def test_determinism_recorded_everywhere(tiny_cfg, monkeypatch):
    monkeypatch.setenv("CROSSCOT_DEVICE_KIND", "cuda:NVIDIA H200")  # as a GPU driver would see it
    cfg = tiny_cfg()
    ctx = run(cfg, pool_factory=lambda: FakePool(cfg))
    rd = ctx.run_dir
    arrows = sorted((rd / "store").glob("*.arrow")) + sorted(rd.glob("*.arrow"))
    assert {p.name.split("-")[0] for p in arrows} >= {"problems", "generate", "truncate", "transfer", "scored.arrow"}
    for p in arrows:
        det = read_provenance(p)["determinism"]
        assert det["effective"] == "batch_dependent" and det["device"] == "cuda:NVIDIA H200", p.name
    tel = json.loads((rd / "telemetry.json").read_text())
    assert tel["determinism"]["effective"] == "batch_dependent"
    report = (rd / "report.md").read_text()
    assert "determinism: `batch_dependent`" in report and "rows may change with batching" in report
