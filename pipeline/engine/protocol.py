"""What stages need from an engine and from a pool of engines, as explicit protocols.

Three pools implement :class:`Pool`: :class:`pipeline.engine.ray_pool.EnginePool` (real vLLM
engines in Ray actors, placed by :mod:`pipeline.planning`), and the in-process
:class:`pipeline.engine.local.LocalPool` with its test double
:class:`pipeline.engine.fake.FakePool`.  Two engines implement :class:`Engine`:
:class:`pipeline.engine.vllm_engine.ModelEngine` and :class:`pipeline.engine.fake.FakeEngine`.
Stages call engine methods by name through ``pool.submit(model, method, requests)``, so a
method listed here is the whole contract between a stage and an engine.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Protocol, runtime_checkable


@runtime_checkable
class Engine(Protocol):
    """One model's engine.  Request and result dicts are documented on ModelEngine's methods."""

    def think(self, requests: list[dict]) -> list[dict]: ...          # CoT under a thought budget
    def answer(self, requests: list[dict]) -> list[dict]: ...         # answer after a given CoT
    def complete(self, requests: list[dict]) -> list[dict]: ...       # plain chat completion (LLM filter)
    def propose(self, requests: list[dict]) -> list[dict]: ...        # ensemble: candidate next sentences
    def score_texts(self, requests: list[dict], mode: str = "cached") -> list[list[dict]]: ...  # ensemble NLLs
    def generation_prompt(self, user_prompt: str) -> str: ...
    def get_stats(self) -> dict: ...
    def info(self) -> dict: ...


@runtime_checkable
class Pool(Protocol):
    """Engines by model short name, driven with Ray-style futures (``submit`` -> ref, ``wait``, ``get``)."""

    where: dict[str, dict]  # model -> where its engine runs (node, ip, pid); empty when in-process
    waves: list[dict]  # engine waves as they ran (appended by the stage runner)
    actors: dict[str, Any]  # engines currently resident (Ray actors; empty for in-process pools)

    def submit(self, name: str, method: str, *args: Any, **kwargs: Any) -> Any: ...
    def wait(self, refs: list) -> list: ...  # the refs among ``refs`` that are done (at least one)
    def get(self, ref: Any) -> Any: ...  # the result, or the engine's exception raised again
    def call(self, name: str, method: str, *args: Any, **kwargs: Any) -> Any: ...  # submit + get

    def schedule(self) -> Optional[Any]: ...  # the planned wave Schedule, None when nothing is planned
    def fits(self, names: Iterable[str]) -> bool: ...  # can these engines be resident together?
    def ensure(self, names: Iterable[str]) -> list[str]: ...  # make resident; the models stopped for room
    def locate(self, names: Iterable[str]) -> None: ...  # refresh ``where`` after restarts
    def stats(self) -> dict[str, dict]: ...  # engine counters by model
    def placement_info(self) -> Optional[dict]: ...  # where engines ran and for how long; None: no placement
    def stop(self, names: Optional[Iterable[str]] = None) -> None: ...
