"""An in-process :class:`~pipeline.engine.protocol.Pool` over engine objects: benches, the LLM-filter tests, the fake pool.

No Ray, no placement: every engine is resident.  ``op`` awaits the engine's coroutine in the
caller's event loop (a :class:`pipeline.engine.vllm_engine.ModelEngine` steps on its own
thread, so items still batch); ``call`` runs a plain method, or a coroutine to its end.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Iterable, Optional


class LocalPool:
    """``{name: engine}`` as a pool (see :class:`pipeline.engine.protocol.Pool`)."""

    def __init__(self, engines: dict[str, Any], max_engines: Optional[int] = None):
        self.engines = engines
        self.max_engines = max_engines  # ray.max_concurrent_engines: waves of at most this many models
        self.where: dict[str, dict] = {}
        self.waves: list[dict] = []
        self.actors: dict[str, Any] = {}

    def _engine(self, name: str) -> Any:
        try:
            return self.engines[name]
        except KeyError:
            raise RuntimeError(f"no engine named {name!r} in this pool; have {sorted(self.engines)}") from None

    async def op(self, name: str, method: str, *args: Any) -> Any:
        res = getattr(self._engine(name), method)(*args)
        return (await res) if inspect.isawaitable(res) else res

    def call(self, name: str, method: str, *args: Any) -> Any:
        res = getattr(self._engine(name), method)(*args)
        if inspect.isawaitable(res):
            return asyncio.run(_awaited(res))
        return res

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


async def _awaited(aw: Any) -> Any:
    return await aw
