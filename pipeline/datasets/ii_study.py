"""The reference study's Instruction Induction protocol: task subset, prompt, forced answer, normalization.

The study's II scripts are public (``instruction-induction/`` of its code
release: ``optimized_execute_instructions.py`` runs the models,
``compare_models_bert.py`` compares two models' answers); each item below
follows them and is checked against its released comparisons
(``../shared/data/genex-ii-comparisons``) by tests/unit/datasets/test_ii_study.py:

* **Tasks** — the 20 tasks named by the per-task JSON files: 8 of the
  benchmark's original tasks and 12 of the study's added ones (``STUDY_TASKS``).
* **Prompts** — 5 per task: ``random.seed(42); random.sample(keys, 5)``
  (``study_keys``); it gives exactly the released item keys (``4 15 36 82 95``
  of the 100 prompts of an original task, ``1 2 5 11 12`` of the 15 of an added one).
* **Prompt text** — the benchmark's induction prompt, verbatim (the file's
  ``input``, ending "The instruction was"), as the only user turn.
* **Budgets** — ``--max_tokens 2048``: the model thinks for ``2048 - 30 =
  2018`` new tokens, then answers for 30 (``THINK_TOKENS``/``ANSWER_TOKENS``);
  inputs are truncated at 4096 tokens; gpt-oss runs at reasoning effort
  "low" for every setting, with real Harmony tokens around a given CoT; a
  ``<think>`` is added only where the template has not opened one.
* **Forced answer** — ``FORCED_PREFIX`` (" The instruction is:") is placed
  after the thinking; the stored answers start with it.
* **Normalization** (:func:`normalize_answer`, ``compare_models_bert.py``'s
  ``normalize_prediction``) — ``<|return|>``, ``<|im_end|>``,
  ``<|endoftext|>``, ``<|begin_of_solution|>``, "### Analysis:" and
  "**Pattern Recognition**:" removed; paired ``**…**`` then ``*…*`` stripped;
  whitespace collapsed; the text after the last "The instruction is:"; double
  then single quotes stripped from both ends; lowercased.  Under
  ``MIN_CHARS`` characters the pair's similarity is 0 (:func:`too_short`).

On all 11,000 released items this rule gives "normalized answers identical"
exactly for the stored F1 = 1 pairs (13) and "an answer under 3 characters"
exactly for the stored F1 = 0 pairs (24), with no exception.
``strip_markdown`` additionally removes the markdown the script leaves
(unpaired ``**``, backticks, headings, bullets): an option, off in the study.
"""

from __future__ import annotations

import random
import re
from typing import Optional, Sequence

# Released per-task files (genex-ii-comparisons/*/<task>_bert_comparison_*.json).
STUDY_ORIGINAL_TASKS = (
    "cause_and_effect",
    "larger_animal",
    "num_to_verbal",
    "orthography_starts_with",
    "rhymes",
    "synonyms",
    "taxonomy_animal",
    "translation_en-fr",
)
STUDY_ADDED_TASKS = (
    "alternate_synonym_antonym",
    "detect_rhyme_and_rewrite",
    "first_word_alphabetically_return_reverse",
    "least_unique_word_count",
    "most_consonant_return_vowel",
    "most_vowel_return_consonant",
    "multi_lang_to_english",
    "rank_by_protein",
    "reverse_from_middle",
    "smallest_even_no_sqrt",
    "smallest_item_length",
    "square_of_zodiac_animal",
)
STUDY_TASKS = STUDY_ORIGINAL_TASKS + STUDY_ADDED_TASKS
PER_TASK = 5
SAMPLE_SEED = 42
FORCED_PREFIX = " The instruction is:"
MARKER = FORCED_PREFIX.strip()
THINK_END = "</think>"
MIN_CHARS = 3

THINK_TOKENS = 2018  # --max_tokens 2048 minus the 30-token answer
ANSWER_TOKENS = 30
MAX_INPUT_TOKENS = 4096  # tokenizer(..., truncation=True, max_length=4096)
_REMOVED = (
    "<|return|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|begin_of_solution|>",
    "### Analysis:",
    "**Pattern Recognition**:",
)
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_ITALIC = re.compile(r"\*([^*]+)\*")
_SPACE = re.compile(r"\s+")
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
    for tok in _REMOVED:
        text = text.replace(tok, "")
    text = _BOLD.sub(r"\1", text)
    text = _ITALIC.sub(r"\1", text)
    if strip_markdown:
        text = _MARKDOWN.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    if MARKER in text:
        text = text.split(MARKER)[-1].strip()
    return text.strip('"').strip("'").lower()


def too_short(a: Optional[str], b: Optional[str]) -> bool:
    """The study's rule: a pair with an answer under ``MIN_CHARS`` characters scores 0."""
    return len(a or "") < MIN_CHARS or len(b or "") < MIN_CHARS
