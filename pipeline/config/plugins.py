"""What config needs from the plug-ins above it, as a protocol the package hands in.

``config/`` is a leaf: no module in it imports from ``stages``, ``datasets``, ``scoring``,
``engine`` or ``text`` (a unit test walks the imports).  Validation and hashing still need a few
facts that live with the plug-ins — the names registered for each kind, a thinking format's
definition (part of a model's key), a dataset plug-in's data files and loader version (part of the
problems' key), the similarity metrics' own checks — so config declares them here as
:class:`Plugins`, and the package installs the real ones once on import
(``pipeline/__init__.py`` -> :class:`pipeline.plugins.Installed`).  Tests may install others.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional, Protocol

if TYPE_CHECKING:
    from pipeline.config.schemas import DatasetConfig, ModelConfig

Kind = Literal["thinking format", "dataset", "consistency metric", "stage"]


class Plugins(Protocol):
    def names(self, kind: Kind) -> list[str]:
        """The names registered for ``kind`` (what a config may choose from)."""
        ...

    def format_definition(self, name: str) -> Optional[dict]:
        """A thinking format's tags and stop strings as plain data; None when unknown."""
        ...

    def dataset_sources(self, ds: DatasetConfig) -> list[Path]:
        """The data files the dataset plug-in reads for ``ds`` (their content is part of the problems' key)."""
        ...

    def loader_version(self, dataset: str) -> str:
        """A hash of the dataset plug-in's code and the shared row reader: an edited loader reloads."""
        ...

    def metrics_error(self, metrics: list[str], dataset_options: dict) -> Optional[str]:
        """Why these score metrics cannot run here (one line naming the fix), or None."""
        ...

    def resolved_dtype(self, dtype: str) -> str:
        """The dtype an engine runs ``dtype`` in on this machine (``auto`` resolved from the CPU flags)."""
        ...

    def served_identity(self, model: ModelConfig) -> dict:
        """What a user-run served endpoint reports of its weights (``/v1/models``): part of the model's key."""
        ...

    def check_problems(self, store_root: Path, ds: DatasetConfig) -> None:
        """Raise a user error unless the dataset loads to some problems with unique ids (or the store holds them)."""
        ...


_installed: Optional[Plugins] = None


def install(p: Plugins) -> None:
    global _installed
    _installed = p


def plugins() -> Plugins:
    if _installed is None:
        raise RuntimeError("internal: no plug-ins installed in pipeline.config (import pipeline installs them)")
    return _installed
