"""Fault injection: engines killed mid-stage, drivers killed mid-run, batches failing after retries,
per-request errors and the error budget, engine waves.

(a) and (b) run the REAL vLLM CPU engine on tiny random models in real Ray actors
and compare the final tables with an uninterrupted run of the same config in a
run dir / store that shares nothing; (c) and the wave tests use FakePool.
Kept small: 2 tiny models, 4 problems, short budgets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.config import compose
from pipeline.engine.fake import FakePool
from pipeline.engine.protocol import StatsQuery
from pipeline.planning.cluster import ClusterSpec, NodeSpec
from pipeline.planning.schedule import schedule_for_run
from pipeline.stages.dag import run
from pipeline.planning.waves import plan_stage_waves
from pipeline.store.artifacts import read_table

REPO = Path(__file__).resolve().parents[3]
KEY = ["dataset", "problem_id", "method", "source", "variant", "sample", "target"]


def overrides(run_dir: Path, *extra: str) -> list[str]:
    # Two tiny models; rows are checkpointed every 2 rows (resume granularity).
    return [
        "experiment=demo_tiny",
        "~models.c",
        f"run_dir={run_dir}",
        f"store_dir={run_dir / 'store'}",
        "dataset.size=4",
        "generate.thought_budget=24",
        "generate.answer_budget=8",
        "transfer.answer_budget=8",
        "stream.flush_rows=2",
        "stream.flush_seconds=0.5",
        "progress=false",
        "score.n_boot=50",
        *extra,
    ]


def no_engines():
    raise AssertionError("no engine work expected: every artifact is cached")


def final_tables(run_dir: Path) -> dict:
    ans = read_table(run_dir / "answers.arrow")
    ans = ans.replace_schema_metadata(None).sort_by([(k, "ascending") for k in KEY])
    return {
        "answers": ans.to_pylist(),
        "consistency_summary": (run_dir / "tables" / "consistency_summary.csv").read_text(),
        "accuracy": (run_dir / "tables" / "accuracy.csv").read_text(),
        "errors": (run_dir / "tables" / "errors.csv").read_text(),
    }


def assert_same_tables(got: Path, want: Path) -> None:
    g, w = final_tables(got), final_tables(want)
    keys = [tuple(r[k] for k in KEY) for r in g["answers"]]
    assert len(keys) == len(set(keys)), "duplicated answer rows"
    assert len(g["answers"]) == len(w["answers"]), "lost or extra answer rows"
    for a, b in zip(g["answers"], w["answers"]):
        assert a == b
    for name in ("consistency_summary", "accuracy", "errors"):
        assert g[name] == w[name], name


# --------------------------------------------------------------------------- real engines


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the in-process real-engine tests; the fault hook slows every engine call."""
    import ray

    os.environ["CROSSCOT_FAULT_DELAY_S"] = "1.0"  # test-only hook (pipeline.engine.ray_pool)
    if ray.is_initialized():
        ray.shutdown()
    yield
    ray.shutdown()
    os.environ.pop("CROSSCOT_FAULT_DELAY_S", None)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, ray_local):
    """An uninterrupted real-engine run (its own run dir and store)."""
    d = tmp_path_factory.mktemp("baseline")
    cfg = compose(overrides(d))
    run(cfg)
    return d


@pytest.mark.slow
def test_actor_killed_mid_stage_redoes_only_unfinished_work(baseline, tmp_path):
    """kill -9 of an engine process while generate is in flight: Ray restarts the actor,
    retries its in-flight items, and the final tables equal the uninterrupted run's."""
    from pipeline.stages.dag import default_pool_factory

    d = tmp_path / "killed"
    cfg = compose(overrides(d))
    pools = []
    make = default_pool_factory(cfg)

    def factory():
        pools.append(make())
        return pools[-1]

    killed: dict = {}

    def killer():
        deadline = time.time() + 600
        while time.time() < deadline and not killed:
            parts = list((d / "store").glob("generate-tiny-think-*.parts/*.arrow"))
            if parts and pools and "tiny-think" in pools[0].pids:
                killed["generate_done"] = bool(list((d / "store").glob("generate-tiny-think-*.arrow")))
                killed["pid"] = pools[0].pids["tiny-think"][0]
                os.kill(killed["pid"], signal.SIGKILL)
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    ctx = run(cfg, pool_factory=factory, keep_pool=True)
    t.join(timeout=5)
    try:
        assert killed, "the engine was never killed"
        assert not killed["generate_done"], "the kill came after generate finished"
        pool = ctx._pool
        new_pid = __import__("ray").get(pool.actors["tiny-think"][0].pid.remote())
        assert new_pid != killed["pid"], "the actor was not restarted"
        assert pool.restarts.get("tiny-think") == 1 and not pool.restarts.get("tiny-thought")
        # Only unfinished work was redone: the restarted engine (its counters start at zero) ran
        # fewer requests than the same engine in the uninterrupted run, where it did everything.
        stats = __import__("ray").get(pool.actors["tiny-think"][0].op.remote(StatsQuery()))
        ref = json.loads((baseline / "telemetry.json").read_text())["engines"]["tiny-think"]
        assert 0 < stats["requests"] < ref["requests"]
    finally:
        ctx._pool.stop()
    tel = json.loads((d / "telemetry.json").read_text())
    assert tel["engines"]["tiny-think"]["restarts"] == 1
    assert_same_tables(d, baseline)


def _driver_cmd(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", "run", *overrides(run_dir)]


@pytest.mark.slow
def test_driver_killed_mid_generate_resumes_on_rerun(baseline, tmp_path):
    """SIGKILL of `python -m pipeline run` after some generate shards exist; the rerun
    finishes with tables equal to the uninterrupted run (no lost or duplicated rows)."""
    d = tmp_path / "driver"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CROSSCOT_FAULT_DELAY_S": "1.0"}
    proc = subprocess.Popen(
        _driver_cmd(d), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            if list((d / "store").glob("*.parts/*.arrow")) or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before any shard was written"
    finally:
        try:  # the driver and everything it started (its local Ray) share its session
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert not (d / "answers.arrow").exists()
    parts_before = list((d / "store").glob("*.parts/*.arrow"))
    assert parts_before
    env.pop("CROSSCOT_FAULT_DELAY_S")
    r = subprocess.run(_driver_cmd(d), cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not list((d / "store").glob("*.parts")), "shards are merged into artifacts"
    assert_same_tables(d, baseline)


@pytest.mark.slow
def test_too_small_max_model_len_is_recorded_and_budgeted(tmp_path):
    """Real engine: over-long prompts become error rows naming max_model_len, errors.csv counts
    them, and the run fails only when their share exceeds error_budget (tables written first)."""
    import polars as pl

    from pipeline.stages.score import ErrorBudgetExceeded

    d = tmp_path / "errs"
    # tiny-thought with a 96-token window: its prompts fit an Empty-CoT answer (8 tokens) but not a
    # 48-token CoT; tiny-think is unaffected.
    ov = overrides(d, "models.b.max_model_len=96", "generate.thought_budget=48", "error_budget=1.0")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    try:
        ctx = run(compose(ov))
    finally:
        ray.shutdown()
    ans = read_table(d / "answers.arrow").to_pylist()
    bad = [r for r in ans if r["error"]]
    assert bad and all("max_model_len=96" in r["error"] for r in bad)
    assert all(r["target"] == "tiny-thought" for r in bad)
    assert len(bad) < len(ans)
    errs = pl.read_csv(d / "tables" / "errors.csv")
    assert errs["count"].sum() == len(bad)
    share = len(bad) / len(ans)
    assert ctx.timings["error_share"] == pytest.approx(share)
    # Same run (cached artifacts: only scoring reruns) with budgets either side of the share.
    run(compose(ov[:-1] + [f"error_budget={share + 0.01:.4f}"]), pool_factory=no_engines)
    with pytest.raises(ErrorBudgetExceeded, match="max_model_len"):
        run(compose(ov[:-1] + [f"error_budget={max(0.0, share - 0.01):.4f}"]), pool_factory=no_engines)
    assert (d / "tables" / "errors.csv").exists() and (d / "tables" / "accuracy.csv").exists()


# --------------------------------------------------------------------------- FakePool (fast)


class WavePool(FakePool):
    """FakePool on a pretend cluster of ``cpus`` CPUs: plans waves and records loads/stops."""

    def __init__(self, cfg, cpus: float, limit=None, **kw):
        super().__init__(cfg, **kw)
        self.cluster = ClusterSpec((NodeSpec("node0", 0, 0.0, cpus, 64.0),), "test")
        self.limit = limit
        self.actors: dict = {}
        self.log: list = []
        self._sched = None

    def schedule(self):
        if self._sched is None:
            self._sched = schedule_for_run(self.cfg, self.cluster)
        return self._sched

    def fits(self, names):
        from pipeline.planning.packing import Packer, engine_demand

        names = list(names)
        if self.limit and len(names) > self.limit:
            return False
        return Packer(self.cluster).fits([engine_demand(self.cfg.model(n)) for n in names])

    def ensure(self, names):
        new = [n for n in names if n not in self.actors]
        stopped = []
        if new and not self.fits(list(self.actors) + new):
            stopped = [n for n in self.actors if n not in names]
            for n in stopped:
                del self.actors[n]
            self.log.append(("stop", tuple(stopped)))
        for n in new:
            self.actors[n] = True
        if new:
            self.log.append(("load", tuple(new)))
        assert self.fits(list(self.actors)), f"oversubscribed: {list(self.actors)}"
        return stopped

    async def op(self, name, req):
        assert name in self.actors, f"{name} used while not loaded"
        return await super().op(name, req)


def test_plan_stage_waves_loaded_first_and_limit():
    fits2 = lambda ms: len(ms) <= 2  # noqa: E731
    assert plan_stage_waves("generate", ["a", "b"], None, set(), fits2) == [["a", "b"]]
    w = plan_stage_waves("generate", ["a", "b", "c"], None, set(), fits2)
    assert w == [["a", "b"], ["c"]]
    w = plan_stage_waves("transfer", ["a", "b", "c"], None, {"c"}, fits2)
    assert w[0] == ["c"] and sorted(sum(w, [])) == ["a", "b", "c"]
    one = lambda ms: len(ms) <= 1  # noqa: E731
    assert plan_stage_waves("generate", ["a", "b", "c"], None, set(), one) == [["a"], ["b"], ["c"]]


def test_waves_when_engines_do_not_fit_give_identical_tables(tiny_cfg, tmp_path):
    """A 4th model with num_cpus=1 on a 2-CPU cluster: the stream runs in waves, never oversubscribes,
    work for engines not resident is deferred to a later pass, loaded engines are reused first,
    and tables equal the all-at-once run."""
    extra = ["+model@models.d=tiny_think", "models.d.name=tiny-d", "models.d.num_cpus=1", "models.d.tiny.seed=7"]
    ref = tiny_cfg(f"run_dir={tmp_path / 'ref'}", *extra)
    run(ref, pool_factory=lambda: FakePool(ref))
    cfg = tiny_cfg(f"run_dir={tmp_path / 'waves'}", *extra)
    pool = WavePool(cfg, cpus=2.0)
    ctx = run(cfg, pool_factory=lambda: pool)
    assert len(ctx.waves) >= 3 and {w["stage"] for w in ctx.waves} == {"stream"}
    assert any(w["deferred"] for w in ctx.waves), "some work waited for an engine of another wave"
    loads = sum(len(x[1]) for x in pool.log if x[0] == "load")
    assert loads == 5, pool.log  # 4 models + one reload for the transfers deferred to it
    assert_same_tables(tmp_path / "waves", tmp_path / "ref")
    import json

    tel = json.loads((tmp_path / "waves" / "telemetry.json").read_text())
    assert [w["models"] for w in tel["waves"]] == [w["models"] for w in ctx.waves]
    assert set(tel["stage_models"]["generate"]) == {"tiny-think", "tiny-thought", "tiny-harmony", "tiny-d"}


def test_one_engine_at_a_time(tiny_cfg, tmp_path):
    cfg = tiny_cfg(f"run_dir={tmp_path / 'seq'}", "ray.max_concurrent_engines=1")
    pool = WavePool(cfg, cpus=8.0, limit=cfg.ray.max_concurrent_engines)
    ctx = run(cfg, pool_factory=lambda: pool)
    assert all(len(w["models"]) == 1 for w in ctx.waves)
    order = [w["models"][0] for w in ctx.waves]
    assert order[3] != order[2], "the model loaded last is not reloaded: it had no deferred work"
    assert sum(len(x[1]) for x in pool.log if x[0] == "load") == 2 * 3 - 1


def test_batch_failing_after_retries_then_rerun_gives_identical_rows(tiny_cfg, tmp_path):
    """(c) An item that still fails after Ray's retries is recorded, the other items and waves go on
    (it is not retried by a later pass), the run raises "rerun"; the rerun redoes only the failed
    items and the rows are identical."""
    ref = tiny_cfg(f"run_dir={tmp_path / 'ref'}")
    run(ref, pool_factory=lambda: FakePool(ref))
    cfg = tiny_cfg(f"run_dir={tmp_path / 'flaky'}", "stream.flush_rows=1")
    flaky = WavePool(cfg, cpus=8.0, limit=2, fail_on={"tiny-harmony": 1, "tiny-think": 2})
    with pytest.raises(RuntimeError, match="rerun the same command to redo only the failed work"):
        run(cfg, pool_factory=lambda: flaky)
    rows = sum(read_table(p).num_rows for p in (tmp_path / "flaky" / "store").glob("generate-*.parts/*.arrow"))
    n_items = 6 * 3  # 6 problems x (empty, default, sampled) per model
    assert rows == 3 * n_items - 3, "every item but the 3 failed ones was checkpointed, in every wave"
    again = WavePool(cfg, cpus=8.0, limit=2)
    run(cfg, pool_factory=lambda: again)
    # The failed items are each model's first (Empty CoT: nothing downstream), so exactly 3 items.
    assert again.submitted == 3, "only the 3 failed generate items are redone"
    assert_same_tables(tmp_path / "flaky", tmp_path / "ref")


def test_tensor_parallel_engine_gets_strict_pack_placement_group(tiny_cfg, monkeypatch):
    """On a GPU cluster a TP>1 engine's actor goes into a STRICT_PACK group of one GPU bundle per rank
    (pipeline.planning.cluster.placement_group_spec); a TP=1 engine asks Ray for one GPU."""
    import pipeline.planning.cluster as placement
    from pipeline.engine.ray_pool import EnginePool

    cfg = tiny_cfg("models.a.tensor_parallel_size=2", "models.a.num_cpus=4")
    made = []

    class PG:  # stands in for a Ray placement group
        id = None

    def fake_create(spec):
        made.append(spec)
        return PG()

    monkeypatch.setattr(placement, "create_placement_group", fake_create)
    pool = EnginePool(cfg)
    monkeypatch.setattr(pool, "_gpu_cluster", lambda: True)
    opts = pool._options(cfg.model("tiny-think"), 0)
    assert len(made) == 1 and made[0].strategy == "STRICT_PACK"
    assert made[0].bundles == [{"GPU": 1.0, "CPU": 2.0}] * 2
    assert opts["num_gpus"] == 0 and opts["num_cpus"] == 0
    assert opts["scheduling_strategy"].placement_group is pool._pgs["tiny-think"][0]
    assert opts["scheduling_strategy"].placement_group_capture_child_tasks

    class Sched:
        cluster = ClusterSpec((NodeSpec("node0", 8, 80.0, 64.0, 512.0),), "test")
        waves: list = []

    pool._schedule = Sched()
    assert pool._options(cfg.model("tiny-thought"), 0)["num_gpus"] == 1.0
