"""Flow.submit: the steps every engine item goes through (replay, failed before, deferral, once, add, emit)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.config import compose
from pipeline.engine.fake import FakePool
from pipeline.stages.context import Context
from pipeline.stages.runner import Flow
from pipeline.store.artifacts import Store
from pipeline.store.sink import RowSink

SCHEMA = pa.schema([pa.field("k", pa.string()), pa.field("v", pa.int64())])


class Sink:
    """A consumer stage that records what it is handed."""

    name, requires, version, consumes = "sink", (), "1", ("row",)

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def on_event(self, flow, kind: str, row: dict) -> None:
        self.seen.append(row)


def _flow(tmp: Path, resident: set[str]) -> tuple[Flow, Sink, RowSink]:
    cfg = compose(["experiment=demo_tiny", f"run_dir={tmp}", "progress=false"])
    ctx = Context(cfg=cfg, store=Store(tmp / "store"), run_dir=tmp, pool_factory=lambda: FakePool(cfg))
    consumer = Sink()
    return Flow(ctx, [consumer], frozenset(resident), 0.0), consumer, RowSink(tmp / "a.arrow", SCHEMA, ("k",))


def test_submit_runs_adds_emits_and_replays(tmp_path: Path) -> None:
    flow, consumer, sink = _flow(tmp_path, {"a", "b"})
    calls: list[str] = []

    async def work() -> list[dict]:
        calls.append("x")
        return [{"k": "x", "v": 1}]

    job = flow.submit("st", sink, [("x",)], ["a", "b"], work, emit="row")
    assert job is not None and not sink.done(("x",))  # nothing runs until awaited
    asyncio.run(job)
    assert calls == ["x"] and sink.get(("x",)) == {"k": "x", "v": 1} and consumer.seen == [{"k": "x", "v": 1}]
    assert flow.submit("st", sink, [("x",)], ["a", "b"], work, emit="row") is None  # done: replayed, not rerun
    assert calls == ["x"] and len(consumer.seen) == 2


def test_submit_defers_when_any_engine_is_missing(tmp_path: Path) -> None:
    flow, consumer, sink = _flow(tmp_path, {"a"})

    async def work() -> list[dict]:
        raise AssertionError("must not run")

    assert flow.submit("st", sink, [("y",)], ["a", "b", "c"], work) is None
    assert dict(flow.deferred) == {"b": 1, "c": 1}  # every missing engine counts, the resident one does not


def test_a_failed_item_is_remembered_and_skipped_later(tmp_path: Path) -> None:
    flow, consumer, sink = _flow(tmp_path, {"a"})

    async def broken() -> list[dict]:
        raise RuntimeError("engine died")

    job = flow.submit("st", sink, [("z",)], ["a"], broken, emit="row")
    with pytest.raises(RuntimeError, match="engine died"):
        asyncio.run(job)
    assert ("st", ("z",)) in flow.ctx.failed_items and not sink.done(("z",))
    assert flow.submit("st", sink, [("z",)], ["a"], broken, emit="row") is None  # not retried in this run
    assert consumer.seen == []
