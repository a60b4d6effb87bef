"""The reference study's sentence-level ensemble rules as pure functions (selected by ``ensemble.*``).

Written from ``KoyenaPal/genex: MedCalc-Bench/evaluation/ensemble_thoughts.py``:

* candidates: each generator samples 15 new tokens with ``top_k=50`` after
  ``set_seed(42)`` — the seed is reset before *every* call, so every step
  draws from the same random stream (``ensemble.top_k=50``,
  ``ensemble.reseed_each_step=true``);
* cut (``truncate_to_last_sentence``): back to the last ``.``/``!``/``?`` that
  is not right after a digit and is followed by whitespace, the end or a
  capital letter, skipping ends whose last word is a decimal, a 1–4 letter
  word (``Dr.``, ``mg.``, ``Step.``) or a dotted abbreviation (``e.g.``); the
  whole fragment when there is no such end (:func:`study_cut`,
  ``ensemble.sentence_rule=study``);
* score (``compute_perplexities``): perplexity of the *whole* sequence
  (context + candidate, the model's mean token loss) averaged over
  evaluators, lowest wins (``ensemble.scoring=paper``; :func:`perplexity`);
* join: every context gets ``" " + candidate.strip()`` (:func:`study_join`,
  ``ensemble.join=space``).
"""

from __future__ import annotations

import math
import re

_END = re.compile(r"(?<!\d)([.!?])(?=\s|$|[A-Z])")
_DECIMAL = re.compile(r"\d+\.\d+$")
_SHORT = re.compile(r"[A-Za-z]{1,4}\.$")
_DOTTED = re.compile(r"(?:[A-Za-z]{1,4}\.){2,}$")


def _abbreviation(word: str) -> bool:
    w = word.lower()
    return bool(_DECIMAL.match(w) or _SHORT.match(w) or _DOTTED.match(w))


def study_cut(text: str) -> str:
    """The study's ``truncate_to_last_sentence`` (see module docstring); the result is stripped."""
    t = text.strip()
    last = None
    for m in _END.finditer(t):
        words = t[: m.end()].strip().split()
        if words and _abbreviation(words[-1]):
            continue
        last = m.end()
    return t if last is None else t[:last].strip()


def study_join(cot: str, sentence: str) -> str:
    """The study's join: a space, then the chosen candidate stripped."""
    return cot + " " + sentence.strip()


def perplexity(seq_mean_nll: float) -> float:
    """Perplexity from a whole-sequence mean NLL (``exp(loss)``); the ranking equals the NLL's."""
    return math.exp(seq_mean_nll)
