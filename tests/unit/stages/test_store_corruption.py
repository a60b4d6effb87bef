"""A truncated or damaged artifact in the store is detected (Arrow magic/footer), moved aside with a
warning and recomputed: the rerun's tables are byte-identical to the first run's."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline.engine.fake import FakePool
from pipeline.stages.dag import run
from pipeline.store.artifacts import CorruptArtifact, check_arrow_file, read_table

TABLES = ("consistency_summary.csv", "accuracy.csv", "consistency_pairs.csv", "errors.csv")


def _tables(run_dir: Path) -> dict[str, bytes]:
    return {n: (run_dir / "tables" / n).read_bytes() for n in TABLES}


@pytest.mark.parametrize("stage,keep", [("generate", 0.5), ("transfer", 0.0), ("problems", 0.9)])
def test_rerun_after_a_truncated_artifact_recomputes_it_with_identical_tables(tiny_cfg, stage, keep, caplog):
    cfg = tiny_cfg()
    run(cfg, pool_factory=lambda: FakePool(cfg))
    rd = Path(cfg.run_dir)
    before = _tables(rd)
    victim = sorted((rd / "store").glob(f"{stage}-*.arrow"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: int(len(data) * keep)])  # a crash or a full disk mid-copy
    with pytest.raises(CorruptArtifact, match=victim.name):
        read_table(victim)
    pools: list[FakePool] = []

    def factory() -> FakePool:
        pools.append(FakePool(cfg))
        return pools[-1]

    with caplog.at_level(logging.WARNING, logger="crosscot"):
        run(cfg, pool_factory=factory)
    assert any("damaged" in r.getMessage() and victim.name in r.getMessage() for r in caplog.records)
    check_arrow_file(victim)  # recomputed whole
    assert victim.with_name(victim.name + ".corrupt").is_file()  # the damaged file kept for inspection
    if stage != "problems":
        assert pools and pools[0].submitted > 0, "the damaged artifact's rows were recomputed"
    assert _tables(rd) == before


def test_damaged_bytes_inside_an_arrow_file_are_one_error_naming_it(tmp_path):
    import pyarrow as pa

    from pipeline.store.artifacts import write_table

    p = write_table(tmp_path / "x.arrow", pa.table({"a": list(range(100))}))
    raw = bytearray(p.read_bytes())
    raw[:6] = b"NOTARR"
    p.write_bytes(bytes(raw))
    with pytest.raises(CorruptArtifact, match=r"x\.arrow is damaged .*delete it and rerun"):
        read_table(p)
