"""``make gpu-check``'s CPU dry run: every figure runs on real engines and prints its summary line."""

from __future__ import annotations


def test_gpu_check_dry_run(capsys, tmp_path):
    import json

    from pipeline.bench.gpu_check import main

    assert main(["--dry-run", "--json", str(tmp_path / "g.json")]) == 0
    out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gpu-check: ")]
    kinds = [line.split()[1] for line in out if not line.startswith("gpu-check: loading")]
    assert kinds == ["step", "prefill", "cache", "determinism", "plan", "DRY"]
    res = json.loads((tmp_path / "g.json").read_text())
    assert all(v > 0 for v in res["step_s"].values()) and res["prefill_tps"] > 0
    assert res["answer_hit"] >= 0.95  # answers by token ids reuse the CoT's blocks
    # The CPU build is exact under both settings: the same tokens alone and batched with others.
    assert res["determinism"]["exact"]["identical"] == 1.0
    assert res["determinism"]["batch_dependent"]["effective"] == "batch_dependent"
