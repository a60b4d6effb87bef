"""Telemetry: the one renderer of ``telemetry.json`` (the report's run summary) and the one tokens/s helper.

``telemetry.json`` is written by :func:`pipeline.stages.dag.run` at the end of every run: wall
time, stage seconds, per-engine token counts and rates, engine waves, the planned placement and
error counts.  The report stage and ``crosscot report`` both render it with
:func:`telemetry_markdown`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

# Top-level fields telemetry_markdown renders (the rest are listed raw with ``unknown=True``).
KNOWN = frozenset(
    {
        "wall_seconds",
        "outside_engine_share",
        "outside_engine_share_excl_startup",
        "engine_busy_seconds",
        "engine_startup_seconds",
        "summary",
        "stage_seconds",
        "stage_models",
        "engines",
        "waves",
        "schedule",
        "error_rows",
        "error_share",
    }
)


def union_seconds(intervals, lo: float = float("-inf"), hi: float = float("inf")) -> float:
    """Seconds covered by the union of ``(start, end)`` intervals, clipped to ``[lo, hi]``
    (an engine's busy time; the run's time inside any engine)."""
    iv = sorted((max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in iv:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def tokens_per_s(tokens: float, seconds: float) -> float:
    """Throughput; 0.0 when no time was measured (an engine that never ran)."""
    return tokens / seconds if seconds else 0.0


def _runtime_lines(eng: dict) -> list[str]:
    """Each engine's dtype (and why), OpenMP threads and preloaded libraries, as the engine reported them."""
    out = []
    for n, s in eng.items():
        rt = s.get("runtime")
        if not isinstance(rt, dict):
            continue
        libs = [k for k, key in (("tcmalloc", "tcmalloc_loaded"), ("Intel OpenMP", "iomp_loaded")) if rt.get(key)]
        out.append(
            f"- {n}: dtype {rt.get('dtype', '?')} ({rt.get('dtype_reason', '')}); "
            f"{rt.get('torch_threads', '?')} OpenMP thread(s); preloaded: {', '.join(libs) or 'none'}"
            + (f"; EMULATED {rt['emulated_isa']}" if rt.get("emulated_isa") else "")
        )
    return ["", "Engine runtime:", ""] + out if out else []


def telemetry_markdown(tel: dict, unknown: bool = False) -> str:
    """The run summary from ``telemetry.json``: wall time, tokens, engines, waves, placement, errors.

    ``unknown``: also list top-level scalar fields this renderer does not know (for telemetry files
    written by other tools or older versions), and show the file's raw nested fields when it has
    none of the known ones.
    """
    summ = tel.get("summary", {})
    lines = []
    if "wall_seconds" in tel or not unknown:
        lines += [
            f"- wall time: {tel.get('wall_seconds', 0):.1f} s",
            f"- share of wall time outside the engines: {tel.get('outside_engine_share', 0):.1%}"
            + (
                f" ({tel['outside_engine_share_excl_startup']:.1%} without the "
                f"{tel.get('engine_startup_seconds', 0):.1f} s of engine start-up)"
                if "outside_engine_share_excl_startup" in tel
                else ""
            ),
        ]
    if summ:
        lines += [
            f"- tokens: {summ.get('prefill_tokens', 0)} prefilled, {summ.get('cached_tokens', 0)} from the "
            f"prefix cache, {summ.get('generated_tokens', 0)} generated over {summ.get('requests', 0)} requests",
            f"- engines: {summ.get('engines', 0)} models, {summ.get('engine_loads', 0)} engine loads, "
            f"{summ.get('engine_held_seconds', 0):.0f} engine-seconds held; estimated GPU-hours "
            f"{summ.get('gpu_hours_estimate', 0):.3f}",
        ]
    det = tel.get("determinism")
    if isinstance(det, dict):
        lines.append(
            f"- determinism: `{det.get('effective')}` on {det.get('device')} "
            f"(setting `{det.get('setting')}`): {det.get('claim')}"
        )
    if summ.get("answer_cache_hit") is not None:
        lines.append(
            f"- answers after a CoT: {summ['answer_cache_hit']:.1%} of their cacheable prompt tokens "
            f"({summ.get('answer_cacheable_tokens', 0)}) came from the prefix cache"
        )
    for st, sec in tel.get("stage_seconds", {}).items():
        lines.append(f"- stage `{st}`: {sec:.1f} s")
    sm = tel.get("stage_models", {})
    if sm:
        # Streaming stages overlap: when each stage's first item went out and its last came back.
        lines += ["", "| stage | model | items | first submitted (s) | last done (s) |", "|---|---|---|---|---|"]
        for st, per in sm.items():
            for m, t in per.items():
                fs, ld = t.get("first_submit"), t.get("last_done")
                lines.append(
                    f"| {st} | {m} | {t.get('requests', 0)} | "
                    f"{'' if fs is None else f'{fs:.1f}'} | {'' if ld is None else f'{ld:.1f}'} |"
                )
    eng = tel.get("engines", {})
    if eng:
        lines += [
            "",
            "| engine | where | loads | requests | prefilled tok | cached tok | generated tok | engine s | "
            "prefill tok/s | gen tok/s | held s | GPUs |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n, s in eng.items():
            secs = s.get("engine_seconds") or 0.0
            tps = s.get("generated_tokens_per_s", tokens_per_s(s.get("generated_tokens", 0), secs))
            pps = s.get("prefill_tokens_per_s", tokens_per_s(s.get("prefill_tokens", 0), secs))
            w = s.get("where") or {}
            where = f"{w.get('ip', '?')} node {str(w.get('node_id', '?'))[:8]}" if w else "local"
            lines.append(
                f"| {n} | {where} | {s.get('loads', 1)} | {s.get('requests', 0)} | "
                f"{s.get('prefill_tokens', 0)} | {s.get('cached_tokens', 0)} | {s.get('generated_tokens', 0)} | "
                f"{secs:.1f} | {pps:.0f} | {tps:.0f} | {s.get('held_seconds', 0):.0f} | {s.get('gpus', 0):g} |"
            )
        lines += _runtime_lines(eng)
    waves = tel.get("waves", [])
    if waves:
        lines += ["", "Engine waves as they ran:", ""]
        for w in waves:
            lines.append(
                f"- {w['stage']} wave {w['wave']}/{w['of']} ({w['start']:.0f}-{w['end']:.0f} s): "
                + ", ".join(f"{m} ({(w.get('requests') or {}).get(m, 0)} req)" for m in w["models"])
            )
    sched = tel.get("schedule")
    if sched and sched.get("log"):
        lines += ["", "Planned placement:", "", "```", sched["log"], "```"]
    if tel.get("error_rows"):
        lines.append(
            f"\n- errored requests: {tel['error_rows']} ({tel.get('error_share', 0):.1%}); see tables/errors.csv"
        )
    if unknown:
        other = [
            [html.escape(str(k)), html.escape(str(v))]
            for k, v in tel.items()
            if k not in KNOWN and not isinstance(v, (dict, list))
        ]
        if other:
            lines += ["", "| key | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in other]
        nested = {k: v for k, v in tel.items() if k not in KNOWN and isinstance(v, (dict, list))}
        if nested and not KNOWN & set(tel):
            lines += ["", "```json", json.dumps(nested, indent=2)[:20000], "```"]
    return "\n".join(lines)


def telemetry_file_markdown(path: Path) -> str:
    """:func:`telemetry_markdown` of a file, or one line saying why it cannot be read."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        return f"_Could not read {Path(path).name}: {e}_"
    if not isinstance(data, dict):
        return "```json\n" + json.dumps(data, indent=2)[:20000] + "\n```"
    return telemetry_markdown(data, unknown=True) or "_empty_"
