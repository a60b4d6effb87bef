"""Item-level streaming execution of the engine stages (generate, ensemble, truncate, transfer).

The driver schedules *items*, not stages.  One asyncio event loop runs a
:class:`Flow`: each engine stage contributes item coroutines, and a finished
item hands its rows straight to the stages that consume them —

    generate item (think → answer, inside the engine) ─► its row ─► truncate (at once)
        ─► every CoT variant ─► a transfer item per target (submitted at once) ─► its row
    ensemble problem (propose → score → pick, per problem, no lockstep) ─► its CoT ─► truncate ─► …

so an engine never waits for another item's tail.  Stages stay the unit of
configuration, provenance and artifacts: each artifact is a
:class:`pipeline.store.sink.RowSink` filled in any order and written, sorted by
key, when the stage's last item is done.

Backpressure: at most ``stream.max_in_flight`` requests per engine replica
(default ``2 x max_num_seqs``: the engine's batch stays full while finished
results travel back), and each source (a model's generate items, the ensemble's
problems) keeps at most ``stream.max_pending`` items open, so the driver never
holds a whole sweep's prompts.

Waves: when every engine the stages need fits the cluster, one flow runs them
all.  Otherwise the flow runs once per wave with only that wave's engines
resident; items whose engine is not resident are *deferred* and re-derived
from the checkpointed rows in a later wave (the same code path as resume).

Resume: before submitting an item the flow asks its sink whether the row's key
is done; finished rows read back from the shards are replayed downstream, so a
killed run redoes only what was in flight.  A failed item (after Ray's actor
restarts and retries) is recorded and the others go on; the run raises at the
end so a rerun redoes only the failed work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from collections.abc import Hashable
from typing import Any, Awaitable, Callable, Iterable, Optional, Protocol, Sequence

from pipeline.engine.protocol import EngineOp, T, in_flight_bound
from pipeline.stages.context import Context
from pipeline.stages.protocol import StreamStage
from pipeline.store.sink import RowSink

log = logging.getLogger("crosscot")


@dataclass
class StageModelTelemetry:
    requests: int = 0
    first_submit: Optional[float] = None
    last_done: Optional[float] = None
    wave: int = 1
    of: int = 1

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "first_submit": self.first_submit,
            "last_done": self.last_done,
            "seconds": (self.last_done - self.first_submit)
            if self.last_done is not None and self.first_submit is not None
            else 0.0,
            "wave": self.wave,
            "of": self.of,
        }


class Gate(Protocol):
    """What admits a source's items (``Flow.bounded``)."""

    async def acquire(self, key: Hashable) -> None: ...

    async def release(self, key: Hashable) -> None: ...


class CountGate:
    """At most ``limit`` items open at once."""

    def __init__(self, limit: int):
        self._sem = asyncio.Semaphore(max(1, limit))

    async def acquire(self, key: Hashable) -> None:
        await self._sem.acquire()

    async def release(self, key: Hashable) -> None:
        self._sem.release()


@dataclass
class Flow:
    """One pass of the streaming engine stages over the resident engines (see module docstring)."""

    ctx: Context
    stages: list[StreamStage]
    resident: frozenset  # engines usable in this pass (empty: replay only, every engine item deferred)
    t0: float  # run start (telemetry is in seconds since then)
    wave: tuple[int, int] = (1, 1)
    failures: list = field(default_factory=list)
    deferred: Counter = field(default_factory=Counter)
    submitted: int = 0
    per_model: Counter = field(default_factory=Counter)  # items submitted per model in this pass
    # model -> in-flight semaphore; shared by the flows of a sweep so the bound is per engine
    sems: Optional[dict] = None

    def __post_init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()
        self._sems: dict[str, asyncio.Semaphore] = self.sems if self.sems is not None else {}
        self._consumers: dict[str, list[StreamStage]] = {}
        for s in self.stages:
            for kind in s.consumes:
                self._consumers.setdefault(kind, []).append(s)
        self._bars: dict[str, Any] = {}

    # ------------------------------------------------------------ engine calls
    @property
    def stream(self):
        return self.ctx.cfg.stream

    def runnable(self, model: str) -> bool:
        """Whether ``model``'s engine is resident in this pass; counts a deferral when not."""
        if model in self.resident:
            return True
        self.deferred[model] += 1
        return False

    def max_in_flight(self, model: str) -> int:
        m = self.ctx.cfg.model(model)
        return in_flight_bound(self.stream.max_in_flight, m.max_num_seqs) * max(1, int(m.replicas or 1))

    def pending_limit(self, model: str) -> int:
        return self.stream.max_pending or 2 * self.max_in_flight(model)

    async def call(self, stage: str, model: str, req: EngineOp[T]) -> T:
        """One engine request (one item), within the engine's in-flight bound."""
        sem = self._sems.get(model)
        if sem is None:
            sem = self._sems[model] = asyncio.Semaphore(self.max_in_flight(model))
        async with sem:
            tel = self.telemetry(stage, model)
            if tel.first_submit is None:
                tel.first_submit = time.time() - self.t0
            self.submitted += 1
            self.per_model[model] += 1
            res = await self.ctx.pool.op(model, req)
            tel.requests += 1
            tel.last_done = time.time() - self.t0
            return res

    def telemetry(self, stage: str, model: str) -> StageModelTelemetry:
        per = self.ctx.stage_models.setdefault(stage, {})
        tel = per.get(model)
        if tel is None:
            tel = per[model] = StageModelTelemetry(wave=self.wave[0], of=self.wave[1])
        return tel

    # ----------------------------------------------------------------- events
    def emit(self, kind: str, row: dict) -> None:
        """Hand a finished row to every stage that consumes ``kind``."""
        for s in self._consumers.get(kind, ()):
            s.on_event(self, kind, row)

    def submit(
        self,
        stage: str,
        sink: RowSink,
        keys: Sequence[tuple],
        models: Iterable[str],
        work: Callable[[], Awaitable[list[dict]]],
        emit: Optional[str] = None,
        progress: bool = True,
    ) -> Optional[Awaitable[None]]:
        """The steps every engine item goes through; the item's rows (``keys``) belong to ``sink``.

        Now: when every key is done (computed before, resumed, or by another job of the sweep)
        the rows are replayed to the consumers of ``emit`` and nothing runs; an item that failed
        earlier in this run is skipped (a failed item is not retried by later passes of the same
        run, e.g. waves: the run fails at the end and a rerun redoes it); an item whose engines
        (``models``) are not resident in this pass is deferred to a later wave.  Returns None
        then, else the awaitable that makes the rows: ``work()`` (its engine calls go through
        :meth:`call`), once per sweep (:meth:`_once`); a failure is remembered on the context
        and re-raised; rows not yet done are added to ``sink``, the stage's progress bar
        advances (``progress``) and every row goes to the consumers of ``emit``.  The caller
        awaits it (inside a source's bound) or spawns it.
        """
        if all(sink.done(k) for k in keys):
            if emit:
                for k in keys:
                    self.emit(emit, _row(sink, k))
            return None
        if (stage, keys[0]) in self.ctx.failed_items:
            return None
        if not all([self.runnable(m) for m in models]):  # a list: every missing engine counts a deferral
            return None

        async def make() -> list[dict]:
            try:
                rows = await work()
            except Exception:
                self.ctx.failed_items.add((stage, keys[0]))
                raise
            for r in rows:
                if not sink.done(sink.key(r)):
                    sink.add(r)
            return [_row(sink, sink.key(r)) for r in rows]

        async def run() -> None:
            rows = await self._once(sink, keys, make)
            if progress:
                self.bar(stage, done=1)
            if emit:
                for r in rows:
                    self.emit(emit, r)

        return run()

    async def _once(self, sink: RowSink, keys: Sequence[tuple], make: Callable[[], Awaitable[list[dict]]]) -> list:
        """The rows for ``keys``: already done, being made by another flow of this sweep (awaited),
        or made now by ``make()`` (which adds them to ``sink``).  Jobs of a sweep that share an
        artifact (the same model's generations) never compute the same item twice."""
        if all(sink.done(k) for k in keys):
            return [sink.get(k) for k in keys]
        key = keys[0]
        other = sink.claims.get(key)
        if other is not None:
            return await asyncio.shield(other)
        fut = asyncio.get_running_loop().create_future()
        sink.claims[key] = fut
        try:
            rows = await make()
            fut.set_result(rows)
            return rows
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters (if any) get it; no "never retrieved" warning
            raise
        finally:
            sink.claims.pop(key, None)

    def spawn(self, what: str, coro: Awaitable) -> None:
        """Run ``coro`` as a task of this flow; its failure is recorded, never silent."""
        task = asyncio.ensure_future(self._guard(what, coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, what: str, coro: Awaitable) -> None:
        try:
            await coro
        except Exception as e:  # noqa: BLE001 - recorded; the rest of the flow goes on
            log.error("%s failed after engine restarts/retries: %s: %s", what, type(e).__name__, e)
            self.failures.append(f"{what}: {type(e).__name__}: {str(e)[:300]}")

    async def bounded(
        self,
        key: str,
        limit: int,
        items,
        handle: Callable[[Any], Awaitable],
        gate: Optional[Gate] = None,
        item_key: Callable[[Any], Hashable] = id,
    ) -> None:
        """Run ``handle(item)`` for each item with at most ``limit`` open at once (a source's bound).

        ``gate``: admits items by more than their count (the ensemble's KV room:
        :class:`pipeline.stages.kv_admission.KVAdmission`, which holds its own count bound);
        ``item_key`` names an item to it.
        """
        gate = gate if gate is not None else CountGate(limit)

        async def one(it: Any) -> None:
            try:
                await handle(it)
            finally:
                await gate.release(item_key(it))

        for it in items:
            await gate.acquire(item_key(it))
            self.spawn(key, one(it))

    # --------------------------------------------------------------- progress
    def bar(self, stage: str, more: int = 0, done: int = 0) -> None:
        """Grow a stage's progress bar by ``more`` items and advance it by ``done``."""
        b = self._bars.get(stage)
        if b is None:
            from tqdm.auto import tqdm

            b = self._bars[stage] = tqdm(
                total=0, desc=stage, unit="req", leave=False, disable=not self.ctx.cfg.progress
            )
        if more:
            b.total += more
            b.refresh()
        if done:
            b.update(done)

    # -------------------------------------------------------------------- run
    async def run(self) -> None:
        flusher = asyncio.ensure_future(self._flush_periodically())
        try:
            for s in self.stages:
                await s.source(self)
            while self._tasks:
                await asyncio.wait(set(self._tasks))
        finally:
            flusher.cancel()
            for s in self.stages:
                for sink in s.sinks():
                    sink.flush()
            for b in self._bars.values():
                b.close()

    async def _flush_periodically(self) -> None:
        period = max(0.05, float(self.stream.flush_seconds))
        while True:
            await asyncio.sleep(period)
            for s in self.stages:
                for sink in s.sinks():
                    sink.flush()


def _row(sink: RowSink, key: tuple) -> dict:
    row = sink.get(key)
    if row is None:
        raise RuntimeError(f"internal: row {key} is not in {sink.artifact.name}")
    return row


def run_stream(ctx: Any, stages: list) -> dict[str, list]:
    """Run the streaming engine stages to completion (waves when engines do not all fit); their artifacts."""
    for s in stages:
        s.open(ctx)
    return _run_opened(ctx, stages)


def run_streams(jobs: list[tuple[Any, list]]) -> list:
    """Several runs' engine stages on ONE shared pool (a sweep); per job its artifacts, or the exception.

    When every engine any job needs fits the cluster, all jobs' flows run in one event loop: their
    items interleave in the same engines' streams, under one in-flight bound per engine.  Otherwise
    the jobs run one after another (each with its own waves), still on the shared pool, so an
    engine loaded for one job serves the next without a reload.
    """
    for ctx, stages in jobs:
        for s in stages:
            s.open(ctx)
    pool = jobs[0][0].pool
    union = list(dict.fromkeys(m for ctx, stages in jobs for s in stages for m in s.models(ctx)))
    if len(jobs) == 1 or not union or not pool.fits(union):
        out: list = []
        for ctx, stages in jobs:
            try:
                out.append(_run_opened(ctx, stages))
            except Exception as e:  # noqa: BLE001 - one job's failure never stops the others
                out.append(e)
        return out
    stopped = pool.ensure(union)
    resident = frozenset(union) | frozenset(pool.actors)
    sems: dict = {}
    flows = [Flow(ctx, stages, resident, ctx.t0, sems=sems) for ctx, stages in jobs]
    t_w = time.time()
    log.info("sweep: %d jobs streaming together on %s", len(jobs), ", ".join(sorted(resident)))

    async def together() -> None:
        await asyncio.gather(*(f.run() for f in flows))

    asyncio.run(together())
    pool.locate(list(resident))
    out = []
    for (ctx, stages), flow in zip(jobs, flows):
        ctx.record_wave(
            {
                "stage": "stream",
                "wave": 1,
                "of": 1,
                "models": sorted(resident),
                "requests": dict(flow.per_model),
                "stopped_before": stopped,
                "start": t_w,
                "end": time.time(),
                "deferred": dict(flow.deferred),
                "shared_with_jobs": len(jobs),
            }
        )
        try:
            if flow.deferred:
                raise RuntimeError(f"internal: work deferred for {dict(flow.deferred)} with every engine resident")
            _raise_failures(flow.failures)
            out.append({s.name: s.finish(ctx) for s in stages})
        except Exception as e:  # noqa: BLE001
            out.append(e)
    return out


def _raise_failures(failures: list[str]) -> None:
    if failures:
        raise RuntimeError(
            f"{len(failures)} item(s) failed after engine restarts/retries (first: {failures[0]}). "
            "Finished rows are checkpointed: rerun the same command to redo only the failed work."
        )


def _run_opened(ctx: Any, stages: list) -> dict[str, list]:
    t0 = ctx.t0
    needed = list(dict.fromkeys(m for s in stages for m in s.models(ctx)))
    if not needed:  # everything already computed: replay only (cheap), then finish
        flow = Flow(ctx, stages, frozenset(), t0)
        asyncio.run(flow.run())
        if flow.deferred:
            raise RuntimeError(f"internal: work deferred for {dict(flow.deferred)} though no engine is needed")
        return {s.name: s.finish(ctx) for s in stages}
    waves = ctx.engine_waves("stream", needed)
    failures: list[str] = []
    pending = set(needed)  # models that may still have work
    for attempt in range(max(2, len(waves) + 1)):
        progress = False
        # Waves whose engines are already loaded go first (no reload), and a wave with no
        # pending model is skipped.
        order = sorted(range(len(waves)), key=lambda i: not any(m in ctx.pool.actors for m in waves[i]))
        for wi in order:
            wave = waves[wi]
            if not set(wave) & pending:
                continue
            stopped = ctx.pool.ensure(wave)
            t_w = time.time()
            # Every resident engine is usable, not only this wave's (ensure stops only what must go).
            resident = frozenset(wave) | frozenset(ctx.pool.actors)
            flow = Flow(ctx, stages, resident, t0, wave=(wi + 1, len(waves)))
            log.info(
                "stream wave %d/%d: %s%s",
                wi + 1,
                len(waves),
                ", ".join(sorted(resident)),
                f" (stopped {', '.join(stopped)})" if stopped else "",
            )
            asyncio.run(flow.run())
            ctx.record_wave(
                {
                    "stage": "stream",
                    "wave": wi + 1,
                    "of": len(waves),
                    "models": sorted(resident),
                    "requests": dict(flow.per_model),
                    "stopped_before": stopped,
                    "start": t_w,
                    "end": time.time(),
                    "deferred": dict(flow.deferred),
                }
            )
            failures += flow.failures
            progress = progress or flow.submitted > 0
            ctx.pool.locate(list(resident))
        # Another pass only for work deferred to engines that were not resident when it appeared.
        check = Flow(ctx, stages, frozenset(), t0)
        asyncio.run(check.run())
        pending = set(check.deferred)
        if not pending:
            break
        if not progress:
            raise RuntimeError(f"streaming made no progress; work is still pending for {dict(check.deferred)}")
    _raise_failures(failures)
    return {s.name: s.finish(ctx) for s in stages}


__all__ = ["Flow", "StreamStage", "StageModelTelemetry", "run_stream", "run_streams"]
