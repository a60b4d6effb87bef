"""The stage protocol: what the DAG runner (:mod:`pipeline.stages.dag`) needs from a stage.

A stage is a small class with a ``name``, the stages it ``requires``, a ``version`` and
``run(ctx) -> list[Path]`` returning the artifacts it produced.  Stages are registered
by import path in :data:`pipeline.stages.STAGES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pipeline.stages.context import Context


class Stage(Protocol):
    name: str
    requires: tuple[str, ...]
    version: str  # bump when a stage's logic changes its outputs

    def run(self, ctx: "Context") -> list[Path]: ...
