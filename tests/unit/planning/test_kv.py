"""KV-aware planning: capacity, preemption, context-dependent steps, the answer's cache hit."""

from __future__ import annotations

from types import SimpleNamespace

from pipeline.planning.kv import KVCost, KVSpec, headroom, kv_spec, simulate_kv
from pipeline.planning.simulate import StepCost, simulate_arrays

STEP = StepCost(step1_s=0.02, stepB_s=0.04, batch=64, prefill_s_per_token=1e-5)


def test_kv_limit_dominates_the_makespan():
    n, prompt, dec = 64, 100, 1000
    arr, pr, de = [0.0] * n, [prompt] * n, [dec] * n
    blind = simulate_arrays(arr, pr, de, STEP, 64)
    small = KVSpec(bytes_per_token=1.0, capacity_tokens=8 * (prompt + dec), block=16, source="test")
    run = simulate_kv(arr, pr, de, KVCost(STEP, 0.0), small, 64)
    # Only ~8 sequences fit at once: the engine preempts and runs ~8 at a time instead of 64.
    assert run.preemptions > 0 and run.recomputed_tokens > 0
    assert run.makespan_s > 2 * blind.makespan_s
    assert run.peak_blocks <= small.blocks + 64  # never far over capacity (one step's growth)
    big = KVSpec(1.0, 10 * n * (prompt + dec), 16, "test")
    free = simulate_kv(arr, pr, de, KVCost(STEP, 0.0), big, 64)
    assert free.preemptions == 0
    assert abs(free.makespan_s - blind.makespan_s) / blind.makespan_s < 0.02  # same model when KV is ample


def test_context_cost_and_answer_cache_hit():
    n = 16
    arr, pr, de, ans = [0.0] * n, [200] * n, [400] * n, [20] * n
    spec = KVSpec(1.0, 10**7, 16, "test")
    flat = simulate_kv(arr, pr, de, KVCost(STEP, 0.0), spec, 64)
    ctx = simulate_kv(arr, pr, de, KVCost(STEP, 1e-6), spec, 64)
    assert ctx.makespan_s > flat.makespan_s  # reading longer contexts costs step time
    hit = simulate_kv(arr, pr, de, KVCost(STEP, 0.0), spec, 64, ans, answer_hit=1.0)
    miss = simulate_kv(arr, pr, de, KVCost(STEP, 0.0), spec, 64, ans, answer_hit=0.0)
    assert hit.makespan_s < miss.makespan_s  # a re-tokenized answer prefills its whole context again
    assert hit.makespan_s > flat.makespan_s  # the answer phase still decodes


def _model(**kw):
    base = dict(
        name="QwQ",
        path="Qwen/QwQ-32B",
        params_b=32.8,
        tensor_parallel_size=1,
        gpu_memory_utilization=0.9,
        kv_cache_gib=1.0,
        block_size=None,
        max_num_seqs=64,
        max_model_len=32768,
    )
    return SimpleNamespace(**{**base, **kw})


def test_headroom_warns_where_max_num_seqs_would_preempt():
    spec = kv_spec(_model(), 140.4, gpus=True)
    assert spec.bytes_per_token == 2 * 64 * 8 * 128 * 2  # Qwen2.5-32B: 256 KiB per token
    assert 200_000 < spec.capacity_tokens < 300_000
    ok = headroom(_model(), spec, [3000.0] * 10)
    assert ok.warning() is None and ok.fit_mean == spec.capacity_tokens // 3000
    bad = headroom(_model(max_num_seqs=256), spec, [3000.0] * 10)
    w = bad.warning()
    assert w is not None and "max_num_seqs=256 would preempt" in w and f"max_num_seqs={bad.fit_mean}" in w
    tp2 = kv_spec(_model(tensor_parallel_size=2), 140.4, gpus=True)
    assert tp2.capacity_tokens > 2 * spec.capacity_tokens  # weights paid once over two GPUs


def test_plan_prints_kv_headroom():
    from pipeline.config import compose
    from pipeline.planning.kv import format_plan_kv, plan_kv
    from pipeline.planning.plan import plan

    cfg = compose(["experiment=reference", "models.nrr.max_num_seqs=1024"])
    p = plan(cfg, "h200x8", tails=False)
    text = format_plan_kv(plan_kv(cfg, p))
    assert "KV cache per engine" in text and "| QwQ |" in text
    assert "WARNING: NRR: max_num_seqs=1024 would preempt" in text
