"""Shuffle and limit live in one place (datasets.rows.select): every plug-in gets the same rule."""

from __future__ import annotations

from pipeline.config import DatasetConfig
from pipeline.datasets import get_dataset
from pipeline.datasets.rows import select


def _ids(**kw) -> list[str]:
    return (
        get_dataset("toy_arith").load(DatasetConfig(name="toy_arith", size=12, **kw)).column("problem_id").to_pylist()
    )


def test_limit_keeps_the_first_rows() -> None:
    assert _ids(limit=3) == _ids()[:3]


def test_shuffle_by_seed_then_limit() -> None:
    full = _ids()
    a = _ids(options={"shuffle": True}, seed=1)
    assert sorted(a) == sorted(full) and a != full
    assert _ids(options={"shuffle": True}, seed=1, limit=4) == a[:4]
    assert select([{"i": i} for i in range(5)], DatasetConfig(name="x", limit=2)) == [{"i": 0}, {"i": 1}]
