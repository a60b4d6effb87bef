"""Sentence splitting shared by truncate and ensemble.

``split_sentences`` is abbreviation- and decimal-aware ("e.g.", "Dr.", "3.5",
"mg/dL." stay intact) and keeps every character: ``"".join(pieces) == text``.
``cut_to_sentence`` and ``keep_prefix`` cut text on those boundaries.
"""

from __future__ import annotations

import re

# Never end a sentence (titles, Latin, references) ...
_ABBREV = {
    "e.g",
    "i.e",
    "vs",
    "dr",
    "mr",
    "mrs",
    "ms",
    "prof",
    "approx",
    "fig",
    "no",
    "st",
    "jr",
    "sr",
    "cf",
    "al",
    "eq",
    "resp",
    "u.s",
}


# ... while units and the like end one when a capitalised word follows ("... 5 mg/dL. The ...").
_SOFT_ABBREV = {
    "etc",
    "mg",
    "kg",
    "dl",
    "ml",
    "min",
    "max",
    "hr",
    "hrs",
    "wk",
    "wks",
    "yr",
    "yrs",
    "est",
    "inc",
    "ltd",
    "temp",
    "avg",
    "vol",
    "pt",
    "pts",
    "a.m",
    "p.m",
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
            w = word[-1].lower().rstrip(".") if word else ""
            if w in _ABBREV:
                continue
            if w in _SOFT_ABBREV and not text[m.end() : m.end() + 1].isupper():
                continue
            # Decimal like "3." followed by digit never matches (needs whitespace), but a lone
            # enumerator "1." at the start of a line is a list marker, not a sentence end.
            if re.search(r"(^|\n)\s*\d{1,2}\.$", before):
                continue
            nxt = text[m.end() : m.end() + 1]
            if nxt and nxt.islower() and m.group(1) == ".":
                continue  # "approx. five", "vs. the": lowercase continuation
        pieces.append(text[start : m.end()])
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


def keep_prefix(cot: str, fraction: float) -> str:
    """The first ``fraction`` of the CoT's sentences (at least one when non-empty)."""
    parts = split_sentences(cot)
    if not parts:
        return ""
    k = max(1, int(round(len(parts) * fraction)))
    return "".join(parts[:k])
