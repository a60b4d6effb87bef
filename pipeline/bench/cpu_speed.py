"""Decode throughput of the vLLM CPU engine on a small real model: bf16 vs fp32 vs auto, batch 1 vs 32.

``python -m pipeline.bench.cpu_speed [--model smollm2] [--tokens 128] [--batches 1 32]
[--dtypes bfloat16 float32 auto] [--runtimes tcmalloc none iomp tcmalloc,iomp] [--repeat K] [--threads N] [--emulate avx2]``
(``make bench``).  Each (runtime, dtype) runs in its own subprocess, started with the
environment a crosscot engine process gets (:func:`pipeline.engine.cpu_runtime.engine_process_env`:
the ``--runtimes`` pieces preloaded, ``--threads`` OpenMP threads, default all cores), so only one
engine is alive at a time and ``LD_PRELOAD`` takes effect at exec; ``auto`` is resolved in the worker
as an engine resolves it.  ``--emulate avx2`` runs the workers as an AVX2-only CPU
(:func:`pipeline.engine.cpu_runtime.apply_isa_emulation`: an emulation on this machine's cores).
The model is provisioned first with :func:`pipeline.provision.gguf.prepare`.  Prints one line per
(runtime, dtype, batch) and a JSON summary; ``--json PATH`` also writes it.

Throughput = generated tokens / wall time of ``LLM.generate`` (prefill included,
prompts are short), with ``ignore_eos`` so every request yields ``--tokens``.
A warm-up request runs first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline.report.telemetry import tokens_per_s


def _cache_dir() -> str:
    base = os.environ.get("CROSSCOT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "crosscot")
    return os.path.join(base, "models")


def _worker(path: str, dtype: str, batches: list[int], tokens: int, kv_gib: float, repeat: int = 1) -> list[dict]:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(kv_gib))))
    # In-process engine core, as crosscot's engines run (and so the ISA emulation holds in it).
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from pipeline.engine import cpu_runtime

    cpu_runtime.apply_isa_emulation()
    choice = cpu_runtime.resolve_for_this_machine(dtype)
    from vllm import LLM, SamplingParams

    t0 = time.time()
    llm = LLM(model=path, dtype=choice.dtype, max_model_len=1024, enforce_eager=True, max_num_seqs=max(batches), seed=0)
    proc = cpu_runtime.process_report()
    load_s = time.time() - t0
    tok = llm.get_tokenizer()
    base = "Write a short story about a robot who learns to paint."
    prompt = tok.apply_chat_template([{"role": "user", "content": base}], tokenize=False, add_generation_prompt=True)
    sp = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
    llm.generate([prompt], SamplingParams(temperature=0.0, max_tokens=8), use_tqdm=False)  # warm-up
    rows = []
    for b in batches:
        # Distinct prompts so prefix caching does not fold the batch into one sequence.
        dts = []
        for r in range(repeat):  # best of ``repeat``: the least disturbed by other work on the machine
            prompts = [prompt.replace("a robot", f"robot number {i}.{r}") for i in range(b)]
            t = time.time()
            outs = llm.generate(prompts, sp, use_tqdm=False)
            dts.append(time.time() - t)
        dt = min(dts)
        n = sum(len(o.outputs[0].token_ids) for o in outs)
        rows.append(
            {
                "dtype": dtype,
                "resolved": choice.dtype,
                "why": choice.reason,
                "runtime": proc,
                "batch": b,
                "tokens": n,
                "seconds": round(dt, 3),
                "tok_per_s": round(tokens_per_s(n, dt), 1),
                "load_s": round(load_s, 1),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    from pipeline.engine import cpu_runtime

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", help="GGUF provisioner name (pipeline.provision.gguf)")
    ap.add_argument("--path", default=None, help="model folder (default: the crosscot cache)")
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32", "auto"])
    ap.add_argument(
        "--runtimes",
        nargs="+",
        default=[",".join(cpu_runtime.DEFAULT_PIECES)],
        help="preloaded pieces per variant: none, tcmalloc, iomp, tcmalloc,iomp (default: the product's)",
    )
    ap.add_argument("--threads", type=int, default=0, help="OpenMP threads (default: all cores)")
    ap.add_argument("--emulate", default=None, choices=["avx2"], help="run the engines as an AVX2-only CPU")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--tokens", type=int, default=128, help="generated tokens per request")
    ap.add_argument("--kv-gib", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per batch size, the best kept")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    path = args.path or os.path.join(_cache_dir(), args.model)
    if args._worker:
        print(
            "RESULT " + json.dumps(_worker(path, args._worker, args.batches, args.tokens, args.kv_gib, args.repeat)),
            flush=True,
        )
        return 0

    from pipeline.engine import cpu_runtime
    from pipeline.provision import gguf

    path = gguf.prepare(args.model, path)
    threads = args.threads or os.cpu_count() or 1
    base_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", cpu_runtime.EMULATE_ENV)}
    if args.emulate:
        base_env[cpu_runtime.EMULATE_ENV] = args.emulate
    libs = cpu_runtime.find_libs()
    print(
        f"cpu_speed: {args.model}, {threads} thread(s), runtimes {args.runtimes}, dtypes {args.dtypes}"
        + (f", EMULATED {args.emulate}" if args.emulate else ", native ISA"),
        flush=True,
    )
    results = []
    for spec in args.runtimes:
        rt = cpu_runtime.engine_process_env(threads, libs, cpu_runtime.wanted_pieces(spec), inherited=base_env)
        for w in rt.warnings:
            print(f"warning: {w}", flush=True)
        for dtype in args.dtypes:
            cmd = [
                sys.executable,
                "-m",
                "pipeline.bench.cpu_speed",
                "--path",
                path,
                "--_worker",
                dtype,
                "--tokens",
                str(args.tokens),
                "--kv-gib",
                str(args.kv_gib),
                "--repeat",
                str(args.repeat),
                "--batches",
                *map(str, args.batches),
            ]
            env = {**base_env, **rt.env, "HF_HUB_OFFLINE": "1", cpu_runtime.RUNTIME_ENV: spec}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(f"{dtype}: engine failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            for r in json.loads(line[len("RESULT ") :]):
                r["runtime_spec"] = spec
                results.append(r)
                print(
                    f"{args.model} [{spec}] {r['dtype']:>8}->{r['resolved']:<8} batch {r['batch']:>3}: "
                    f"{r['tok_per_s']:>8.1f} tok/s ({r['tokens']} tokens in {r['seconds']} s; "
                    f"engine load {r['load_s']} s)",
                    flush=True,
                )
    summary = {
        "model": args.model,
        "path": path,
        "cpus": os.cpu_count(),
        "threads": threads,
        "emulated": args.emulate or "",
        "flags": sorted(
            f for f in cpu_runtime.emulate_flags(cpu_runtime.cpu_flags(), args.emulate) if f.startswith(("avx", "amx"))
        ),
        "results": results,
    }
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


def section(out: Path, quick: bool = False) -> str:
    from pipeline.config import compose
    from pipeline.provision.models import ensure_model

    m = compose(["experiment=demo"]).model("SmolLM2")
    path = ensure_model(m)
    js = out / "cpu_speed.json"
    main(
        [
            "--model",
            "smollm2",
            "--path",
            path,
            "--dtypes",
            "bfloat16",
            "float32",
            "auto",
            "--batches",
            "1",
            "32",
            "--tokens",
            "32" if quick else "128",
            "--json",
            str(js),
        ]
    )
    data = json.loads(js.read_text()) if js.exists() else {}
    return "```\n" + json.dumps(data, indent=1)[:3000] + "\n```"


if __name__ == "__main__":
    raise SystemExit(main())
