"""The answer after a CoT goes in by the CoT's token ids, at priority, and hits the prefix cache.

One in-process tiny engine (real vLLM CPU build, no Ray): every answer request's prompt is the
thinking prompt + every generated token + the close tag, so all of the thinking request's full KV
blocks are served from the cache; the rows carry the requests' prompt and cached tokens.
"""

from __future__ import annotations


def test_answer_by_token_ids_hits_the_cache():
    from pipeline.config import compose
    from pipeline.engine.protocol import GenerateRequest, Sampling
    from pipeline.engine.vllm_engine import ModelEngine

    m = compose(["experiment=demo_tiny"]).model("tiny-think")
    m.block_size = 32
    e = ModelEngine(m)
    assert e.llm.vllm_config.scheduler_config.policy == "priority"
    info = e.info()
    assert info["determinism"] == "exact" and info["engine_core"] == "inproc"
    assert info["max_num_batched_tokens"] == max(m.max_model_len, 2048)  # unchunked CPU prefill

    reqs = [
        GenerateRequest(
            prompt=f"What is {i} + {i}?", sampling=Sampling(0.0, 1.0, -1), thought_budget=64, answer_budget=4
        )
        for i in range(4)
    ]
    outs = [o.row() for o in e.run_batch([e.generate(r) for r in reqs])]
    s = e.stats
    assert s["answer_requests"] == 4 and s["answer_text_path"] == 0
    assert s["answer_cacheable_tokens"] > 0
    assert s["answer_cached_of_cacheable"] == s["answer_cacheable_tokens"]  # every computed block reused
    for o in outs:
        assert o["error"] is None and o["think_prompt_tokens"] > 0
        # The answer's prompt holds every generated token (nothing re-tokenized away).
        assert o["prompt_tokens"] > o["think_prompt_tokens"] + o["cot_tokens"]
        assert o["cached_tokens"] >= (o["think_prompt_tokens"] + o["cot_tokens"] - 1) // 32 * 32
    e.loop.close()
