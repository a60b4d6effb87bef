"""``bench replay --quick`` sizes its work from this machine's calibrated speed."""

from __future__ import annotations

import json

from pipeline.bench.replay import QUICK_MAX_N, QUICK_TARGET_S, quick_size
from pipeline.planning import calibrate


def _calibrate(tmp_path, monkeypatch, decode_tps: float) -> None:
    monkeypatch.setenv("CROSSCOT_CACHE", str(tmp_path))
    p = calibrate.cache_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(
        json.dumps(
            {
                "rows": {
                    "SmolLM2": {"decode_tps": decode_tps, "prefill_tps": 500.0, "single_decode_tps": 5.0, "batch": 32}
                },
                "load_s": {"SmolLM2": 30.0},
                "cpus": 2,
            }
        )
    )


def test_a_fast_machine_gets_the_full_quick_run(tmp_path, monkeypatch):
    _calibrate(tmp_path, monkeypatch, 600.0)
    q = quick_size("SmolLM2", 48.0, 32)
    assert (q.n, q.rounds) == (QUICK_MAX_N, 2) and q.estimate_s <= QUICK_TARGET_S
    assert "calibrated" in q.source


def test_a_slow_machine_gets_fewer_requests_but_at_least_two_shards(tmp_path, monkeypatch):
    # bf16 on an AVX2-only EPYC decoded 13.6 tok/s at batch 32: the 96-request run took > 25 minutes.
    _calibrate(tmp_path, monkeypatch, 60.0)
    mid = quick_size("SmolLM2", 48.0, 32)
    assert 64 <= mid.n < QUICK_MAX_N and mid.estimate_s <= QUICK_TARGET_S * 1.05
    _calibrate(tmp_path, monkeypatch, 13.6)
    slow = quick_size("SmolLM2", 48.0, 32)
    assert (slow.n, slow.rounds) == (64, 1)  # the floor: two shards, so chunked still waits for tails


def test_server_and_cache_quick_sizes_follow_the_calibration(tmp_path, monkeypatch):
    """The sizing bench server and bench cache use: fewer requests on a slower machine, never under the floor."""

    def sizes(tps: float) -> tuple[int, int, int, int]:
        _calibrate(tmp_path, monkeypatch, tps)
        server = quick_size("SmolLM2", 48.0, shard=8, round_cost=3.0, min_n=16, max_n=48, engines=2)
        cache = quick_size("SmolLM2", 144.0, shard=6, round_cost=4.0, min_n=6, max_n=12, engines=3, rounds_options=(1,))
        assert cache.rounds == 1 and server.estimate_s > 2 * 30.0  # both engine loads are counted
        return server.n, server.rounds, cache.n, cache.rounds

    assert sizes(600.0) == (48, 2, 12, 1)
    assert 16 < sizes(40.0)[0] < 48 and 6 < sizes(25.0)[2] < 12
    assert sizes(2.0) == (16, 1, 6, 1)


def test_each_engine_start_is_counted(tmp_path, monkeypatch):
    _calibrate(tmp_path, monkeypatch, 2.0)  # at the floor: the same work, so only the loads differ
    one = quick_size("SmolLM2", 144.0, shard=6, min_n=6, engines=1, rounds_options=(1,))
    three = quick_size("SmolLM2", 144.0, shard=6, min_n=6, engines=3, rounds_options=(1,))
    assert (one.n, one.rounds) == (three.n, three.rounds) == (6, 1)
    assert abs((three.estimate_s - one.estimate_s) - 2 * 30.0) < 1e-6
