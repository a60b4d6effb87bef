"""Dataset plug-ins: each loads ``problems`` rows and knows how to extract and check answers.

A plug-in is an object with

* ``name`` — registry name (also the ``dataset`` column value);
* ``load(cfg) -> pa.Table`` with the ``PROBLEMS`` schema (``cfg`` is a
  :class:`pipeline.config.DatasetConfig`);
* ``extract(text) -> str | None`` — the answer in a model's free text;
* ``check(extracted, gold: dict) -> bool`` — correctness against the JSON gold.

Plug-ins are registered lazily by import path so heavy readers load on demand.
"""

from __future__ import annotations

from pipeline.registry import Registry

DATASETS: Registry = Registry("dataset")
DATASETS.register("toy_arith", "pipeline.datasets.toy:ToyArith")
DATASETS.register("medcalc", "pipeline.datasets.medcalc:MedCalc")
DATASETS.register("gsm8k", "pipeline.datasets.gsm8k:GSM8K")
DATASETS.register("instruction_induction", "pipeline.datasets.instruction_induction:InstructionInduction")
DATASETS.register("jsonl", "pipeline.datasets.jsonl:JsonlDataset")


def get_dataset(name: str):
    """Instantiate the plug-in registered as ``name``."""
    return DATASETS.get(name)()
