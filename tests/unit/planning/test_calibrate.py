"""The per-machine calibration of the CPU node table: cached rows replace the shipped ones, GPU tables untouched."""

from __future__ import annotations

import json

from pipeline.planning import calibrate
from pipeline.planning.throughput import load_node_type

ROWS = {"SmolLM2": {"decode_tps": 900.0, "prefill_tps": 5000.0, "single_decode_tps": 40.0, "tp": 1, "batch": 32}}


def test_a_cached_calibration_replaces_the_cpu_rows_only(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSCOT_CACHE", str(tmp_path))
    before = load_node_type("cpu2")
    assert calibrate.load() is None and before.throughput["SmolLM2"].source.startswith("node table")
    path = calibrate.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"rows": ROWS, "load_s": {"SmolLM2": 7.0}, "cpus": 16, "cpu": "test cpu", "when": "now"})
    )
    cpu = load_node_type("cpu2")
    t = cpu.throughput["SmolLM2"]
    assert (t.decode_tps, t.single_decode_tps, t.batch) == (900.0, 40.0, 32) and "calibrated" in t.source
    assert cpu.load_s["SmolLM2"] == 7.0 and cpu.cpus_per_node == 16
    assert cpu.throughput["Gemma3"] == before.throughput["Gemma3"]  # not measured: the shipped row stays
    h100 = load_node_type("h100x8")
    assert all(not r.source.startswith("calibrated") for r in h100.throughput.values())


def test_the_machine_id_follows_the_isa(monkeypatch):
    monkeypatch.delenv("CROSSCOT_EMULATE_ISA", raising=False)
    native = calibrate.machine_id()
    monkeypatch.setenv("CROSSCOT_EMULATE_ISA", "avx2")
    assert calibrate.machine_id() != native
