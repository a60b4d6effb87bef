"""LLM answer filter: a pool model marks the CoT sentences that state the final answer.

The model never rewrites text.  Each CoT is split into sentences
(:func:`pipeline.text.split_sentences`), the sentences are shown numbered in
windows that fit the filter model's context, and the model is asked for the
*numbers* of the sentences that state the final answer.  The CoT is then
rebuilt from the original sentences it did not mark, so the kept text is
verbatim and in order by construction, whatever the model writes.

Robustness for small models:

* the prompt gives the final answer's value (when known), so the task is
  "which sentences give this value as the result", not open-ended judgement;
* the reply is parsed leniently (``"3, 7"``, ``"[3] and [7]"``, ``"3-5"``,
  ``"none"``); numbers outside the window are ignored;
* a window whose reply has no usable number and no "none", or that marks an
  implausible share of its sentences (``max_share``), falls back to the
  rule-based filter (:func:`pipeline.text.states_answer`) for that window; a
  failed engine batch falls back for every CoT.  The per-CoT ``filter`` value
  says what was used: ``"llm"`` (every window answered by the model) or
  ``"llm->rule"`` (at least one window fell back).

All windows of all CoTs go to the filter model in one ``complete`` batch.
The chat template is rendered once (``generation_prompt`` on a placeholder)
and filled in for every window, so the batch needs no per-prompt round trips.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from pipeline.text import split_sentences, states_answer

# Bump when the prompt or the parsing changes (part of the truncate artifact key).
PROMPT_VERSION = 1

PROMPT = """You are given numbered sentences from a step-by-step reasoning text.
{answer_line}
Task: find the sentences that STATE THE FINAL ANSWER, that is, sentences that give the final result as the conclusion (for example "So the score is 4.", "The answer is 7.8 mg/dL.", "Total = 12.").
Sentences that only give facts, rules, formulas or intermediate steps are NOT answer statements.

{numbered}

Reply with the numbers of the sentences that state the final answer, separated by commas (for example: 12, 15). If no sentence states it, reply: none."""

ANSWER_LINE = "The final answer of this reasoning is: {answer}"
NO_ANSWER_LINE = "The final answer of this reasoning is the result it concludes with."
# Primes the reply so that even a small model continues with numbers.
REPLY_PREFIX = "Sentences that state the final answer:"

_MARK = "\u0000CROSSCOT_USER_PROMPT\u0000"


@dataclass
class FilterSettings:
    """How CoTs are windowed and how the reply is judged (not part of the config: fixed by PROMPT_VERSION)."""

    max_tokens: int = 48  # reply budget per window
    chars_per_token: float = 2.5  # conservative chars/token for sizing windows without a tokenizer
    template_tokens: int = 200  # prompt text + chat template, in tokens
    max_sentences: int = 40  # sentences per window (keeps the reply short)
    max_sentence_chars: int = 600  # longer sentences are shown shortened (kept or dropped whole)
    max_share: float = 0.5  # a window marking more than this share (and >= 3 sentences) is implausible


@dataclass
class FilterResult:
    cot: str  # the CoT without the sentences that state the answer
    filter: str  # "llm" or "llm->rule"
    dropped: list  # indices of dropped sentences
    n_sentences: int
    note: Optional[str] = None  # why the rule filter was used, if it was


def window_char_budget(max_model_len: int, s: FilterSettings) -> int:
    return max(200, int((max_model_len - s.max_tokens - s.template_tokens) * s.chars_per_token))


def _shown(sentence: str, s: FilterSettings) -> str:
    t = " ".join(sentence.split())
    if len(t) > s.max_sentence_chars:
        half = s.max_sentence_chars // 2
        t = t[:half] + " ... " + t[-half:]
    return t


def windows(sentences: list[str], budget_chars: int, s: FilterSettings) -> list[tuple[int, int]]:
    """Cut sentence indices into [start, end) windows whose numbered text fits ``budget_chars``."""
    out, start, used = [], 0, 0
    for i, sent in enumerate(sentences):
        size = len(_shown(sent, s)) + 8  # "[123] " + newline
        if i > start and (used + size > budget_chars or i - start >= s.max_sentences):
            out.append((start, i))
            start, used = i, 0
        used += size
    if start < len(sentences):
        out.append((start, len(sentences)))
    return out


def build_prompt(sentences: list[str], answer: Optional[str], s: FilterSettings) -> str:
    """User prompt for one window; sentences are numbered from 1."""
    numbered = "\n".join(f"[{k + 1}] {_shown(t, s)}" for k, t in enumerate(sentences))
    line = ANSWER_LINE.format(answer=answer) if answer else NO_ANSWER_LINE
    return PROMPT.format(answer_line=line, numbered=numbered)


def parse_reply(text: Optional[str], n: int) -> Optional[set[int]]:
    """0-based indices of the marked sentences, or None when the reply is unusable.

    Reads the reply up to its first blank line; accepts "3, 7", "[3] and [7]",
    "3-5", "Sentence 4"; "none"/"no sentence" means an empty set.  Numbers
    outside 1..n are ignored; a reply with no number in range and no "none" is
    unusable.
    """
    if text is None:
        return None
    t = text.strip()
    t = re.split(r"\n\s*\n", t, maxsplit=1)[0] if t else t
    got: set[int] = set()
    num = r"(?<![\d.])(\d+)(?!\.\d|\d)"  # whole numbers only: "7.8" is not sentences 7 and 8
    for m in re.finditer(num + r"\s*(?:-|\u2013|to)\s*" + num + "|" + num, t):
        if m.group(3) is not None:
            k = int(m.group(3))
            if 1 <= k <= n:
                got.add(k - 1)
        else:
            a, b = int(m.group(1)), int(m.group(2))
            if 1 <= a <= b <= n and b - a < n:
                got.update(range(a - 1, b))
    if got:
        return got
    if re.search(r"\b(none|no sentences?|nothing|n/a)\b", t, re.I):
        return set()
    return None


def _plausible(marked: set[int], n: int, s: FilterSettings) -> bool:
    return not (len(marked) >= 3 and len(marked) > s.max_share * n)


def render_template(pool, model: str) -> Optional[str]:
    """The model's chat-rendered generation prompt with a placeholder for the user text, or None."""
    try:
        t = pool.call(model, "generation_prompt", _MARK)
    except Exception:  # noqa: BLE001 - engines without a chat template: fall back to plain text
        return None
    return t if isinstance(t, str) and t.count(_MARK) == 1 else None


def llm_filter(pool, model_cfg, cots: list[str], answers: list[Optional[str]],
               settings: Optional[FilterSettings] = None) -> list[FilterResult]:
    """Remove answer statements from every CoT with ``model_cfg``'s engine in ``pool``.

    One ``complete`` batch covers every window of every CoT; greedy decoding.
    """
    from pipeline.engine.core import Sampling

    s = settings or FilterSettings()
    budget = window_char_budget(model_cfg.max_model_len, s)
    split = [split_sentences(c or "") for c in cots]
    jobs = []  # (cot index, start, end)
    prompts = []
    for ci, sents in enumerate(split):
        for a, b in windows(sents, budget, s):
            jobs.append((ci, a, b))
            prompts.append(build_prompt(sents[a:b], answers[ci], s))
    replies: list[Optional[str]] = [None] * len(jobs)
    batch_error = None
    if jobs:
        template = render_template(pool, model_cfg.name)
        texts = [(template.replace(_MARK, p) if template else p + "\n\n") + REPLY_PREFIX for p in prompts]
        greedy = Sampling(0.0, 1.0, -1, seed=0)
        reqs = [{"text": t, "sampling": greedy, "max_tokens": s.max_tokens, "stop": ["\n\n"]} for t in texts]
        try:
            outs = pool.get(pool.submit(model_cfg.name, "complete", reqs))
            replies = [(o.get("texts") or [None])[0] for o in outs]
        except Exception as e:  # noqa: BLE001 - the rule filter takes over; recorded per row
            batch_error = f"{type(e).__name__}: {str(e)[:200]}"
    dropped: list[set[int]] = [set() for _ in cots]
    fell_back: list[list[str]] = [[] for _ in cots]
    for (ci, a, b), reply in zip(jobs, replies):
        marked = parse_reply(reply, b - a)
        why = None
        if batch_error:
            why = f"filter model failed: {batch_error}"
        elif marked is None:
            why = f"unparseable reply {str(reply)[:60]!r}"
        elif not _plausible(marked, b - a, s):
            why = f"implausible reply: {len(marked)} of {b - a} sentences marked"
        if why:
            fell_back[ci].append(why)
            marked = {k for k in range(b - a) if states_answer(split[ci][a + k], answers[ci])}
        dropped[ci].update(a + k for k in marked)
    out = []
    for ci, sents in enumerate(split):
        kept = "".join(t for i, t in enumerate(sents) if i not in dropped[ci])
        out.append(FilterResult(cot=kept, filter="llm->rule" if fell_back[ci] else "llm",
                                dropped=sorted(dropped[ci]), n_sentences=len(sents),
                                note="; ".join(fell_back[ci][:3]) or None))
    return out


__all__ = ["InProcessPool", "PROMPT", "PROMPT_VERSION", "REPLY_PREFIX", "FilterResult", "FilterSettings", "build_prompt",
           "llm_filter", "parse_reply", "windows", "window_char_budget"]


class InProcessPool:
    """A minimal pool over in-process engines (``{name: engine}``): benches and slow tests, no Ray."""

    def __init__(self, engines: dict):
        self.engines = engines

    def submit(self, name, method, *args, **kwargs):
        try:
            return ("ok", getattr(self.engines[name], method)(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - raised again by get(), like a Ray ref
            return ("err", e)

    def get(self, ref):
        kind, value = ref
        if kind == "err":
            raise value
        return value

    def wait(self, refs):
        return refs

    def call(self, name, method, *args, **kwargs):
        return self.get(self.submit(name, method, *args, **kwargs))
