"""The reference study's Instruction Induction protocol: task subset, prompt, forced answer, normalization.

The study's own II code is not public in a form we could read (KoyenaPal/genex's
``instruction-induction/`` folder holds no scripts in the stored copies), so
every item below is read off its released comparisons
(``../shared/data/genex-ii-comparisons``) and checked there by tests
(tests/pipeline/datasets/test_ii_study.py):

* **Tasks** — the 20 tasks named by the per-task JSON files: 8 of the
  benchmark's original tasks and 12 of the study's added ones (``STUDY_TASKS``).
* **Prompts** — 5 per task: ``random.Random(42).sample`` of the task's prompt
  keys in file order (``study_keys``); it gives exactly the released item keys
  (``4 15 36 82 95`` of the 100 prompts of an original task, ``1 2 5 11 12``
  of the 15 of an added one).
* **Prompt text** — the benchmark's induction prompt, verbatim (the file's
  ``input``, ending "The instruction was"), as the only user turn: the
  released "sampling" outputs echo the rendered conversations.
* **Forced answer** — ``FORCED_PREFIX`` (" The instruction is:") is placed
  after the thinking; the stored answers start with it.
* **Normalization** (:func:`normalize_answer`) — the text after the last
  ``</think>``, special tokens (``<|...|>``, ``<｜...｜>``) removed, the text
  after the last (case-sensitive) "The instruction is:", whitespace and
  straight double quotes stripped, lowercased.  Under ``MIN_CHARS``
  characters the pair's similarity is 0 (:func:`too_short`).

On all 11,000 released items, "stored F1 == 0" coincides with "one normalized
answer is under 3 characters" on 10,996 and "stored F1 == 1" with "normalized
answers identical" on all 11,000.  Markdown: the paper says answers were
stripped of markdown, but the released scores show ``**`` was kept (six pairs
that differ only by ``**``/curly quotes score 0.69-0.99, not 1), so
``strip_markdown`` is off by default and available as an option.
"""

from __future__ import annotations

import random
import re
from typing import Optional, Sequence

# Released per-task files (genex-ii-comparisons/*/<task>_bert_comparison_*.json).
STUDY_ORIGINAL_TASKS = (
    "cause_and_effect", "larger_animal", "num_to_verbal", "orthography_starts_with", "rhymes",
    "synonyms", "taxonomy_animal", "translation_en-fr",
)
STUDY_ADDED_TASKS = (
    "alternate_synonym_antonym", "detect_rhyme_and_rewrite", "first_word_alphabetically_return_reverse",
    "least_unique_word_count", "most_consonant_return_vowel", "most_vowel_return_consonant",
    "multi_lang_to_english", "rank_by_protein", "reverse_from_middle", "smallest_even_no_sqrt",
    "smallest_item_length", "square_of_zodiac_animal",
)
STUDY_TASKS = STUDY_ORIGINAL_TASKS + STUDY_ADDED_TASKS
PER_TASK = 5
SAMPLE_SEED = 42
FORCED_PREFIX = " The instruction is:"
MARKER = FORCED_PREFIX.strip()
THINK_END = "</think>"
MIN_CHARS = 3

_SPECIAL = re.compile(r"<\|[^|<>]*\|>|<｜[^｜<>]*｜>")
_MARKDOWN = re.compile(r"\*\*|__|`+|^#+[ \t]*|^[ \t]*[-*+][ \t]+", re.M)


def study_keys(keys: Sequence[str], n: int = PER_TASK, seed: int = SAMPLE_SEED) -> list[str]:
    """The study's prompts of one task: ``n`` keys sampled with ``random.Random(seed)``, in file order."""
    keys = list(keys)
    chosen = set(random.Random(seed).sample(keys, min(n, len(keys))))
    return [k for k in keys if k in chosen]


def normalize_answer(text: Optional[str], strip_markdown: bool = False) -> str:
    """The study's comparison form of one answer (see the module docstring); "" for none."""
    if not text:
        return ""
    text = text.rsplit(THINK_END, 1)[-1]
    text = _SPECIAL.sub(" ", text)
    if strip_markdown:
        text = _MARKDOWN.sub("", text)
    i = text.rfind(MARKER)
    if i >= 0:
        text = text[i + len(MARKER):]
    return text.strip().strip('"').strip().lower()


def too_short(a: Optional[str], b: Optional[str]) -> bool:
    """The study's rule: a pair with an answer under ``MIN_CHARS`` characters scores 0."""
    return len(a or "") < MIN_CHARS or len(b or "") < MIN_CHARS
