"""Ray actors hosting one vLLM engine each, and the pool stages talk to.

* ``init_ray`` starts local Ray (the embedded default) or joins a cluster
  (``ray.address``), shipping the project to workers with a runtime env.
* ``EnginePool`` starts one ``EngineActor`` per model on demand, with the
  resources its config asks for (GPUs = tensor-parallel size on GPU clusters,
  a STRICT_PACK placement group when TP > 1), restarts actors that die
  (``max_restarts``) and lets callers submit whole batches and collect them as
  they finish, so engines of different models run concurrently.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Iterable, Optional

log = logging.getLogger("crosscot.engine")

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def init_ray(ray_cfg) -> None:
    """Start or join Ray once per process."""
    import ray

    if ray.is_initialized():
        return
    env = {"PYTHONPATH": PROJECT_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    if os.environ.get("CROSSCOT_CACHE"):
        env["CROSSCOT_CACHE"] = os.environ["CROSSCOT_CACHE"]
    runtime_env: dict[str, Any] = {"env_vars": env}
    kwargs: dict[str, Any] = dict(log_to_driver=ray_cfg.log_to_driver, include_dashboard=False,
                                  ignore_reinit_error=True)
    if ray_cfg.address:
        if ray_cfg.ship_code:
            runtime_env["working_dir"] = PROJECT_ROOT
            runtime_env["excludes"] = [".venv", "runs", ".git", "multirun", "outputs", "*.arrow"]
            env.pop("PYTHONPATH")
        ray.init(address=ray_cfg.address, runtime_env=runtime_env, **kwargs)
    else:
        ray.init(num_cpus=ray_cfg.num_cpus, runtime_env=runtime_env, **kwargs)


def _actor_class():
    import ray

    @ray.remote(max_restarts=3, max_task_retries=3)
    class EngineActor:
        """One model, one vLLM engine; methods take whole batches."""

        def __init__(self, model_cfg, seed: int = 0, cpu_threads: int = 0):
            if cpu_threads:
                # Several engines share this machine's cores: do not pin every
                # engine's OpenMP threads to the same cores.
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
                os.environ["OMP_NUM_THREADS"] = str(cpu_threads)
            from pipeline.engine.core import ModelEngine

            self.engine = ModelEngine(model_cfg, seed=seed)

        def call(self, method: str, *args, **kwargs):
            return getattr(self.engine, method)(*args, **kwargs)

        def pid(self) -> int:
            return os.getpid()

    return EngineActor


class EnginePool:
    """Lazily started engine actors keyed by model short name."""

    def __init__(self, run_cfg, seed: int = 0):
        self.cfg = run_cfg
        self.seed = seed
        self.actors: dict[str, Any] = {}
        self.ready: dict[str, Any] = {}
        self._pgs: dict[str, Any] = {}

    def _options(self, m) -> dict:
        import ray

        gpus = ray.cluster_resources().get("GPU", 0)
        opts: dict[str, Any] = {"num_cpus": m.num_cpus, "name": None}
        if gpus > 0:
            if m.tensor_parallel_size > 1:
                from ray.util.placement_group import placement_group
                from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

                # A TP group must sit on one node: STRICT_PACK bundles, vLLM's Ray
                # executor captures the group for its workers.
                pg = placement_group([{"GPU": 1, "CPU": 1}] * m.tensor_parallel_size, strategy="STRICT_PACK")
                self._pgs[m.name] = pg
                opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    placement_group=pg, placement_group_capture_child_tasks=True)
                opts["num_gpus"] = 0
            else:
                opts["num_gpus"] = 1
        opts.pop("name")
        return opts

    def start(self, names: Iterable[str]) -> None:
        """Start actors for ``names`` (concurrently) and wait until all engines loaded."""
        import ray

        cls = _actor_class()
        cores = os.cpu_count() or 1
        pending = {}
        for n in names:
            if n in self.actors:
                continue
            m = self.cfg.model(n)
            threads = max(1, int(m.num_cpus)) if ray.cluster_resources().get("GPU", 0) == 0 else 0
            if cores <= 1:
                threads = 0
            a = cls.options(**self._options(m)).remote(m, self.seed, threads)
            self.actors[n] = a
            pending[n] = a.call.remote("info")
        for n, ref in pending.items():
            t0 = time.time()
            try:
                info = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - surface the model name
                raise RuntimeError(f"engine for model {n!r} failed to start: {e}") from e
            self.ready[n] = info
            log.info("engine %s ready (load %.1fs, waited %.1fs)", n, info["load_seconds"], time.time() - t0)

    def submit(self, name: str, method: str, *args, **kwargs):
        """Submit one batch call to a model's actor; returns an ObjectRef."""
        if name not in self.actors:
            self.start([name])
        return self.actors[name].call.remote(method, *args, **kwargs)

    def wait(self, refs: list) -> list:
        """Block until at least one of ``refs`` is ready; return the ready ones."""
        import ray

        done, _ = ray.wait(refs, num_returns=1)
        return done

    def get(self, ref):
        import ray

        return ray.get(ref)

    def call(self, name: str, method: str, *args, **kwargs):
        import ray

        return ray.get(self.submit(name, method, *args, **kwargs))

    def stats(self) -> dict[str, dict]:
        import ray

        return {n: ray.get(a.call.remote("get_stats")) for n, a in self.actors.items()}

    def stop(self, names: Optional[Iterable[str]] = None) -> None:
        """Kill actors (all by default) to free their memory, e.g. between waves."""
        import ray

        for n in list(names if names is not None else self.actors):
            a = self.actors.pop(n, None)
            self.ready.pop(n, None)
            if a is not None:
                ray.kill(a, no_restart=True)
            pg = self._pgs.pop(n, None)
            if pg is not None:
                from ray.util.placement_group import remove_placement_group

                remove_placement_group(pg)
