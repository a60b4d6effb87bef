"""What stages need from an engine and from a pool of engines, as explicit protocols.

Engines are continuously fed: every operation takes ONE item and is a coroutine, so
the driver keeps many items in flight per engine and each returns as it finishes
(:mod:`pipeline.engine.stream`).  Two engines implement :class:`Engine`:
:class:`pipeline.engine.vllm_engine.ModelEngine` and :class:`pipeline.engine.fake.FakeEngine`.

Three pools implement :class:`Pool`: :class:`pipeline.engine.ray_pool.EnginePool` (real
vLLM engines in Ray actors, placed by :mod:`pipeline.planning`), and the in-process
:class:`pipeline.engine.local.LocalPool` with its test double
:class:`pipeline.engine.fake.FakePool`.  Stages reach an engine only through
``await pool.op(model, method, item, *args)`` (the streaming path) or the blocking
``pool.call(model, method, *args)`` (small synchronous queries: info, stats, a template),
so the methods listed on :class:`Engine` are the whole contract between a stage and an engine.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Protocol, runtime_checkable


@runtime_checkable
class Engine(Protocol):
    """One model's engine.  Request and result dicts are documented on ModelEngine's methods."""

    async def generate(self, item: dict) -> dict: ...     # think, then answer after that CoT
    async def think(self, item: dict) -> dict: ...        # CoT under a thought budget
    async def answer(self, item: dict) -> dict: ...       # answer after a given CoT
    async def complete(self, item: dict) -> dict: ...     # raw continuation (LLM answer filter)
    async def propose(self, item: dict) -> dict: ...      # ensemble: candidate next sentences
    async def score_texts(self, item: dict, mode: str = "cached") -> list[dict]: ...  # ensemble NLLs
    def chat_template_marker(self) -> Optional[str]: ...  # rendered chat prompt around a placeholder
    def generation_prompt(self, user_prompt: str) -> str: ...
    def get_stats(self) -> dict: ...
    def info(self) -> dict: ...


@runtime_checkable
class Pool(Protocol):
    """Engines by model short name: ``await op(...)`` per item, placement, telemetry."""

    where: dict[str, dict]  # model -> where its engine runs (node, ip, pid); empty when in-process
    waves: list[dict]  # engine waves as they ran (appended by the stage runner)
    actors: dict[str, Any]  # engines currently resident (Ray actors per model; empty for in-process pools)

    async def op(self, name: str, method: str, *args: Any) -> Any: ...  # one item, awaited to its end
    def call(self, name: str, method: str, *args: Any) -> Any: ...  # blocking, for small queries

    def schedule(self) -> Optional[Any]: ...  # the planned wave Schedule, None when nothing is planned
    def fits(self, names: Iterable[str]) -> bool: ...  # can these engines be resident together?
    def ensure(self, names: Iterable[str]) -> list[str]: ...  # make resident; the models stopped for room
    def locate(self, names: Iterable[str]) -> None: ...  # refresh ``where`` after restarts
    def stats(self) -> dict[str, dict]: ...  # engine counters by model
    def placement_info(self) -> Optional[dict]: ...  # where engines ran and for how long; None: no placement
    def stop(self, names: Optional[Iterable[str]] = None) -> None: ...
