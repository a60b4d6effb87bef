"""LLM answer filter: a pool model marks the CoT sentences that state the final answer.

The model never rewrites text.  Each CoT is split into sentences
(:func:`pipeline.text.sentences.split_sentences`), the sentences are shown labelled
``S1``, ``S2``, ... in windows that fit the filter model's context, and the
model is asked for the *labels* of the sentences that state the final answer.
The CoT is then rebuilt from the original sentences it did not mark, so the
kept text is verbatim and in order by construction, whatever the model writes.

Robustness for small models:

* the prompt gives the final answer's value (when known), so the task is
  "which sentences give this value as the result", not open-ended judgement;
  it has no worked example (135M-parameter models copy examples' labels);
* only a reply that starts with a list of labels (``"S3, S7"``,
  ``"[S3] and [S7]"``, ``"S2-S4"``) or with "none" is used.  Labels carry an
  ``S`` so that a model repeating the answer value ("4") or echoing the CoT
  ("1. Okay, ...") or the prompt ("S1: We need ...") is not misread as
  marking sentences; labels outside the window are ignored;
* a window whose reply is unusable, or that marks an implausible share of its
  sentences (``max_share``), falls back to the rule-based filter
  (:func:`pipeline.text.answers.states_answer`) for that window.  The per-CoT
  ``filter`` value says what was used: ``"llm"`` (every window answered by the
  model) or ``"llm->rule"`` (at least one window fell back).  A *failed* engine
  call is never papered over here: it raises, and the truncate stage fails the
  item unless the user opted into ``truncate.on_filter_error=rule``.

Streaming: :func:`filter_one` handles one CoT (its windows in flight together),
so a CoT is filtered the moment it is written.  The chat template is rendered
once per model (``chat_template_marker``) and filled in for every window.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

from pipeline.engine.protocol import CompleteRequest, Completion, Sampling, TemplateQuery
from pipeline.text.answers import states_answer
from pipeline.text.sentences import split_sentences

log = logging.getLogger("crosscot")

# Bump when the prompt or the parsing changes (part of the truncate artifact key).
PROMPT_VERSION = 1

PROMPT = """Below are the sentences of a step-by-step reasoning text, labelled S1, S2, S3 and so on.
{answer_line}

{numbered}

Which sentences STATE THE FINAL ANSWER, that is, give the final result as a conclusion (like "So the score is ...", "The answer is ...", "Total = ...")? Sentences that only give facts, rules, formulas or intermediate steps do not.
Reply with the labels of those sentences separated by commas, or with the word none."""

ANSWER_LINE = "The final answer of this reasoning is {answer}."
NO_ANSWER_LINE = "The final answer of this reasoning is the result it concludes with."
# Primes the reply so that even a small model starts with the labels.
REPLY_PREFIX = "Sentences that state the final answer:"

# Placeholder for the user text in a rendered chat prompt (see ModelEngine.chat_template_marker).
MARK = "\u0000CROSSCOT_USER_PROMPT\u0000"


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
    windows: int = 0  # windows the CoT was shown in
    windows_rule: int = 0  # ... of which fell back to the rule filter


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
        size = len(_shown(sent, s)) + 8  # "S123: " + newline
        if i > start and (used + size > budget_chars or i - start >= s.max_sentences):
            out.append((start, i))
            start, used = i, 0
        used += size
    if start < len(sentences):
        out.append((start, len(sentences)))
    return out


def build_prompt(sentences: list[str], answer: Optional[str], s: FilterSettings) -> str:
    """User prompt for one window; sentences are numbered from 1."""
    numbered = "\n".join(f"S{k + 1}: {_shown(t, s)}" for k, t in enumerate(sentences))
    line = ANSWER_LINE.format(answer=answer) if answer else NO_ANSWER_LINE
    return PROMPT.format(answer_line=line, numbered=numbered)


_LABEL = r"S\s?(\d+)(?:\s*(?:-|\u2013|to)\s*S?\s?(\d+))?"
_SEP = r"\s*(?:,|;|&|\band\b|\s)\s*"
# A reply that starts with a list of labels ("S3, S7", "[S3] and [S7]", "S2-S4"), or "none".
_LIST = re.compile(r"^[\s\[(*]*(?:" + _LABEL + r")(?:[\])*]*" + _SEP + r"[\[(*]*(?:" + _LABEL + r"))*")
_NONE = re.compile(r"^[\s\[(*\"']*(?:none|no sentences?|nothing|n/a)\b", re.I)


def parse_reply(text: Optional[str], n: int) -> Optional[set[int]]:
    """0-based indices of the marked sentences, or None when the reply is unusable.

    Only a reply that *starts* (on its first non-empty line) with a list of
    sentence labels ("S3, S7", "[S3] and [S7]", "S2-S4") or with "none" is
    used; what follows the list is ignored.  Labels outside S1..Sn are
    ignored, and a list with none in range is unusable.  Bare numbers are
    never read as labels: a model repeating the answer value ("4") or
    echoing the text ("1. Okay, ...", "S1: We need ...") gets the rule filter instead.
    """
    if text is None:
        return None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    first = lines[0].strip()
    m = _LIST.match(first)
    if m and first[m.end() :].lstrip(" ])*").startswith(":"):
        return None  # "S1: We need ..." is the prompt echoed back, not an answer
    if m:
        got: set[int] = set()
        for lab in re.finditer(_LABEL, m.group(0)):
            a = int(lab.group(1))
            b = int(lab.group(2)) if lab.group(2) else a
            if 1 <= a <= b <= n:
                got.update(range(a - 1, b))
        return got or None
    if _NONE.match(first):
        return set()
    return None


def _plausible(marked: set[int], n: int, s: FilterSettings) -> bool:
    return not (len(marked) >= 3 and len(marked) > s.max_share * n)


async def filter_one(
    call: Callable[[CompleteRequest], Awaitable[Completion]],
    model_cfg,
    template: Optional[str],
    cot: str,
    answer: Optional[str],
    settings: Optional[FilterSettings] = None,
) -> FilterResult:
    """Remove the answer statements of ONE CoT; ``call(request)`` runs one ``complete`` item on the filter model.

    Every window of the CoT goes out at once (greedy).  ``template`` is the model's
    rendered chat prompt around :data:`MARK` (``ModelEngine.chat_template_marker``),
    or None for plain text.  A window whose reply is unusable falls back to the rule
    filter for that window (recorded); a FAILED call raises (the caller decides).
    """
    s = settings or FilterSettings()
    sents = split_sentences(cot or "")
    wins = windows(sents, window_char_budget(model_cfg.max_model_len, s), s)
    greedy = Sampling(0.0, 1.0, -1, seed=0)
    # No stop string: small models often open with a blank line; the parser reads the first line.
    reqs = [
        CompleteRequest(
            text=(
                template.replace(MARK, build_prompt(sents[a:b], answer, s))
                if template
                else build_prompt(sents[a:b], answer, s) + "\n\n"
            )
            + REPLY_PREFIX,
            sampling=greedy,
            max_tokens=s.max_tokens,
        )
        for a, b in wins
    ]
    outs = await asyncio.gather(*(call(r) for r in reqs))
    replies = [(o.texts or [None])[0] for o in outs]
    dropped: set[int] = set()
    fell_back: list[str] = []
    for (a, b), reply in zip(wins, replies):
        marked = parse_reply(reply, b - a)
        why = None
        if marked is None:
            why = f"unparseable reply {str(reply)[:60]!r}"
        elif not _plausible(marked, b - a, s):
            why = f"implausible reply: {len(marked)} of {b - a} sentences marked"
        if why:
            fell_back.append(why)
            marked = {k for k in range(b - a) if states_answer(sents[a + k], answer)}
        dropped.update(a + k for k in marked)
    kept = "".join(t for i, t in enumerate(sents) if i not in dropped)
    return FilterResult(
        cot=kept,
        filter="llm->rule" if fell_back else "llm",
        dropped=sorted(dropped),
        n_sentences=len(sents),
        note="; ".join(fell_back[:3]) or None,
        windows=len(wins),
        windows_rule=len(fell_back),
    )


def llm_filter(
    pool, model_cfg, cots: list[str], answers: list[Optional[str]], settings: Optional[FilterSettings] = None
) -> list[FilterResult]:
    """:func:`filter_one` for many CoTs at once on ``model_cfg``'s engine in ``pool`` (benches, tests).

    Every window of every CoT is in flight together.  A failed engine call raises.
    """
    template = pool.call(model_cfg.name, TemplateQuery())

    async def call(req: CompleteRequest) -> Completion:
        return await pool.op(model_cfg.name, req)

    async def run() -> list[FilterResult]:
        return list(
            await asyncio.gather(
                *(filter_one(call, model_cfg, template, c, a, settings) for c, a in zip(cots, answers))
            )
        )

    res = asyncio.run(run())
    n_rule = sum(r.windows_rule for r in res)
    if n_rule:
        log.warning(
            "LLM answer filter %s: %d of %d windows unusable (rule filter used there)",
            model_cfg.name,
            n_rule,
            sum(r.windows for r in res),
        )
    return res


__all__ = [
    "MARK",
    "PROMPT",
    "PROMPT_VERSION",
    "REPLY_PREFIX",
    "FilterResult",
    "FilterSettings",
    "build_prompt",
    "filter_one",
    "llm_filter",
    "parse_reply",
    "windows",
    "window_char_budget",
]
