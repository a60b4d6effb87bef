"""Text utilities shared by truncate and ensemble: sentence splitting and answer-statement removal.

``split_sentences`` is abbreviation- and decimal-aware ("e.g.", "Dr.", "3.5",
"mg/dL." stay intact) and keeps every character: ``"".join(pieces) == text``.
``remove_answer_statements`` is the rule-based "without answer" filter: it
drops sentences that state the final answer and keeps every other sentence
verbatim and in order; ``leaks`` audits whether the answer still appears.
"""

from __future__ import annotations

import re

_ABBREV = {
    "e.g", "i.e", "etc", "vs", "dr", "mr", "mrs", "ms", "prof", "approx", "fig", "no", "st", "jr", "sr",
    "mg", "kg", "dl", "ml", "min", "max", "hr", "hrs", "wk", "wks", "yr", "yrs", "cf", "al", "est",
    "inc", "ltd", "resp", "temp", "avg", "eq", "vol", "pt", "pts", "u.s", "a.m", "p.m",
}
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
            if word and word[-1].lower().rstrip(".") in _ABBREV:
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


def _num_pattern(answer: str) -> re.Pattern | None:
    a = (answer or "").strip()
    if not a:
        return None
    return re.compile(r"(?<![\w.])" + re.escape(a) + r"(?![\w]|\.\d)")


def states_answer(sentence: str, answer: str | None) -> bool:
    """True when a sentence states the final answer."""
    if _CUES.search(sentence):
        return True
    pat = _num_pattern(answer) if answer else None
    return bool(pat and pat.search(sentence) and _CONCLUDE.search(sentence))


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
