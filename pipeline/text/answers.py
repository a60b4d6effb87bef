"""The rule-based answer filter: which sentences state the final answer, and does the answer leak.

``remove_answer_statements`` is the rule-based "without answer" filter: it
drops sentences that state the final answer and keeps every other sentence
verbatim and in order; ``leaks`` audits whether the answer still appears.
Both match the answer in any of its written forms (:func:`answer_forms`:
"5.0" also as "5").  A sentence states the answer when it has an answer cue,
or contains a distinctive answer (decimal, > 10, date) at all, or contains a
small-integer answer in a concluding context (see :func:`states_answer`).
"""

from __future__ import annotations

import re

from pipeline.text.sentences import split_sentences

_CUES = re.compile(
    r"(final answer|the answer is|answer\s*[:=]|\\boxed|answer would be|the result is|"
    r"so the (?:total|score|result|value|answer)|therefore,? the|thus,? the|hence,? the|"
    r"\"answer\"\s*:)",
    re.I,
)


_CONCLUDE = re.compile(r"\b(so|thus|therefore|hence|total|final|result|equals|overall|comes to)\b|=", re.I)


# Words that, right before a small number, make the sentence a statement of the result
# ("the score is 4", "that's 4", "total of 4", "sum: 4", "would be 4", "probably 4").
_NEAR = (
    r"(?:score|total|sum|result|value|answer|answer:|that's|that is|it's|it is|would be|should be|"
    r"will be|must be|is likely|likely|probably|maybe|perhaps|around|approximately|about|get|gets|"
    r"got|gives a (?:total|score) of|adds up to|add up to|comes out to|totals?|sums? to|as|of|is|be|=|:)"
)


# Rule-set version: part of the truncate artifact key (bump whenever detection changes).
RULES_VERSION = 2


def answer_forms(answer: str | None) -> list[str]:
    """Written forms of an answer a CoT may use: as given, plus its plain numeric form.

    ``"5.0"`` -> ``["5.0", "5"]``; ``"0.36700000000000005"`` -> ``[..., "0.367"]``;
    ``"7.50"`` -> ``["7.50", "7.5"]``.  Non-numeric answers (dates, tuples) stay as given.
    """
    a = (answer or "").strip()
    if not a:
        return []
    forms = [a]
    try:
        v = float(a)
    except ValueError:
        return forms
    if v != v or v in (float("inf"), float("-inf")):
        return forms
    alt = str(int(v)) if v == int(v) and abs(v) < 1e15 else format(v, ".10g")
    if alt not in forms:
        forms.append(alt)
    return forms


def is_distinctive(answer: str | None) -> bool:
    """Is the answer specific enough that any sentence containing it states it?

    Small integers (|v| <= 10: most scores) also appear as criterion points, list
    numbers and thresholds, so they need a concluding context; everything else
    (decimals, larger numbers, dates) is a result wherever it appears.
    """
    forms = answer_forms(answer)
    if not forms:
        return False
    try:
        v = float(forms[0])
    except ValueError:
        return True
    return not (v == int(v) and abs(v) <= 10)


def _num_pattern(answer: str) -> re.Pattern | None:
    forms = answer_forms(answer)
    if not forms:
        return None
    alts = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    return re.compile(r"(?<![\w.])(?:" + alts + r")(?![\w]|\.\d)")


def _near_pattern(answer: str) -> re.Pattern | None:
    forms = answer_forms(answer)
    if not forms:
        return None
    alts = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    return re.compile(
        r"\b"
        + _NEAR
        + r"\s*(?:\*\*)?\s*(?:[a-z]+\s+){0,1}(?<![\w.])(?:"
        + alts
        + r")(?![\w]|\.\d)(?!\s*(?:[-\u2013]|to\s)\s*\d)(?!\s*(?:points?|pts?)\b\s*(?:for|if|each))",
        re.I,
    )


def states_answer(sentence: str, answer: str | None) -> bool:
    """True when a sentence states the final answer.

    A sentence states it when it has an answer cue ("final answer", "the answer
    is", ``\\boxed``), or contains the answer (in any of :func:`answer_forms`)
    and either the answer is distinctive (:func:`is_distinctive`), or the
    sentence concludes ("so", "total", "=") or names it as a result right
    before the number ("score is 4", "that's 4", "probably 4").
    """
    if _CUES.search(sentence):
        return True
    pat = _num_pattern(answer) if answer else None
    if not (pat and pat.search(sentence)):
        return False
    if is_distinctive(answer) or _CONCLUDE.search(sentence):
        return True
    near = _near_pattern(answer)
    return bool(near and near.search(sentence))


def remove_answer_statements(cot: str, answer: str | None) -> str:
    """The CoT without sentences that state the final answer (others verbatim, in order)."""
    return "".join(s for s in split_sentences(cot) if not states_answer(s, answer))


def leaks(text: str, answer: str | None) -> bool:
    """Does ``answer`` still appear in ``text`` (as a whole token)?"""
    pat = _num_pattern(answer) if answer else None
    return bool(pat and pat.search(text))


def leak_spans(text: str, answer: str | None) -> list[tuple[int, int]]:
    """Where :func:`leaks` finds ``answer`` in ``text``: ``(start, end)`` of every hit."""
    pat = _num_pattern(answer) if answer else None
    return [m.span() for m in pat.finditer(text)] if pat else []
