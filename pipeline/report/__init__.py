"""Render a run's result tables into ``report.md`` and a self-contained ``report.html``.

``render(run_dir)`` reads ``<run_dir>/tables/*.csv`` (written by
pipeline.scoring.tables), draws plots into ``<run_dir>/plots/`` and writes the
two report files.  The work is done in :mod:`pipeline.report.writer` (not
called ``render``: a submodule of that name would shadow this function once
imported); this module imports it lazily so ``import pipeline.report`` stays
cheap (matplotlib is only imported when plotting).
"""

from __future__ import annotations

from pathlib import Path


def render(
    run_dir: Path, extra_sections: list[tuple[str, str]] | None = None, include_telemetry: bool | None = None
) -> Path:
    """Write ``report.md``/``report.html`` for ``run_dir``; returns the HTML path.

    ``telemetry.json`` is dumped raw only when ``extra_sections`` is None
    (override with ``include_telemetry``).
    """
    from pipeline.report.writer import render as _render

    return _render(Path(run_dir), extra_sections, include_telemetry)


__all__ = ["render"]
