"""Static checks that every engine and pool implements its protocol (read by mypy, never imported).

``make lint`` runs mypy over ``pipeline/engine`` and ``pipeline/stages``; the functions below only
type-check when each class matches :class:`pipeline.engine.protocol.Engine` / ``Pool`` method by
method (argument and result types included).  A new engine or pool adds its line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.engine.fake import FakeEngine, FakePool
    from pipeline.engine.local import LocalPool
    from pipeline.engine.protocol import Engine, Pool
    from pipeline.engine.ray_pool import EnginePool
    from pipeline.engine.vllm_engine import ModelEngine

    def _model_engine(e: ModelEngine) -> Engine:
        return e

    def _fake_engine(e: FakeEngine) -> Engine:
        return e

    def _ray_pool(p: EnginePool) -> Pool:
        return p

    def _local_pool(p: LocalPool) -> Pool:
        return p

    def _fake_pool(p: FakePool) -> Pool:
        return p
