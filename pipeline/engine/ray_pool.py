"""Ray actors hosting one vLLM engine each, and the pool stages talk to.

* ``init_ray`` starts local Ray (the embedded default) or joins a cluster
  (``ray.address``), shipping the project to workers with a runtime env.
* ``EnginePool`` starts ``replicas`` ``EngineActor`` s per model on demand (data-parallel
  copies), with the resources its config asks for (GPUs = tensor-parallel size on GPU
  clusters, a STRICT_PACK placement group when TP > 1, built with
  :func:`pipeline.planning.cluster.placement_group_spec`), restarts actors that die
  (``max_restarts``; their in-flight items are retried on the new engine,
  ``max_task_retries``).  Each actor is an *async* Ray actor around a continuously
  fed engine (:mod:`pipeline.engine.stream`): :meth:`EnginePool.op` sends ONE item and
  awaits its result, so any number of items are in flight per engine and each comes
  back the moment it finishes; items that share a prefix go to the same replica
  (:mod:`pipeline.engine.routing`), the least loaded one only when that replica is saturated.
* Placement: :meth:`EnginePool.schedule` plans waves for the live cluster
  (:func:`pipeline.planning.schedule.schedule_for_run`: GPUs/TP on GPU clusters, CPUs and
  host memory on CPU-only Ray).  :meth:`EnginePool.ensure` makes a set of
  engines resident, first stopping resident engines that are not needed when
  the union would not fit (so a model that does not fit beside the others never
  deadlocks ``start``).  The pool records where each engine ran, when it was
  held, and every wave, for ``telemetry.json``.

Test-only hook: ``CROSSCOT_FAULT_DELAY_S`` (seconds) makes every engine item
wait first, so fault-injection tests can kill an engine while a stage is in
flight.  Never set it in real runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Iterable, Optional

from pipeline.engine.protocol import EngineOp, InfoQuery, StatsQuery, T

log = logging.getLogger("crosscot.engine")

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Environment variables forwarded to engine actors (besides PYTHONPATH & co).
FORWARD_ENV = ("CROSSCOT_CACHE", "CROSSCOT_FAULT_DELAY_S", "VLLM_LOGGING_LEVEL")


def init_ray(ray_cfg) -> None:
    """Start or join Ray once per process."""
    import ray

    if ray.is_initialized():
        return
    env = {
        "PYTHONPATH": PROJECT_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
    }
    for k in FORWARD_ENV:
        if os.environ.get(k):
            env[k] = os.environ[k]
    runtime_env: dict[str, Any] = {"env_vars": env}
    kwargs: dict[str, Any] = dict(
        log_to_driver=ray_cfg.log_to_driver, include_dashboard=False, ignore_reinit_error=True
    )
    if ray_cfg.address:
        if ray_cfg.ship_code:
            runtime_env["working_dir"] = PROJECT_ROOT
            runtime_env["excludes"] = [".venv", "runs", ".git", "multirun", "outputs", "*.arrow"]
            env.pop("PYTHONPATH")
        try:
            ray.init(address=ray_cfg.address, runtime_env=runtime_env, **kwargs)
        except ConnectionError as e:  # the address answered the pre-flight check but is no Ray cluster
            from pipeline.errors import UserError

            raise UserError(
                f"ray.address={ray_cfg.address}: cannot join a Ray cluster there ({e}); "
                "check the address, or use ray.address=null for a local Ray"
            ) from e
    else:
        # address="local": always a fresh local instance, never an unrelated running cluster.
        ray.init(address="local", num_cpus=ray_cfg.num_cpus, runtime_env=runtime_env, **kwargs)
        from pipeline.engine.session import record

        record()  # the local session, for reaping after a SIGKILL (pipeline.engine.session)


def _actor_class():
    import ray

    # max_concurrency: the driver bounds items in flight (stream.max_in_flight); the actor
    # must never be the bound, or a full engine batch could not form.
    @ray.remote(max_restarts=3, max_task_retries=3, max_concurrency=100_000)
    class EngineActor:
        """One model, one continuously fed vLLM engine; ``op`` takes one item."""

        def __init__(self, model_cfg, seed: int = 0, cpu_threads: int = 0):
            if cpu_threads:
                # Normally already in the process's environment (cpu_runtime_options); kept for
                # a pool started without it.
                os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
                os.environ.setdefault("OMP_NUM_THREADS", str(cpu_threads))
            from pipeline.engine.openai_engine import engine_for

            self.started = time.time()
            self.engine = engine_for(model_cfg, seed)  # in-process vLLM, or a served endpoint

        async def op(self, req: EngineOp[T]) -> T:
            """One request (:mod:`pipeline.engine.protocol`) run on this actor's engine."""
            delay = float(os.environ.get("CROSSCOT_FAULT_DELAY_S", "0") or 0)
            if delay > 0:  # test-only hook, see the module docstring
                await asyncio.sleep(delay)
            return await req.run(self.engine)

        def pid(self) -> int:
            return os.getpid()

        def where(self) -> dict:
            """Where this engine runs: process, Ray node, host."""
            import socket

            ctx = ray.get_runtime_context()
            return {
                "pid": os.getpid(),
                "node_id": ctx.get_node_id(),
                "host": socket.gethostname(),
                "ip": ray.util.get_node_ip_address(),
                "started": self.started,
                "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            }

    return EngineActor


def _merge_stats(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(out.get(k, 0), (int, float)):
            out[k] = out.get(k, 0) + v
        elif isinstance(v, list):
            out[k] = list(out.get(k, [])) + list(v)
        else:
            out[k] = v
    return out


class EnginePool:
    """Lazily started engine actors keyed by model short name (``replicas`` actors per model)."""

    def __init__(self, run_cfg, seed: int = 0):
        self.cfg = run_cfg
        self.seed = seed
        self.actors: dict[str, list] = {}  # model -> its replica actors (resident engines)
        self.ready: dict[str, Any] = {}
        self._pgs: dict[str, list] = {}
        self._schedule = None
        self._load: dict[str, list[int]] = {}  # model -> items in flight per replica
        self._past_stats: dict[str, dict] = {}  # stats of stopped engines (summed over loads)
        self.pids: dict[str, list[int]] = {}  # current engine processes per model
        self.where: dict[str, dict] = {}  # last known location per model (first replica; all in "replicas")
        self.held: dict[str, list[list]] = {}  # model -> [[start, stop|None], ...] (engine held)
        self.loads: dict[str, int] = {}
        self.restarts: dict[str, int] = {}  # actor restarts by Ray (engine process died)
        self.waves: list[dict] = []  # runtime waves, in order (see pipeline.stages.runner)
        self._is_gpu: Optional[bool] = None  # cached _gpu_cluster() for telemetry
        self._models: dict[str, Any] = {}  # bound sweep jobs' models by name (see bind)

    # ------------------------------------------------------------------ models
    def bind(self, cfgs: list) -> None:
        """Serve several runs (a sweep's jobs): models by short name from all of them.

        One name must mean one engine: two jobs may sample differently (sampling is per
        request) but not give the same name other weights, format or prompts.
        """
        from pipeline.config import ConfigError, hash_fields

        models: dict[str, Any] = {}
        for c in cfgs:
            for m in c.models.values():
                prev = models.get(m.name)
                if prev is not None and _engine_identity(prev, hash_fields) != _engine_identity(m, hash_fields):
                    raise ConfigError(
                        f"sweep jobs give model {m.name!r} different engine settings "
                        f"(weights, format or prompts); give each variant its own models.<key>.name"
                    )
                models.setdefault(m.name, m)
        self._models = models

    def model(self, name: str):
        """A model's config: from the bound jobs (sweeps), else from this run's config."""
        m = self._models.get(name)
        return m if m is not None else self.cfg.model(name)

    # ------------------------------------------------------------------ placement
    def cluster(self):
        from pipeline.planning.cluster import discover_cluster

        return self.schedule().cluster if self._schedule is not None else discover_cluster()

    def schedule(self):
        """The wave schedule for this run on the live cluster (computed once)."""
        if self._schedule is None:
            from pipeline.planning.schedule import schedule_for_run

            self._schedule = schedule_for_run(self.cfg)
            log.info("placement on %s:\n%s", self._schedule.cluster.describe(), self._schedule.log)
        return self._schedule

    @property
    def max_engines(self) -> Optional[int]:
        return self.cfg.ray.max_concurrent_engines

    def replicas(self, name: str) -> int:
        return max(1, int(self.model(name).replicas or 1))

    def fits(self, names: Iterable[str]) -> bool:
        """Whether these engines (every replica of each) can be resident at the same time."""
        from pipeline.planning.packing import Packer, engine_demand

        names = list(dict.fromkeys(names))
        if self.max_engines and len(names) > self.max_engines:
            return False
        sched = self.schedule()
        demands = [engine_demand(self.model(n)) for n in names for _ in range(self.replicas(n))]
        return Packer(sched.cluster, self._share_gpus()).fits(demands)

    def _share_gpus(self) -> bool:
        """Whether the schedule lets TP=1 engines share GPUs (the planner chose it: see plan_waves)."""
        if self._schedule is None:
            return False
        return any(p.gpus and p.gpu_fraction < 0.999 for w in self._schedule.waves for p in w.placements)

    def _gpu_cluster(self) -> bool:
        import ray

        return ray.cluster_resources().get("GPU", 0) > 0

    def _options(self, m, replica: int) -> dict:
        opts: dict[str, Any] = {"num_cpus": m.num_cpus}
        if self._gpu_cluster():
            if m.tensor_parallel_size > 1:
                from ray.util.scheduling_strategies import (
                    PlacementGroupSchedulingStrategy,
                )

                from pipeline.planning.cluster import (
                    create_placement_group,
                    placement_group_spec,
                )

                # A TP group must sit on one node: STRICT_PACK bundles (one GPU each); vLLM's Ray
                # executor captures the group for its workers. The actor itself takes no extra
                # resources: the bundles hold the CPUs and GPUs.
                spec = placement_group_spec(
                    m.tensor_parallel_size, num_cpus=m.num_cpus, name=f"crosscot-{m.name}-{replica}-{os.getpid()}"
                )
                pg = create_placement_group(spec)
                self._pgs.setdefault(m.name, []).append(pg)
                opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    placement_group=pg, placement_group_capture_child_tasks=True
                )
                opts["num_gpus"] = 0
                opts["num_cpus"] = 0
            else:
                # A GPU share when the planner packs several engines per GPU, else a whole GPU.
                from pipeline.planning.packing import Packer, engine_demand

                sched = self.schedule()
                opts["num_gpus"] = Packer(sched.cluster, self._share_gpus()).gpu_share(
                    engine_demand(m), sched.cluster.nodes[0]
                )
        return opts

    # ------------------------------------------------------------------ lifecycle
    def start(self, names: Iterable[str]) -> None:
        """Start every replica of ``names`` (concurrently) and wait until all engines loaded."""
        import ray

        from pipeline.engine.cpu_runtime import cpu_runtime_options

        cls = _actor_class()
        cores = os.cpu_count() or 1
        pending = {}
        gpu = self._gpu_cluster()
        names = list(names)
        # CPU engines resident together split the cores: one engine gets them all. "Together": the
        # engines already up plus these (the flow starts a wave's engines in one call).
        resident = sum(len(a) for a in self.actors.values()) + sum(
            self.replicas(n) for n in names if n not in self.actors
        )
        for n in names:
            if n in self.actors:
                continue
            m = self.model(n)
            threads, rt_opts = (0, {}) if gpu else cpu_runtime_options(cores, resident)
            actors = [
                cls.options(**self._options(m, r), **rt_opts).remote(m, self.seed, threads)
                for r in range(self.replicas(n))
            ]
            self.actors[n] = actors
            self._load[n] = [0] * len(actors)
            self.held.setdefault(n, []).append([time.time(), None])
            self.loads[n] = self.loads.get(n, 0) + 1
            pending[n] = [a.op.remote(InfoQuery()) for a in actors]
        for n, refs in pending.items():
            t0 = time.time()
            try:
                infos = ray.get(refs)
                wheres = ray.get([a.where.remote() for a in self.actors[n]])
            except Exception as e:  # noqa: BLE001 - surface the model name
                raise RuntimeError(f"engine for model {n!r} failed to start: {e}") from e
            self.ready[n] = infos[0]
            self.pids[n] = [w["pid"] for w in wheres]
            self.where[n] = {**wheres[0], "replicas": wheres}
            log.info(
                "engine %s ready (%d replica(s)) on node %s (%s, pid %s; load %.1fs, waited %.1fs)",
                n,
                len(wheres),
                wheres[0]["node_id"][:12],
                wheres[0]["ip"],
                self.pids[n],
                infos[0]["load_seconds"],
                time.time() - t0,
            )

    def locate(self, names: Iterable[str]) -> None:
        """Refresh where engines run; a changed process id means Ray restarted the actor."""
        import ray

        for n in names:
            actors = self.actors.get(n)
            if not actors:
                continue
            try:
                ws = ray.get([a.where.remote() for a in actors], timeout=60)
            except Exception as e:  # noqa: BLE001 - telemetry only
                log.warning("cannot locate engine %s: %s", n, e)
                continue
            pids = [w["pid"] for w in ws]
            for old, new in zip(self.pids.get(n, []), pids):
                if old != new:
                    self.restarts[n] = self.restarts.get(n, 0) + 1
                    log.warning(
                        "engine %s was restarted by Ray (pid %s -> %s); its counters restarted at zero", n, old, new
                    )
            self.pids[n] = pids
            self.where[n] = {**ws[0], "replicas": ws}

    def _busy(self, name: str) -> bool:
        return sum(self._load.get(name, [])) > 0

    def ensure(self, names: Iterable[str]) -> list[str]:
        """Make ``names`` resident; stop idle others first if all would not fit. Returns those stopped."""
        names = list(dict.fromkeys(names))
        stopped: list[str] = []
        new = [n for n in names if n not in self.actors]
        if new and not self.fits(list(self.actors) + new):
            # Stop engines not needed now, until the rest fit (never one with work in flight).
            others = [n for n in self.actors if n not in names]
            for n in others:
                if self.fits(names + [o for o in others if o not in stopped]):
                    break
                if not self._busy(n):
                    stopped.append(n)
            if not self.fits(names + [o for o in others if o not in stopped]):
                busy = [o for o in others if o not in stopped]
                raise RuntimeError(
                    f"engines {names} do not fit beside busy engines {busy}; "
                    "stages must run their models in waves (see pipeline.stages.runner)"
                )
            self.stop(stopped)
        self.start(new)
        return stopped

    # -------------------------------------------------------------------- calls
    async def op(self, name: str, req: EngineOp[T]) -> T:
        """One item to a replica of ``name``'s engine (prefix affinity, least loaded when that one
        holds a full batch: :mod:`pipeline.engine.routing`); its result when it finishes."""
        from pipeline.engine.routing import affinity_key, pick_replica

        if name not in self.actors:
            raise RuntimeError(f"engine {name!r} is not resident; call ensure([{name!r}]) first")
        load = self._load[name]
        i = pick_replica(load, affinity_key(name, req), self.model(name).max_num_seqs)
        load[i] += 1
        try:
            return await self.actors[name][i].op.remote(req)
        finally:
            if self._load.get(name) is load:
                load[i] -= 1

    def call(self, name: str, req: EngineOp[T]) -> T:
        """Blocking: one request on the first replica (info, stats, bench baselines)."""
        import ray

        if name not in self.actors:
            self.ensure([name])
        return ray.get(self.actors[name][0].op.remote(req))

    def stats(self) -> dict[str, dict]:
        """Per model: token counts and busy intervals summed over every replica and load of its engine."""
        import ray

        out = {n: dict(s) for n, s in self._past_stats.items()}
        for n, actors in self.actors.items():
            for a in actors:
                try:
                    s = ray.get(a.op.remote(StatsQuery()), timeout=60)
                except Exception as e:  # noqa: BLE001 - telemetry must not fail a run
                    log.warning("no stats from engine %s: %s", n, e)
                    continue
                out[n] = _merge_stats(out.get(n, {}), s)
        return out

    def placement_info(self) -> dict:
        """Where each engine ran and how long it was held (for telemetry and the manifest)."""
        now = time.time()
        engines = {}
        for n, spans in self.held.items():
            m = self.model(n)
            gpus = float(m.tensor_parallel_size * self.replicas(n)) if self._gpu_cluster_cached() else 0.0
            held = sum((b or now) - a for a, b in spans)
            engines[n] = {
                "where": self.where.get(n),
                "loads": self.loads.get(n, 0),
                "replicas": self.replicas(n),
                "restarts": self.restarts.get(n, 0),
                "held_seconds": held,
                "held": spans,
                "gpus": gpus,
                "gpu_hours": held * gpus / 3600.0,
            }
        out: dict[str, Any] = {"engines": engines, "waves": self.waves}
        if self._schedule is not None:
            out["schedule"] = schedule_dict(self._schedule)
        return out

    def _gpu_cluster_cached(self) -> bool:
        if self._is_gpu is None:
            try:
                self._is_gpu = self._gpu_cluster()
            except Exception:  # noqa: BLE001
                self._is_gpu = False
        return self._is_gpu

    def stop(self, names: Optional[Iterable[str]] = None) -> None:
        """Kill actors (all by default) to free their memory, e.g. between waves."""
        import ray

        for n in list(names if names is not None else self.actors):
            actors = self.actors.pop(n, None) or []
            for a in actors:
                try:  # keep the engine's counters: they are part of the run's telemetry
                    s = ray.get(a.op.remote(StatsQuery()), timeout=30)
                    self._past_stats[n] = _merge_stats(self._past_stats.get(n, {}), s)
                except Exception as e:  # noqa: BLE001 - a dead engine has no counters left to read
                    log.warning("no final stats from engine %s (its counters are lost from telemetry): %s", n, e)
            self.ready.pop(n, None)
            self._load.pop(n, None)
            for span in self.held.get(n, []):
                if span[1] is None:
                    span[1] = time.time()
            for a in actors:
                ray.kill(a, no_restart=True)
            if actors:
                log.info("engine %s stopped", n)
            for pg in self._pgs.pop(n, []):
                from ray.util.placement_group import remove_placement_group

                remove_placement_group(pg)


def _engine_identity(m, hash_fields) -> dict:
    """What makes two model configs the same engine: everything that changes results but sampling."""
    return {k: v for k, v in hash_fields(m).items() if k not in ("greedy", "sampled")}


def schedule_dict(s) -> dict:
    """Plain-data view of a :class:`pipeline.planning.schedule.Schedule`."""
    return {
        "cluster": s.cluster.describe(),
        "total_loads": s.total_loads,
        "min_loads": s.min_loads,
        "loads": s.loads,
        "log": s.log,
        "waves": [
            {
                "index": w.index,
                "stages": list(w.stages),
                "placements": [
                    {
                        "model": p.model,
                        "node": p.node_name,
                        "gpus": list(p.gpus),
                        "gpu_fraction": p.gpu_fraction,
                        "num_cpus": p.num_cpus,
                        "stages": list(p.stages),
                        "loaded": p.loaded,
                        "where": p.where(),
                    }
                    for p in w.placements
                ],
            }
            for w in s.waves
        ],
    }
