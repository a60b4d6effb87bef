"""Admit ensemble problems while their contexts fit the engines' KV caches.

Every ensemble step re-reads a problem's whole context (thinking prompt + CoT so far) in
each generator and evaluator.  With cached scoring that read is a prefix-cache hit only if
the context's KV blocks survived since the problem's previous step.  When the problems in
flight hold more context than an engine's KV cache, vLLM evicts the least recently freed
blocks; problems stepping in turn touch their contexts round-robin, which is LRU's worst
case: *every* context is evicted before it is read again, and each step re-prefills it
(``crosscot bench ensemble``: with 6 problems of 8k tokens in a cache of half that size,
cached scoring fell from ~14x to ~2x faster than naive rescoring).

So the stage admits a new problem only while the problems in flight, each reserved at its
*projected* context, fit the smallest cache among the ensemble's engines:

* a problem's projection is its current context (the first generator's
  ``Proposal.context_tokens``), raised to the median final context of the problems that
  have finished (before any has: ``ceiling``, the largest context a problem may reach), plus
  ``reserve`` — what one step holds beyond the context (every candidate's own tokens and a
  partial block each);
* one problem is always admitted when none is in flight (a context larger than the cache
  still runs; it just cannot stay cached);
* ``limit`` bounds the count as before (``stream.max_pending`` / the engines' in-flight bound);
* ``capacity=None`` (an engine that reports no KV size: served engines, the fake engine)
  admits by count only.

Admission changes only the order in which problems run, never a result: every request is
seeded by its identity.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class KVAdmission:
    """Problems in flight, reserved at their projected contexts, within ``capacity`` KV tokens."""

    capacity: Optional[int]  # KV tokens of the smallest engine cache (x its replicas); None: unknown
    limit: int  # at most this many problems in flight, whatever their size
    ceiling: int  # the largest context a problem may reach (prompt + thought budget, <= max_model_len)
    reserve: int = 0  # tokens one step holds beyond the context
    held: dict[Hashable, int] = field(default_factory=dict)  # problem -> current context tokens
    finals: list[int] = field(default_factory=list)  # final contexts of finished problems
    waits: int = 0  # admissions that had to wait for KV room (not for the count bound)

    def __post_init__(self) -> None:
        self._cond = asyncio.Condition()

    def projected(self, current: int) -> int:
        typical = statistics.median(self.finals) if self.finals else self.ceiling
        return min(self.ceiling, max(current, int(typical))) + self.reserve

    def in_use(self) -> int:
        return sum(self.projected(c) for c in self.held.values())

    def _kv_room(self) -> bool:
        return self.capacity is None or not self.held or self.in_use() + self.projected(0) <= self.capacity

    def _admissible(self) -> bool:
        return len(self.held) < max(1, self.limit) and self._kv_room()

    async def acquire(self, key: Hashable) -> None:
        """Wait until one more problem fits, then hold its place."""
        async with self._cond:
            if len(self.held) < max(1, self.limit) and not self._kv_room():
                self.waits += 1
            await self._cond.wait_for(self._admissible)
            self.held[key] = 0

    def update(self, key: Hashable, context_tokens: Optional[int]) -> None:
        """The problem's context after a step (grows only; None: unknown, kept)."""
        if key in self.held and context_tokens is not None:
            self.held[key] = max(self.held[key], int(context_tokens))

    async def release(self, key: Hashable) -> None:
        """The problem finished (or failed): its final context teaches the projection."""
        async with self._cond:
            final = self.held.pop(key, None)
            if final:
                self.finals.append(final)
            self._cond.notify_all()


# Per candidate, beyond its own tokens: the context's partial last block it prefills again.
KV_BLOCK_ALLOWANCE = 16


def step_reserve(candidates: int, max_candidate_tokens: int) -> int:
    """KV tokens one ensemble step holds beyond the context: every candidate's own tokens and a partial block."""
    return candidates * (max_candidate_tokens + KV_BLOCK_ALLOWANCE)


def engine_kv_tokens(info: dict, replicas: int = 1) -> Optional[int]:
    """KV tokens an engine's ``info()`` reports (``kv_tokens``), times its replicas; None if absent."""
    kv = info.get("kv_tokens")
    return int(kv) * max(1, int(replicas)) if kv else None


__all__ = ["KVAdmission", "engine_kv_tokens", "step_reserve"]
