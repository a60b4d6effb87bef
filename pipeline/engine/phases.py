"""The two phases of a generation as token ids: a CoT just written, and the answer request built on it.

:class:`pipeline.engine.vllm_engine.ModelEngine` thinks, then answers after its own CoT.  The
answer's prompt is built from the ids the engine already holds — the thinking prompt, every
generated token and the close tag — rather than from the CoT's cleaned, re-tokenized text, so its
prompt is exactly the sequence in the prefix cache (:func:`answer_ids`).  The counters here are
the per-phase telemetry (``telemetry.json``'s engines; ``crosscot bench cache``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Protocol

from pipeline.engine.protocol import (
    AnswerBy,
    AnswerRequest,
    AnswerResult,
    GenerateRequest,
    GenerateResult,
    ThinkRequest,
    ThinkResult,
)

# Lower runs first under vLLM's priority scheduling: an answer (short, its prefix cached) before new CoTs.
ANSWER_PRIORITY = -1

PHASE_COUNTERS = tuple(
    f"{ph}_{k}"
    for ph in ("think", "answer")
    for k in ("requests", "prompt_tokens", "cached_tokens", "cacheable_tokens", "cached_of_cacheable")
) + ("answer_text_path",)


@dataclass
class Thought:
    """A CoT this engine just wrote: the row fields and the ids the answer request builds on."""

    result: ThinkResult
    prompt: list[int]
    gen: list[int]
    closed: bool  # the model wrote its close tag
    text: str = ""  # the CoT's text as generated (before cleaning)
    stopped: bool = False  # it ended on a stop (close tag or end of turn), the last id


class TwoPhaseEngine(Protocol):
    """What :func:`pipeline.engine.vllm_engine.two_phase` needs of an engine: a CoT with the ids it
    came from, and the answer after it (an engine without ids answers by text)."""

    async def thought(self, r: ThinkRequest) -> Thought: ...
    async def answer(self, r: AnswerRequest) -> AnswerResult: ...
    async def answer_after(self, t: Thought, r: AnswerRequest, by: AnswerBy) -> AnswerResult: ...


def cacheable_tokens(before: list[int], block: int) -> int:
    """Tokens of an answer's prompt the prefix cache could serve after its CoT ran: everything the
    thinking request computed (``before``), in whole blocks.  Not capped by the answer prompt's
    own length: a re-tokenized CoT that comes out shorter or different loses those blocks."""
    return max(0, len(before) // block * block)


def computed_before(t: Thought) -> list[int]:
    """The ids whose KV the thinking request computed (the last sampled token was never fed)."""
    return t.prompt + t.gen[:-1]


def answer_ids(
    t: Thought,
    text_prompt: str,
    head: str,
    tag: str,
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
    close_id: Optional[int],
) -> Optional[list[int]]:
    """The answer's prompt ids after thought ``t``, or None where only the text path is right.

    ``text_prompt`` is what the text path would send (the CoT placed by the model's protocol) and
    ``head`` the thinking prompt + the cleaned CoT: what follows ``head`` in ``text_prompt`` (close
    tag, answer prefix, the problem's answer prefix) is appended to the generated ids.  None when
    the protocol places a CoT differently from how the model thought (the study's literal strings),
    or when a multi-token stop string ended inside a token (the ids would hold text the CoT does not).
    """
    if not text_prompt.startswith(head):
        return None
    tail = text_prompt[len(head) :]
    if t.closed and tag and tag in tail:
        if close_id is None and decode(t.gen) != t.text + tag:
            return None
        # The model wrote its own close tag: keep its tokens, add only what follows the tag.
        return t.prompt + t.gen + encode(tail[tail.index(tag) + len(tag) :])
    body = t.gen[:-1] if t.stopped and t.gen else t.gen  # drop an end-of-turn token
    return t.prompt + body + encode(tail)


def batched_tokens_of(llm: Any) -> int:
    """The engine's token budget per step, as vLLM resolved it."""
    return int(llm.vllm_config.scheduler_config.max_num_batched_tokens)


async def two_phase(engine: TwoPhaseEngine, r: GenerateRequest) -> GenerateResult:
    """Think (unless ``r.cot`` is given), then answer after that CoT: the answer request goes out
    the moment this CoT closes.  Shared by every engine (:class:`pipeline.engine.vllm_engine.ModelEngine`,
    the fake); after its own CoT the answer goes by that CoT's ids (``r.answer_by``)."""
    areq = AnswerRequest(
        prompt=r.prompt,
        cot=r.cot or "",
        sampling=r.sampling,
        answer_budget=r.answer_budget,
        system=r.system,
        answer_prefix=r.answer_prefix,
        affinity=r.affinity,
    )
    thought: Optional[Thought] = None
    if r.cot is None:
        thought = await engine.thought(
            ThinkRequest(
                prompt=r.prompt,
                sampling=r.sampling,
                thought_budget=r.thought_budget,
                system=r.system,
                reserve=r.answer_budget,
            )
        )
        t = thought.result
    else:
        t = ThinkResult(cot=r.cot, cot_tokens=0, finish_reason="given", forced_close=False)
    out = GenerateResult(
        cot=t.cot,
        cot_tokens=t.cot_tokens,
        cot_finish_reason=t.finish_reason,
        forced_close=t.forced_close,
        error=t.error,
        think_prompt_tokens=t.think_prompt_tokens,
        think_cached_tokens=t.think_cached_tokens,
    )
    if t.error:
        return out
    if thought is not None:
        a = await engine.answer_after(thought, replace(areq, cot=t.cot), r.answer_by)
    else:
        a = await engine.answer(areq)
    out.answer_text, out.prompt_tokens, out.answer_tokens = a.answer_text, a.prompt_tokens, a.answer_tokens
    out.finish_reason, out.error, out.cached_tokens = a.finish_reason, a.error, a.cached_tokens
    return out
