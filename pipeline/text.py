"""Text utilities shared by truncate and ensemble: sentence splitting and answer-statement removal.

``split_sentences`` is abbreviation- and decimal-aware ("e.g.", "Dr.", "3.5",
"mg/dL." stay intact) and keeps every character: ``"".join(pieces) == text``.
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

# Never end a sentence (titles, Latin, references) ...
_ABBREV = {"e.g", "i.e", "vs", "dr", "mr", "mrs", "ms", "prof", "approx", "fig", "no", "st", "jr", "sr",
           "cf", "al", "eq", "resp", "u.s"}
# ... while units and the like end one when a capitalised word follows ("... 5 mg/dL. The ...").
_SOFT_ABBREV = {"etc", "mg", "kg", "dl", "ml", "min", "max", "hr", "hrs", "wk", "wks", "yr", "yrs", "est",
                "inc", "ltd", "temp", "avg", "vol", "pt", "pts", "a.m", "p.m"}
# Candidate sentence ends: terminal punctuation (with closing quotes/brackets) then space/newline,
# or a blank line.
_END = re.compile(r"([.!?]+[\"')\]]*)(\s+)|(\n\s*\n)")


def split_sentences(text: str) -> list[str]:
    """Split into sentences; each piece keeps its trailing whitespace."""
    if not text:
        return []
    pieces, start = [], 0
    for m in _END.finditer(text):
        if m.group(3) is None:
            punct_end = m.end(1)
            before = text[start:punct_end]
            word = re.findall(r"([A-Za-z][A-Za-z.]*)\.$", before)
            w = word[-1].lower().rstrip(".") if word else ""
            if w in _ABBREV:
                continue
            if w in _SOFT_ABBREV and not text[m.end():m.end() + 1].isupper():
                continue
            # Decimal like "3." followed by digit never matches (needs whitespace), but a lone
            # enumerator "1." at the start of a line is a list marker, not a sentence end.
            if re.search(r"(^|\n)\s*\d{1,2}\.$", before):
                continue
            nxt = text[m.end():m.end() + 1]
            if nxt and nxt.islower() and m.group(1) == ".":
                continue  # "approx. five", "vs. the": lowercase continuation
        pieces.append(text[start:m.end()])
        start = m.end()
    if start < len(text):
        pieces.append(text[start:])
    return [p for p in pieces if p]


def cut_to_sentence(fragment: str) -> str:
    """Cut a generated fragment back to its last sentence end; whole fragment if none."""
    parts = split_sentences(fragment)
    if len(parts) <= 1:
        return fragment
    last = parts[-1]
    if re.search(r"[.!?][\"')\]]*\s*$", last) or last.endswith("\n"):
        return fragment
    return "".join(parts[:-1])


_CUES = re.compile(
    r"(final answer|the answer is|answer\s*[:=]|\\boxed|answer would be|the result is|"
    r"so the (?:total|score|result|value|answer)|therefore,? the|thus,? the|hence,? the|"
    r"\"answer\"\s*:)",
    re.I,
)
_CONCLUDE = re.compile(r"\b(so|thus|therefore|hence|total|final|result|equals|overall|comes to)\b|=", re.I)
# Words that, right before a small number, make the sentence a statement of the result
# ("the score is 4", "that's 4", "total of 4", "sum: 4", "would be 4", "probably 4").
_NEAR = (r"(?:score|total|sum|result|value|answer|answer:|that's|that is|it's|it is|would be|should be|"
         r"will be|must be|is likely|likely|probably|maybe|perhaps|around|approximately|about|get|gets|"
         r"got|gives a (?:total|score) of|adds up to|add up to|comes out to|totals?|sums? to|as|of|is|be|=|:)")
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
    return re.compile(r"\b" + _NEAR + r"\s*(?:\*\*)?\s*(?:[a-z]+\s+){0,1}(?<![\w.])(?:" + alts
                      + r")(?![\w]|\.\d)(?!\s*(?:[-\u2013]|to\s)\s*\d)(?!\s*(?:points?|pts?)\b\s*(?:for|if|each))",
                      re.I)


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


def keep_prefix(cot: str, fraction: float) -> str:
    """The first ``fraction`` of the CoT's sentences (at least one when non-empty)."""
    parts = split_sentences(cot)
    if not parts:
        return ""
    k = max(1, int(round(len(parts) * fraction)))
    return "".join(parts[:k])
