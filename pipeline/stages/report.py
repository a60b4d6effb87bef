"""Stage `report`: render tables, heatmaps and the run summary into report.md / report.html."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.stages.base import Context, timed


def telemetry_markdown(tel: dict) -> str:
    summ = tel.get("summary", {})
    lines = [f"- wall time: {tel.get('wall_seconds', 0):.1f} s",
             f"- share of wall time outside the engines: {tel.get('outside_engine_share', 0):.1%}"]
    if summ:
        lines += [f"- tokens: {summ.get('prefill_tokens', 0)} prefilled, {summ.get('cached_tokens', 0)} from the "
                  f"prefix cache, {summ.get('generated_tokens', 0)} generated over {summ.get('requests', 0)} requests",
                  f"- engines: {summ.get('engines', 0)} models, {summ.get('engine_loads', 0)} engine loads, "
                  f"{summ.get('engine_held_seconds', 0):.0f} engine-seconds held; estimated GPU-hours "
                  f"{summ.get('gpu_hours_estimate', 0):.3f}"]
    for st, sec in tel.get("stage_seconds", {}).items():
        lines.append(f"- stage `{st}`: {sec:.1f} s")
    eng = tel.get("engines", {})
    if eng:
        lines += ["", "| engine | where | loads | requests | prefilled tok | cached tok | generated tok | engine s | "
                  "prefill tok/s | gen tok/s | held s | GPUs |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for n, s in eng.items():
            secs = s.get("engine_seconds") or 0.0
            tps = s.get("generated_tokens_per_s", s.get("generated_tokens", 0) / secs if secs else 0.0)
            pps = s.get("prefill_tokens_per_s", s.get("prefill_tokens", 0) / secs if secs else 0.0)
            w = s.get("where") or {}
            where = f"{w.get('ip', '?')} node {str(w.get('node_id', '?'))[:8]}" if w else "local"
            lines.append(f"| {n} | {where} | {s.get('loads', 1)} | {s.get('requests', 0)} | "
                         f"{s.get('prefill_tokens', 0)} | {s.get('cached_tokens', 0)} | {s.get('generated_tokens', 0)} | "
                         f"{secs:.1f} | {pps:.0f} | {tps:.0f} | {s.get('held_seconds', 0):.0f} | {s.get('gpus', 0):g} |")
    waves = tel.get("waves", [])
    if waves:
        lines += ["", "Engine waves as they ran:", ""]
        for w in waves:
            lines.append(f"- {w['stage']} wave {w['wave']}/{w['of']} ({w['start']:.0f}-{w['end']:.0f} s): "
                         + ", ".join(f"{m} ({w['requests'].get(m, 0)} req)" for m in w["models"]))
    sched = tel.get("schedule")
    if sched and sched.get("log"):
        lines += ["", "Planned placement:", "", "```", sched["log"], "```"]
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
            from pipeline.report.ensemble import ensemble_section

            ens = None
            if ctx.cfg.ensemble.enabled:
                from pipeline.artifacts import read_provenance
                from pipeline.stages.ensemble import ensemble_source

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
