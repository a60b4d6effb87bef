"""Stage `report`: render tables, heatmaps and the run summary into report.md / report.html."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.report.telemetry import telemetry_markdown
from pipeline.stages.context import Context, timed


class ReportStage:
    name = "report"
    requires = ("score",)
    version = "1"

    def run(self, ctx: Context) -> list[Path]:
        from pipeline.report import render

        with timed(ctx, self.name):
            extra = []
            tel_path = ctx.run_dir / "telemetry.json"
            if tel_path.exists():
                extra.append(("Run summary", telemetry_markdown(json.loads(tel_path.read_text()))))
            from pipeline.report.ensemble import ensemble_section

            ens = None
            if ctx.cfg.ensemble.enabled:
                from pipeline.stages.ensemble import ensemble_source
                from pipeline.store.artifacts import read_provenance

                reasons = {}
                for p in ctx.outputs.get("ensemble", []):
                    if Path(p).exists():
                        src = ensemble_source(list(ctx.cfg.ensemble.generators), list(ctx.cfg.ensemble.evaluators))
                        reasons[src] = read_provenance(p).get("stop_reasons") or {}
                ens = ensemble_section(ctx.run_dir, reasons or None)
            if ens is not None:
                extra.append(ens)
            path = render(ctx.run_dir, extra_sections=extra)
            return [Path(path)]
