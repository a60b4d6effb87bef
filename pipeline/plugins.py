"""The plug-ins config validates and hashes against, handed to :mod:`pipeline.config.plugins`.

config/ imports nothing above it; this module (above every plug-in layer) answers its
:class:`pipeline.config.plugins.Plugins` questions from the real registries, importing each
only when asked (so ``import pipeline`` stays cheap).  :func:`install` runs on ``import pipeline``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from pipeline.config.plugins import Kind
    from pipeline.config.schemas import DatasetConfig, ModelConfig


class Installed:
    """:class:`pipeline.config.plugins.Plugins` over the package's registries."""

    def names(self, kind: Kind) -> list[str]:
        if kind == "thinking format":
            from pipeline.engine.formats import FORMATS

            return FORMATS.names()
        if kind == "dataset":
            from pipeline.datasets import DATASETS

            return DATASETS.names()
        if kind == "consistency metric":
            from pipeline.scoring.consistency import METRICS

            return METRICS.names()
        from pipeline.stages import STAGES

        return STAGES.names()

    def format_definition(self, name: str) -> Optional[dict]:
        from pipeline.engine.formats import FORMATS

        return dataclasses.asdict(FORMATS.get(name)) if name in FORMATS else None

    def dataset_sources(self, ds: DatasetConfig) -> list[Path]:
        from pipeline.datasets import get_dataset

        return list(get_dataset(ds.name).sources(ds))

    def loader_version(self, dataset: str) -> str:
        from pipeline.datasets import get_dataset

        return _loader_version(type(get_dataset(dataset)))

    def metrics_error(self, metrics: list[str], dataset_options: dict) -> Optional[str]:
        from pipeline.scoring.similarity import SimilarityError, check_metrics

        try:
            check_metrics(metrics, dataset_options)
        except SimilarityError as e:
            return str(e)
        return None

    def resolved_dtype(self, dtype: str) -> str:
        from pipeline.engine.cpu_runtime import resolve_for_this_machine

        return resolve_for_this_machine(dtype).dtype

    def served_identity(self, model: ModelConfig) -> dict:
        from pipeline.engine.served_probe import served_identity

        return served_identity(model)

    def check_problems(self, store_root: Path, ds: DatasetConfig) -> None:
        from pipeline.stages.context import problems_ref, read_problems

        ref = problems_ref(store_root, ds)
        try:
            if ref.is_file() and (ref.parent / ref.read_text(encoding="utf-8").strip()).is_file():
                return
        except (OSError, UnicodeDecodeError, ValueError):
            pass  # a damaged .ref: load the data (the run reloads it too)
        read_problems(ds)


@functools.lru_cache(maxsize=None)
def _loader_version(cls: type) -> str:
    """Hash of the plug-in's module and the shared row-reading code: an edited prompt or parser reloads.

    Reloading is cheap, and downstream artifacts are keyed by the problems' rows (see
    :func:`pipeline.stages.context.load_problems`), so an edit that leaves the rows alone recomputes nothing.
    """
    from pipeline import schema
    from pipeline.datasets import protocol, rows

    h = hashlib.sha256()
    for mod in (inspect.getmodule(cls), rows, protocol, schema):
        src = inspect.getsourcefile(mod) if mod is not None else None
        if src is not None:
            h.update(Path(src).read_bytes())
    return h.hexdigest()[:16]


def install() -> None:
    from pipeline.config.plugins import install as into_config

    into_config(Installed())
