"""`crosscot bench ensemble`'s logic on a stub engine: the same work in every mode, admission bounded by the
engine's KV size, the last line naive / cached-with-admission, --quick sized from the probe."""

from __future__ import annotations

import asyncio
import types

from pipeline.bench import ensemble as bench


class StubEngine:
    """Scores by text length; records how many problems' scorings overlap and the contexts' sizes."""

    block_size = 16

    def __init__(self, kv_tokens: int):
        self._kv = kv_tokens
        self.stats = {"prefill_tokens": 0}
        self.llm = types.SimpleNamespace(reset_prefix_cache=lambda: None)
        self.open: set[str] = set()
        self.most_open = 0

    def kv_tokens(self) -> int:
        return self._kv

    def encode(self, text: str) -> list[int]:
        return [0] * len(text.split())

    async def score(self, context: str, conts: list[str], mode: str) -> list[dict]:
        base = context.split("?")[0]  # one problem's identity: its question
        self.open.add(base)
        self.most_open = max(self.most_open, len(self.open))
        await asyncio.sleep(0.001)
        self.open.discard(base)
        self.stats["prefill_tokens"] += len(self.encode(context)) * (len(conts) if mode == "naive" else 1)
        return [{"mean_nll": len(c) / 10.0} for c in conts]


def _work(steps: int) -> tuple:
    bases = [f"What is {p}? " + "word " * 100 for p in range(bench.PROBLEMS)]
    growth = [[f" step {s}." for s in range(steps)] for _ in range(bench.PROBLEMS)]
    cands = [
        [[f" cand {k} of {p}." for k in range(bench.CANDIDATES)] for p in range(bench.PROBLEMS)] for _ in range(steps)
    ]
    return bases, growth, cands


def test_admission_runs_as_many_problems_as_the_cache_holds_and_scores_agree(capsys) -> None:
    steps = 3
    work = _work(steps)
    roomy, tight = StubEngine(kv_tokens=10**6), StubEngine(kv_tokens=250)  # ~110 tokens + reserve a problem
    naive = bench.run_mode(roomy, "naive", work, steps)
    free = bench.run_mode(roomy, "cached", work, steps, admission=True)
    held = bench.run_mode(tight, "cached", work, steps, admission=True)
    assert held["out"] == free["out"] == naive["out"]  # the same candidates scored, whatever the order
    assert roomy.most_open == bench.PROBLEMS and tight.most_open == 1 and held["waits"] > 0
    md = bench.table([naive, free, held], block_size=16, blocks=10, steps=steps)
    ratio = naive["s"] / held["s"]
    assert md.strip().splitlines()[-1] == f"ensemble: cached/naive={ratio:.1f} at {bench.CONTEXT}"
    assert "problem-steps" in capsys.readouterr().out  # progress lines


def test_quick_is_sized_from_the_probe() -> None:
    fast, slow = 0.5, 60.0
    assert bench.quick_steps(fast) == bench.STEPS
    assert bench.quick_steps(slow) == bench.MIN_STEPS
    mid = bench.quick_steps(bench.QUICK_TARGET_S / bench.estimate_s(1.0, 5))
    assert mid == 5 and bench.estimate_s(2.0, 4) == 2 * bench.estimate_s(1.0, 4)
