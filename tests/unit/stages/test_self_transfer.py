"""A model's full Default CoT transferred to itself reuses its generate row (no second request)."""

from __future__ import annotations

from pipeline.engine.fake import FakePool
from pipeline.engine.protocol import AnswerRequest, EngineOp, T
from pipeline.stages.dag import run
from pipeline.store.artifacts import read_table


class CountingPool(FakePool):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.calls: list[tuple[str, object]] = []

    async def op(self, name: str, req: EngineOp[T]) -> T:
        self.calls.append((name, req))
        return await super().op(name, req)


def _run(cfg):
    pools = []

    def factory():
        pools.append(CountingPool(cfg))
        return pools[0]

    ctx = run(cfg, pool_factory=factory)
    return ctx, pools[0]


def test_self_transfer_reuses_the_generate_row(tiny_cfg):
    cfg = tiny_cfg()
    ctx, pool = _run(cfg)
    answers = read_table(ctx.run_dir / "answers.arrow").to_pylist()
    gen = {(r["problem_id"], r["source"]): r for r in answers if r["method"] == "default"}
    selfs = [r for r in answers if r["method"] == "transfer" and r["variant"] == "full" and r["source"] == r["target"]]
    assert selfs and len(selfs) == len(gen)
    for r in selfs:
        g = gen[(r["problem_id"], r["source"])]
        assert (r["answer_text"], r["prompt_tokens"], r["finish_reason"]) == (
            g["answer_text"],
            g["prompt_tokens"],
            g["finish_reason"],
        )
    own_cots = {(g["source"], g["cot"]) for g in gen.values()}
    sent = [(name, req.cot) for name, req in pool.calls if isinstance(req, AnswerRequest) and req.phase == "transfer"]
    assert sent and not any(s in own_cots for s in sent), "a self-transfer of a full CoT went to the engine"
    # Other variants and other targets still run.
    assert any(r["method"] == "transfer" and r["source"] != r["target"] for r in answers)


def test_self_transfer_recomputed_when_the_request_differs(tiny_cfg):
    cfg = tiny_cfg("transfer.answer_budget=6")  # generate answered with 8 tokens: not the same request
    ctx, pool = _run(cfg)
    gen_cots = {
        (r["source"], r["cot"])
        for r in read_table(ctx.run_dir / "answers.arrow").to_pylist()
        if r["method"] == "default"
    }
    sent = {(name, req.cot) for name, req in pool.calls if isinstance(req, AnswerRequest) and req.phase == "transfer"}
    assert gen_cots & sent
