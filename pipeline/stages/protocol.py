"""The stage protocols: what the DAG runner (:mod:`pipeline.stages.dag`) needs from a stage.

Two kinds of stage, both small classes with a ``name``, the stages they ``requires`` and a
``version`` (bumped when a stage's logic changes its outputs), registered by import path in
:data:`pipeline.stages.STAGES`:

* :class:`StreamStage` — the engine stages (generate, ensemble, truncate, transfer), run item
  by item inside one :class:`pipeline.stages.runner.Flow`: they open their artifacts' sinks,
  submit their own items (``source``), react to upstream rows (``on_event``), and write their
  artifacts when every row is done (``finish``);
* :class:`Stage` — stages that need every row first (score, report): ``run(ctx)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.stages.context import Context

if TYPE_CHECKING:
    from pipeline.stages.runner import Flow


class Stage(Protocol):
    name: str
    requires: tuple[str, ...]
    version: str  # bump when a stage's logic changes its outputs

    def run(self, ctx: "Context") -> list[Path]: ...


class StreamStage(Protocol):
    """An engine stage run item by item inside a :class:`pipeline.stages.runner.Flow`."""

    name: str
    requires: tuple[str, ...]
    version: str
    consumes: tuple[str, ...]  # event kinds it reacts to ("generation", "cot")

    def models(self, ctx: Any) -> list[str]:
        """Models this stage may send work to (empty when its artifacts are complete)."""
        ...

    def open(self, ctx: Any) -> None:
        """Create the stage's sinks (artifact paths are known before any row exists)."""
        ...

    async def source(self, flow: "Flow") -> None:
        """Submit the stage's own items (generate, ensemble); others return at once."""
        ...

    def on_event(self, flow: "Flow", kind: str, row: dict) -> None:
        """React to an upstream row (replayed or new)."""
        ...

    def sinks(self) -> list:
        """The stage's :class:`pipeline.store.sink.RowSink` s (flushed by the flow)."""
        ...

    def finish(self, ctx: Any) -> list:
        """Write the stage's artifacts (every row is done); their paths."""
        ...
