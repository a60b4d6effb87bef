"""``crosscot bench <name>|all`` (``make bench``): every speed measurement, each a ratio against a baseline in the same run.

Sections (each writes ``<out>/<name>/<name>.md``; all are collected into ``<out>/BENCH.md``):

* ``demo_overhead`` — a tiny demo run in real Ray actors: share of wall time spent outside the engines;
* ``cpu_dtype`` — CPU engine speed, bf16 vs fp32 (real small model), when it is provisioned;
* ``ensemble`` — cached candidate scoring vs naive ``prompt_logprobs`` rescoring at 8k-token contexts, the
  default KV block size and a cache that evicts (last line ``ensemble: cached/naive=X.X at 8192``);
* ``kernel`` — fused token log-prob kernel vs ``log_softmax`` + ``gather`` (time, peak memory);
* ``plan`` — planned makespan vs one-model-after-another for the reference sweep;
* ``parallel`` — engines in parallel vs one at a time on a (simulated) cluster;
* ``filters`` — rule-based answer filter leakage and kept-text ratio on the study's released CoTs;
* ``replay`` — the streaming pipeline vs the engine's ceiling vs synchronous shards, on request lengths
  drawn from the study's released CoT lengths (last line ``replay: pipeline/ceiling=X pipeline/chunked=Y``);
* ``view`` — ``crosscot view`` latency on a synthetic 200,000-row run (last line
  ``view: first_page_ms=X filter_ms=Y rows=200000``).
* ``server`` — a managed ``vllm serve`` over HTTP vs the in-process engine, same requests (last line
  ``server: served/inprocess=X.XX``).
* ``cache`` — prefix-cache hits of answers by token ids vs re-tokenized text, and of CoT variants with
  prefix-affinity vs least-loaded routing over 2 replicas (last line ``cache: answer_hit=X variant_hit=Y replicas=2``).

Each section lives in its own module (listed in :data:`SECTIONS`), imported only when it runs.
"""

from __future__ import annotations

import importlib
import inspect
import time
import traceback
from pathlib import Path
from typing import Callable

from pipeline.store.atomic import write_text_atomic

# name -> (module, entry point): "section" takes (out, quick) and returns markdown; "main" is a
# bench module's own entry point (markdown returned or written into ``out``); "argv" takes argv.
SECTIONS: dict[str, tuple[str, str]] = {
    "demo_overhead": ("pipeline.bench.overhead", "section"),
    "ensemble": ("pipeline.bench.ensemble", "main"),
    "kernel": ("kernels.token_logprob.bench", "argv"),
    "plan": ("pipeline.bench.plan", "main"),
    "parallel": ("pipeline.bench.parallel", "main"),
    "filters": ("pipeline.bench.filters", "main"),
    "cpu_dtype": ("pipeline.bench.cpu_speed", "section"),
    "replay": ("pipeline.bench.replay", "argv"),
    "view": ("pipeline.bench.view", "section"),
    "server": ("pipeline.bench.server", "argv"),
    "cache": ("pipeline.bench.cache", "argv"),
}


def _latest_md(out: Path, default: str) -> str:
    mds = sorted(out.glob("*.md"), key=lambda p: p.stat().st_mtime)
    return mds[-1].read_text() if mds else default


def section(name: str) -> Callable[[Path, bool], str]:
    module, kind = SECTIONS[name]

    def run(out: Path, quick: bool = False) -> str:
        mod = importlib.import_module(module)
        if kind == "section":
            return mod.section(out, quick=quick)
        if kind == "argv":
            mod.main(["--out", str(out)] + (["--quick"] if quick else []))
            return _latest_md(out, "(no table written)")
        main = mod.main
        # Bench mains without a quick mode take only the folder (asked, not guessed from a TypeError,
        # which would hide a real one and rerun the bench at full size).
        res = main(out, quick=quick) if "quick" in inspect.signature(main).parameters else main(out)
        return res if isinstance(res, str) else _latest_md(out, "(see files in this folder)")

    return run


def run_benches(names: list[str], out: Path, quick: bool = False) -> int:
    """Run the named sections (all when empty) into ``out``; 1 when any failed (the others still run)."""
    out.mkdir(parents=True, exist_ok=True)
    names = names or list(SECTIONS)
    report, failed = ["# crosscot benchmarks", ""], []
    for name in names:
        sub = out / name
        sub.mkdir(parents=True, exist_ok=True)
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            md = section(name)(sub, quick)
        except Exception as e:  # noqa: BLE001 - one failing section must not hide the others
            failed.append(name)
            md = f"FAILED: {type(e).__name__}: {e}\n\n```\n{traceback.format_exc()[-1500:]}\n```"
        write_text_atomic(sub / f"{name}.md", md + "\n")
        report += [f"## {name} ({time.perf_counter() - t0:.0f} s)", "", md, ""]
        print(md, flush=True)
    write_text_atomic(out / "BENCH.md", "\n".join(report))
    print(f"\nwrote {out / 'BENCH.md'}" + (f"; failed sections: {failed}" if failed else ""))
    # A section whose table ends in a "<name>: ..." summary line repeats it last, so scripts read
    # it from the final line of the output (e.g. "replay: pipeline/ceiling=... pipeline/chunked=...").
    for name in names:
        md_path = out / name / f"{name}.md"
        last = md_path.read_text().strip().splitlines()[-1:] if md_path.exists() else []
        if last and last[0].startswith(f"{name}: "):
            print(last[0])
    return 1 if failed else 0
