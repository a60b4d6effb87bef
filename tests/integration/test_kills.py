"""Random kill points with real engines (the quick form of `make faults`): a run SIGKILLed at a random
point — its driver (then rerun) or one engine actor (Ray restarts it) — finishes with no lost and no
duplicated rows and tables byte-identical to an uninterrupted run."""

from __future__ import annotations

import pytest

from pipeline.bench.kills import figures


@pytest.mark.slow
def test_random_kill_points_lose_and_duplicate_nothing(tmp_path):
    # One random driver kill (seed 4; `make faults` runs more, drivers and engines alike); engine kills
    # mid-stream are covered by tests/unit/stages/test_faults.py.
    res = figures(1, tmp_path, seed=4)
    assert res["kills"] >= 1, res["points"]  # at least one kill landed while the run was alive
    assert res["survived"] == res["kills"], res["points"]
    assert res["lost_rows"] == 0 and res["duplicated_rows"] == 0, res["points"]
    assert res["identical_tables"] == 1.0, res["points"]
