"""Every pool, engine, dataset and stage implements its protocol (no capability probes needed)."""

from __future__ import annotations

import inspect

import pytest

from pipeline.config import compose
from pipeline.datasets import DATASETS, get_dataset
from pipeline.datasets.protocol import Dataset
from pipeline.engine.fake import FakeEngine, FakePool
from pipeline.engine.local import LocalPool
from pipeline.engine.protocol import Engine, Pool
from pipeline.stages import STAGES
from pipeline.stages.dag import ENGINE_STAGES
from pipeline.stages.protocol import Stage, StreamStage


def _protocol_methods(proto: type) -> set[str]:
    return {n for n, v in vars(proto).items() if inspect.isfunction(v) and not n.startswith("_")}


@pytest.fixture(scope="module")
def cfg():
    return compose(["experiment=demo_tiny"])


def test_pools_are_pools(cfg):
    from pipeline.engine.ray_pool import EnginePool  # constructing it starts nothing (Ray starts on first use)

    for pool in (FakePool(cfg), LocalPool({}), EnginePool(cfg)):
        assert isinstance(pool, Pool), type(pool).__name__


def test_engines_are_engines(cfg):
    from pipeline.engine.vllm_engine import ModelEngine  # the class only: building one loads a model

    assert isinstance(FakeEngine(cfg.model("tiny-think")), Engine)
    missing = _protocol_methods(Engine) - {n for n in dir(ModelEngine) if callable(getattr(ModelEngine, n))}
    assert not missing
    # Item operations are coroutines on both engines (the streaming contract).
    for op in ("generate", "think", "answer", "complete", "propose", "score_texts"):
        assert inspect.iscoroutinefunction(getattr(ModelEngine, op)), op
        assert inspect.iscoroutinefunction(getattr(FakeEngine, op)), op


def test_requests_name_their_engine_method(cfg):
    """Every request runs its own engine method (no dispatch by name): each one reaches the fake engine."""
    import asyncio

    from pipeline.engine import protocol as P

    eng = FakeEngine(cfg.model("tiny-think"))
    s = P.Sampling(0.5, 1.0, -1, seed=3)
    reqs = [
        P.ThinkRequest("What is 1 + 2?", s, 16),
        P.AnswerRequest("What is 1 + 2?", "", s, 8),
        P.GenerateRequest("What is 1 + 2?", s, 16, 8),
        P.CompleteRequest(8, text="x"),
        P.ProposeRequest("q", "", 2, 8, s),
        P.ScoreRequest("q", "", ["a"], [False]),
    ]
    want = [P.ThinkResult, P.AnswerResult, P.GenerateResult, P.Completion, P.Proposal, list]
    pool = LocalPool({"m": eng})
    for r, t in zip(reqs, want):
        assert isinstance(asyncio.run(pool.op("m", r)), t), type(r).__name__
    assert [op for op, _ in eng.calls] == ["think", "answer", "think", "answer", "complete", "propose", "score_texts"]
    assert pool.call("m", P.InfoQuery())["name"] == "tiny-think"
    assert P.in_flight_bound(0, 8) == 16 and P.in_flight_bound(5, 8) == 5


@pytest.mark.parametrize("name", DATASETS.names())
def test_datasets_are_datasets(name):
    assert isinstance(get_dataset(name), Dataset)


@pytest.mark.parametrize("name", STAGES.names())
def test_stages_are_stages(name):
    cls = STAGES.get(name)
    assert cls.name == name and isinstance(cls.version, str) and isinstance(tuple(cls.requires), tuple)
    # Engine stages stream item by item; the others need every row first.
    proto = StreamStage if name in ENGINE_STAGES else Stage
    assert _protocol_methods(proto) <= set(dir(cls))
    assert isinstance(tuple(getattr(cls, "consumes", ())), tuple)
