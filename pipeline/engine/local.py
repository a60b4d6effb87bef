"""An in-process :class:`~pipeline.engine.protocol.Pool` over engine objects: benches, the LLM-filter tests, the fake pool.

No Ray, no placement: every engine is resident, ``submit`` runs the call at once and returns a
ref that ``get`` resolves (raising the engine's exception again, as a Ray ref would).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional


class Ref:
    """A finished call: its value, or the exception it raised."""

    __slots__ = ("value", "error")

    def __init__(self, value: Any = None, error: Optional[BaseException] = None):
        self.value, self.error = value, error


class LocalPool:
    """``{name: engine}`` as a pool (see :class:`pipeline.engine.protocol.Pool`)."""

    def __init__(self, engines: dict[str, Any], max_engines: Optional[int] = None):
        self.engines = engines
        self.max_engines = max_engines  # ray.max_concurrent_engines: waves of at most this many models
        self.where: dict[str, dict] = {}
        self.waves: list[dict] = []
        self.actors: dict[str, Any] = {}

    def submit(self, name: str, method: str, *args: Any, **kwargs: Any) -> Ref:
        try:
            return Ref(getattr(self.engines[name], method)(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - raised again by get(), like a Ray ref
            return Ref(error=e)

    def wait(self, refs: list) -> list:
        return refs

    def get(self, ref: Ref) -> Any:
        if ref.error is not None:
            raise ref.error
        return ref.value

    def call(self, name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(self.submit(name, method, *args, **kwargs))

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
