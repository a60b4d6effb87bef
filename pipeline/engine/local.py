"""An in-process :class:`~pipeline.engine.protocol.Pool` over engine objects: benches, the LLM-filter tests, the fake pool.

No Ray, no placement: every engine is resident.  ``op`` runs a request on its engine in the
caller's event loop (a :class:`pipeline.engine.vllm_engine.ModelEngine` steps on its own
thread, so items still batch); ``call`` runs one to its end
(blocking, outside any event loop).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Iterable, Optional

from pipeline.engine.protocol import Engine, EngineOp, T


class LocalPool:
    """``{name: engine}`` as a pool (see :class:`pipeline.engine.protocol.Pool`)."""

    def __init__(self, engines: dict[str, Engine], max_engines: Optional[int] = None):
        self.engines = engines
        self.max_engines = max_engines  # ray.max_concurrent_engines: waves of at most this many models
        self.where: dict[str, dict] = {}
        self.waves: list[dict] = []
        self.actors: dict[str, Any] = {}

    def _engine(self, name: str) -> Engine:
        try:
            return self.engines[name]
        except KeyError:
            raise RuntimeError(f"no engine named {name!r} in this pool; have {sorted(self.engines)}") from None

    async def op(self, name: str, req: EngineOp[T]) -> T:
        return await req.run(self._engine(name))

    def call(self, name: str, req: EngineOp[T]) -> T:
        return asyncio.run(_awaited(req.run(self._engine(name))))

    def schedule(self) -> Optional[Any]:
        return None

    def fits(self, names: Iterable[str]) -> bool:
        # Every engine is resident; only the configured cap shapes the waves (as in EnginePool.fits).
        return not self.max_engines or len(set(names)) <= self.max_engines

    def ensure(self, names: Iterable[str]) -> list[str]:
        return []

    def locate(self, names: Iterable[str]) -> None:
        pass

    def stats(self) -> dict[str, dict]:
        return {n: e.get_stats() for n, e in self.engines.items()}

    def placement_info(self) -> Optional[dict]:
        return None

    def stop(self, names: Optional[Iterable[str]] = None) -> None:
        pass


async def _awaited(aw: Awaitable[T]) -> T:
    return await aw
