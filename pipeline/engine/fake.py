"""A deterministic fake engine and pool with the real ones' interfaces, for fast unit tests of stage logic.

Never used as the thing that "passes" an integration test: those run the real
vLLM engine in real Ray actors.  The fake writes CoTs and answers derived from
a hash of the prompt, so runs are reproducible, and it can be told to fail
(``fail_on``) to exercise error paths and resume.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any, Optional

from pipeline.engine.formats import get_format
from pipeline.engine.local import LocalPool
from pipeline.engine.phases import Thought, two_phase  # the real engine's two-phase orchestration
from pipeline.engine.protocol import (
    AnswerBy,
    AnswerRequest,
    AnswerResult,
    CandidateScore,
    CompleteRequest,
    Completion,
    EngineOp,
    GenerateRequest,
    GenerateResult,
    InfoQuery,
    Proposal,
    ProposeRequest,
    ScoreRequest,
    StatsQuery,
    T,
    ThinkRequest,
    ThinkResult,
)


def _h(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


class FakeEngine:
    """Per-item coroutines with :class:`pipeline.engine.vllm_engine.ModelEngine`'s meaning (see module docstring)."""

    def __init__(self, model_cfg, skill: float = 0.5):
        self.cfg = model_cfg
        self.fmt = get_format(model_cfg.thinking_format)
        self.skill = skill
        self.stats = {
            "prefill_tokens": 0,
            "cached_tokens": 0,
            "generated_tokens": 0,
            "requests": 0,
            "engine_seconds": 0.0,
            "load_seconds": 0.0,
        }
        self.calls: list[tuple[str, int]] = []  # (op, items) per call, for tests
        self.kv_tokens: Optional[int] = None  # a KV size to report (tests of KV admission); None: unknown
        self.filter_batches: list[int] = []

    def _truth(self, prompt: str) -> str:
        m = re.search(r"What is ([\d+\-* ]+)\?", prompt)
        if m:
            try:
                return str(eval(m.group(1)))  # noqa: S307 - toy arithmetic the project generated
            except Exception:  # noqa: BLE001 - not the toy form: no known answer
                return "0"
        return "0"

    async def think(self, r: ThinkRequest) -> ThinkResult:
        self.calls.append(("think", 1))
        await asyncio.sleep(0)  # a real engine yields while it works: items interleave
        seed = r.sampling.seed if r.sampling.temperature > 0 else 0
        truth = self._truth(r.prompt)
        n = 3 + _h(self.cfg.name, r.prompt, seed) % 4
        sents = [f"Step {i + 1} for {self.cfg.name}." for i in range(n)] + [f"So the answer is {truth}."]
        self.stats["generated_tokens"] += 8 * len(sents)
        self.stats["requests"] += 1
        return ThinkResult(cot=" ".join(sents), cot_tokens=8 * len(sents), finish_reason="stop", forced_close=False)

    async def answer(self, r: AnswerRequest) -> AnswerResult:
        self.calls.append(("answer", 1))
        await asyncio.sleep(0)
        # ~2 characters per token: crude, but enough to exercise the over-long-prompt path.
        if (len(r.prompt) + len(r.cot or "")) // 2 + r.answer_budget > self.cfg.max_model_len:
            return AnswerResult(
                answer_text=None,
                prompt_tokens=0,
                answer_tokens=0,
                finish_reason="error",
                error=f"answer: prompt exceeds max_model_len={self.cfg.max_model_len}",
            )
        truth = self._truth(r.prompt)
        m = re.findall(r"answer is (-?\d+)", r.cot or "")
        if m:  # follows the CoT's stated answer, like a consistent model would
            ans = m[-1]
        else:
            good = (_h(self.cfg.name, r.prompt) % 100) < self.skill * 100
            ans = truth if good else str(int(truth) + 1 + _h(self.cfg.name, r.prompt) % 3)
        self.stats["requests"] += 1
        return AnswerResult(
            answer_text=f"Answer: {ans}", prompt_tokens=len(r.prompt) // 4, answer_tokens=3, finish_reason="stop"
        )

    async def generate(self, r: GenerateRequest) -> GenerateResult:
        return await two_phase(self, r)

    async def thought(self, r: ThinkRequest) -> Thought:
        """The thinking phase as ``generate`` uses it (no token ids here: the answer goes by text)."""
        return Thought(await self.think(r), [], [], False)

    async def answer_after(self, t: Thought, r: AnswerRequest, by: AnswerBy = "ids") -> AnswerResult:
        return await self.answer(r)

    def generation_prompt(self, user_prompt: str) -> str:
        return f"<user>{user_prompt}</user><assistant>"

    def chat_template_marker(self) -> str:
        from pipeline.text.llm_filter import MARK

        return self.generation_prompt(MARK)

    @staticmethod
    def _filter_reply(text: str) -> str:
        """Deterministic reply to an LLM answer-filter prompt (pipeline.text.llm_filter).

        Marks the numbered sentences that contain "answer is" or the stated final
        answer next to "so"/"total"/"="; a window containing the word GARBAGE gets
        an unparseable reply, one containing EVERYTHING gets every number.
        """
        m = re.search(r"final answer of this reasoning is (.+)\.$", text, re.M)
        answer = m.group(1).strip() if m else None
        sents = re.findall(r"^S(\d+): (.*)$", text, re.M)
        if "GARBAGE" in text:
            return " I am not sure what you mean"
        if "EVERYTHING" in text:
            return " " + ", ".join(f"S{k}" for k, _ in sents)
        hits = [
            k
            for k, s in sents
            if "answer is" in s.lower()
            or (
                answer
                and re.search(r"(?<![\w.])" + re.escape(answer) + r"(?![\w]|\.\d)", s)
                and re.search(r"\b(so|total|thus)\b|=", s, re.I)
            )
        ]
        return " " + (", ".join(f"S{k}" for k in hits) if hits else "none")

    async def complete(self, r: CompleteRequest) -> Completion:
        from pipeline.text.llm_filter import REPLY_PREFIX

        self.calls.append(("complete", 1))
        await asyncio.sleep(0)
        text = r.text or ""
        if text.rstrip().endswith(REPLY_PREFIX):
            self.filter_batches.append(1)
            return Completion(texts=[self._filter_reply(text)], token_ids=[[1] * 5], finish_reasons=["stop"])
        seed = r.sampling.seed if r.sampling else 0
        texts = [f" Sentence {(_h(self.cfg.name, text, k, seed) % 97)} by {self.cfg.name}." for k in range(r.n)]
        return Completion(texts=texts, token_ids=[[1] * 5 for _ in texts], finish_reasons=["length"] * len(texts))

    def get_stats(self) -> dict[str, Any]:
        return {**self.stats, "intervals": []}

    # ================================================================ ensemble
    # Mirrors ModelEngine.propose / score_texts.  Tokens are whitespace words.
    close_after = 3  # sentences in the CoT after which the first sample closes the thinking

    async def propose(self, r: ProposeRequest) -> Proposal:
        self.calls.append(("propose", 1))
        await asyncio.sleep(0)
        cot_tokens = len(r.cot.split())
        context = len(r.prompt.split()) + cot_tokens
        if r.thought_budget is not None and cot_tokens >= r.thought_budget:
            return Proposal(texts=[], closed=[], cot_tokens=cot_tokens, exhausted=True, context_tokens=context)
        texts, closed = [], []
        for k in range(r.n):
            if k == 0 and r.cot.count(".") >= self.close_after:
                texts.append(f" So done by {self.cfg.name}.{self.fmt.think_stop} trailing")
                closed.append(True)
            else:
                v = _h(self.cfg.name, r.prompt, r.cot, k, r.sampling.seed) % 97
                texts.append(f" Sentence {v} by {self.cfg.name}. And a fragment")
                closed.append(False)
        return Proposal(texts=texts, closed=closed, cot_tokens=cot_tokens, context_tokens=context)

    async def score_texts(self, r: ScoreRequest) -> list[CandidateScore]:
        self.calls.append(("score_texts", len(r.candidates)))
        await asyncio.sleep(0)
        close = self.fmt.close.rstrip()
        return [
            CandidateScore(
                mean_nll=(_h(self.cfg.name, r.cot, t + (close if c else "")) % 1000) / 100.0,
                seq_mean_nll=(_h(self.cfg.name, r.prompt, r.cot, t, c, 1) % 1000) / 100.0,
                n_tokens=max(1, len(t.split())),
            )
            for t, c in zip(r.candidates, r.closes)
        ]

    def info(self) -> dict[str, Any]:
        return {"name": self.cfg.name, "load_seconds": 0.0, "kv_tokens": self.kv_tokens}


class FakePool(LocalPool):
    """In-process stand-in for :class:`pipeline.engine.ray_pool.EnginePool`: FakeEngines, optional injected failures."""

    def __init__(self, run_cfg: Any, fail_on: Optional[dict] = None, skill: Optional[dict] = None):
        super().__init__(
            {m.name: FakeEngine(m, (skill or {}).get(m.name, 0.5)) for m in run_cfg.models.values()},
            max_engines=run_cfg.ray.max_concurrent_engines,
        )
        self.cfg = run_cfg
        self.fail_on = dict(fail_on or {})  # model -> number of items that raise before succeeding
        self.submitted = 0

    async def op(self, name: str, req: EngineOp[T]) -> T:
        if isinstance(req, (InfoQuery, StatsQuery)):  # queries are not items: never counted, never failed
            return await super().op(name, req)
        self.submitted += 1
        if self.fail_on.get(name, 0) > 0:
            self.fail_on[name] -= 1
            raise RuntimeError(f"injected failure in {name}")
        return await super().op(name, req)
