"""Stage `report`: render tables, heatmaps and the run summary into report.md / report.html."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.stages.base import Context, timed


def telemetry_markdown(tel: dict) -> str:
    lines = [f"- wall time: {tel.get('wall_seconds', 0):.1f} s",
             f"- share of wall time outside the engines: {tel.get('outside_engine_share', 0):.1%}"]
    for st, sec in tel.get("stage_seconds", {}).items():
        lines.append(f"- stage `{st}`: {sec:.1f} s")
    eng = tel.get("engines", {})
    if eng:
        lines += ["", "| engine | requests | prefilled tok | cached tok | generated tok | engine s | gen tok/s |",
                  "|---|---|---|---|---|---|---|"]
        for n, s in eng.items():
            tps = s["generated_tokens"] / s["engine_seconds"] if s.get("engine_seconds") else 0.0
            lines.append(f"| {n} | {s['requests']} | {s['prefill_tokens']} | {s['cached_tokens']} | "
                         f"{s['generated_tokens']} | {s['engine_seconds']:.1f} | {tps:.0f} |")
    if tel.get("error_rows"):
        lines.append(f"\n- errored requests: {tel['error_rows']} ({tel.get('error_share', 0):.1%}); see tables/errors.csv")
    return "\n".join(lines)


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
            path = render(ctx.run_dir, extra_sections=extra)
            return [Path(path)]
