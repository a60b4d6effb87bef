"""The study's answer removal: a pool model rewrites each CoT with a fixed prompt (``truncate.filter=rewrite``).

From ``KoyenaPal/genex: MedCalc-Bench/evaluation/openai_remove_answer.py``: the
CoT (the text inside ``<think>…</think>`` when present) goes into one user
message asking to keep only the hints and remove answer sentences — the
model is *not* told the answer — and the reply (again the part inside
``<think>`` when present) is the "without answer" CoT.  The study ran
o4-mini (reasoning effort medium); here any configured pool model
(``truncate.filter_model``) answers after its own thinking, greedily.
An empty reply is kept empty, as the study stored it.
"""

from __future__ import annotations

import re
from typing import Any

PROMPT_VERSION = "study-1"
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


def rewrite_filter(pool: Any, model_cfg: Any, cots: list[str], think_tokens: int = 2048,
                   answer_tokens: int = 4096) -> list[tuple[str, str]]:
    """(without-answer CoT, "rewrite") per CoT: one batched two-phase ``generate`` call on the pool model."""
    from pipeline.engine.core import Sampling

    if not cots:
        return []
    reqs = [{"prompt": rewrite_prompt(c), "cot": None, "sampling": Sampling.from_config(model_cfg.greedy, 0),
             "think_tokens": think_tokens, "answer_tokens": answer_tokens} for c in cots]
    outs = pool.get(pool.submit(model_cfg.name, "generate", reqs))
    return [(think_text(o.get("answer_text") or "").strip(), "rewrite") for o in outs]
