"""The study's answer removal: a pool model rewrites each CoT with a fixed prompt (``truncate.filter=rewrite``).

From ``KoyenaPal/genex: MedCalc-Bench/evaluation/openai_remove_answer.py``: the
CoT (the text inside ``<think>…</think>`` when present) goes into one user
message asking to keep only the hints and remove answer sentences — the
model is *not* told the answer — and the reply (again the part inside
``<think>`` when present) is the "without answer" CoT.  The study ran
o4-mini (reasoning effort medium); here any configured pool model
(``truncate.filter_model``) answers after its own thinking, greedily.
An empty reply is kept empty, as the study stored it.

Streaming: :func:`rewrite_one` rewrites one CoT (one engine item), so the truncate
stage filters a CoT the moment it is written, like the ``llm`` filter.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable, Optional

from pipeline.engine.protocol import GenerateRequest, GenerateResult, Sampling

PROMPT_VERSION = "study-2"  # 2: budgets capped to the filter model's context; engine errors raise
REMOVE_ANSWER_PROMPT = """
Task: Keep only the hints from the text and remove answer sentences.

Definition: 
- A "hint/explanation sentence" provides guidance that helps someone think about the problem without giving the final solution.  
- An "answer sentence" directly states the final answer, solution, result, or conclusion.

Instructions:  
1. Keep every hint/explanation sentence exactly as written.  
2. Remove all answer sentences and statements.
3. Preserve the original wording, order, and formatting of the remaining text.
4. Do not add, rephrase, or generate any new text beyond what is already in the original.
5. Output only the hints.

Original text:
{text}
"""

_THINK = re.compile(r"<think>(.*?)(</think>|$)", re.DOTALL | re.IGNORECASE)


def think_text(text: str) -> str:
    """The study's ``extract_think_text``: the ``<think>`` part (stripped) when present, else the text."""
    m = _THINK.search(text)
    return m.group(1).strip() if m else text


def rewrite_prompt(cot: str) -> str:
    """The user message for one CoT, verbatim."""
    return REMOVE_ANSWER_PROMPT.format(text=think_text(str(cot)))


async def rewrite_one(
    call: Callable[[GenerateRequest], Awaitable[GenerateResult]],
    model_cfg: Any,
    cot: str,
    thought_budget: Optional[int] = None,
    answer_budget: Optional[int] = None,
) -> tuple[str, str]:
    """(without-answer CoT, "rewrite") for ONE CoT; ``call(request)`` runs one two-phase ``generate`` item.

    The filter model thinks, then answers (greedy); its reply's ``<think>`` part, if any, is
    the rewritten CoT.  Budgets default to the study's (2048 thinking, 4096 answer tokens)
    capped to a quarter and a half of the model's context window.  An engine error (e.g. the
    CoT does not fit the filter model's context) raises: the truncate stage fails the item
    unless ``truncate.on_filter_error=rule``.
    """
    n = int(model_cfg.max_model_len)
    think = thought_budget if thought_budget is not None else min(2048, n // 4)
    answer = answer_budget if answer_budget is not None else min(4096, n // 2)
    out = await call(
        GenerateRequest(
            prompt=rewrite_prompt(cot),
            sampling=Sampling.from_config(model_cfg.greedy, 0),
            thought_budget=think,
            answer_budget=answer,
        )
    )
    if out.error:
        raise RuntimeError(f"rewrite filter: {out.error}")
    return think_text(out.answer_text or "").strip(), "rewrite"
