"""What the pipeline needs from a dataset plug-in: the :class:`Dataset` protocol and its defaults.

A plug-in loads ``problems`` rows (the ``PROBLEMS`` schema) and knows how to extract and check
answers.  The ``strict`` consistency metric also asks how two answers compare
(:meth:`Dataset.normalize`, :meth:`Dataset.tolerance`); :class:`DatasetBase` gives the
defaults (whitespace- and case-insensitive text, exact match) that plug-ins override.

Plug-ins that offer more than ``extract``/``check``:

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
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol, runtime_checkable

import pyarrow as pa


from pipeline.errors import UserError

if TYPE_CHECKING:
    from pipeline.config import DatasetConfig


class DatasetError(UserError):
    """A dataset file or row is malformed; the message names the file, row and field (a user error: exit 2)."""


@runtime_checkable
class Dataset(Protocol):
    name: str  # registry name (also the ``dataset`` column value)

    def load(self, cfg: DatasetConfig) -> pa.Table: ...  # rows through rows.select (shuffle, limit)
    def extract(self, text: Optional[str]) -> Optional[str]: ...  # the answer in a model's free text
    def check(self, extracted: Optional[str], gold: dict) -> bool: ...  # correct against the JSON gold?
    def normalize(self, text: Optional[str], gold: dict) -> Optional[str]: ...  # comparison key (strict metric)
    def tolerance(self, gold: dict) -> float: ...  # numeric closeness counted as agreement (strict metric)
    def sources(
        self, cfg: DatasetConfig
    ) -> list[Path]: ...  # files/folders load() reads (their content keys `problems`)


class DatasetBase:
    """Defaults of the optional comparison methods of :class:`Dataset`."""

    def normalize(self, text: Optional[str], gold: dict) -> Optional[str]:
        return None if text is None else " ".join(str(text).split()).lower()

    def tolerance(self, gold: dict) -> float:
        return 0.0

    def sources(self, cfg: DatasetConfig) -> list[Path]:
        """``cfg.path`` as the loader will open it (``~`` expanded; a relative path the cwd lacks resolves
        from the repo root); empty when unset or absent, where ``load`` raises its own clear error."""
        return [p] if (p := resolve_data_path(cfg.path)) is not None else []


def resolve_data_path(path: Optional[str]) -> Optional[Path]:
    """An existing data file or folder for ``path`` (cwd first, then the repo root), or None."""
    if not path:
        return None
    p = Path(os.path.expanduser(str(path)))
    if not p.exists() and not p.is_absolute():
        repo = Path(__file__).resolve().parents[2]
        p = repo / p
    return p if p.exists() else None


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

    def judge(
        self, answer_text: Optional[str], answer: Optional[str], gold: dict[str, Any], checker: str
    ) -> Judgment: ...


@runtime_checkable
class FreeTextAnswers(Protocol):
    free_text: bool
