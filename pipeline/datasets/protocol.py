"""Protocols of dataset plug-ins that offer more than ``extract``/``check``.

:class:`CheckerJudge` — a plug-in with several answer checkers (MedCalc:
``lenient`` and ``official``) judges a reply in one call and says what the
paper metric should compare (:class:`Judgment`).  Scoring selects the
checker with ``dataset.options.checker`` or ``crosscot score --checker``.

:class:`FreeTextAnswers` — a plug-in whose answers are free text, compared
pairwise by similarity (the ``embedding`` / ``bertscore`` consistency metrics,
pipeline.scoring.similarity); items of other plug-ins do not count there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, runtime_checkable


@dataclass(frozen=True)
class Judgment:
    """One answer judged by one checker."""

    answer: Optional[str]  # the form the paper metric compares (see the plug-in's judge)
    extracted: Optional[str]  # the answer the checker extracted
    correct: bool


@runtime_checkable
class CheckerJudge(Protocol):
    checkers: tuple[str, ...]
    default_checker: str

    def judge(self, answer_text: Optional[str], answer: Optional[str], gold: dict[str, Any],
              checker: str) -> Judgment: ...


@runtime_checkable
class FreeTextAnswers(Protocol):
    free_text: bool
