"""Dataset plug-ins: each loads ``problems`` rows and knows how to extract and check answers.

A plug-in implements :class:`pipeline.datasets.protocol.Dataset` (``name``, ``load``,
``extract``, ``check``, and the comparison methods ``normalize`` / ``tolerance`` with defaults
in :class:`~pipeline.datasets.protocol.DatasetBase`).  File-based plug-ins share one row reader
and one ``on_bad_row`` handling (:mod:`pipeline.datasets.rows`).

Plug-ins are registered lazily by import path so heavy readers load on demand.
"""

from __future__ import annotations

from functools import lru_cache

from pipeline.datasets.protocol import Dataset
from pipeline.registry import Registry

DATASETS: Registry = Registry("dataset")
DATASETS.register("toy_arith", "pipeline.datasets.toy:ToyArith")
DATASETS.register("medcalc", "pipeline.datasets.medcalc:MedCalc")
DATASETS.register("gsm8k", "pipeline.datasets.gsm8k:GSM8K")
DATASETS.register("instruction_induction", "pipeline.datasets.instruction_induction:InstructionInduction")
DATASETS.register("jsonl", "pipeline.datasets.jsonl:JsonlDataset")


def get_dataset(name: str) -> Dataset:
    """A new instance of the plug-in registered as ``name`` (loading keeps per-load state, e.g. ``skipped``)."""
    return DATASETS.get(name)()


@lru_cache(maxsize=None)
def shared_dataset(name: str) -> Dataset:
    """One instance of plug-in ``name`` per process, for scoring (``extract``/``check`` keep no state)."""
    return get_dataset(name)
