"""The CPU runtime chosen from the hardware: dtype from given CPU flags, the engine process's environment."""

from __future__ import annotations

import pytest

from pipeline.engine import cpu_runtime as cr

# /proc/cpuinfo excerpts: a 2-core AMD EPYC with AVX2 only, a Sapphire Rapids Xeon, an Arm Neoverse V1.
EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 sha_ni
"""
XEON_AMX = """processor\t: 0
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512bw avx512vl avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8
"""
XEON_AVX512_NO_BF16 = "flags\t\t: sse avx avx2 avx512f avx512bw avx512vl avx512_vnni\n"
ARM_BF16 = "Features\t: fp asimd evtstrm aes sha1 sha2 crc32 atomics fphp asimdhp bf16 i8mm sve\n"


def test_auto_is_fp32_on_an_avx2_only_cpu():
    c = cr.resolve_dtype("auto", "cpu", cr.parse_cpu_flags(EPYC_AVX2))
    assert c.dtype == "float32" and c.requested == "auto"
    assert "no native bf16" in c.reason


@pytest.mark.parametrize("text,flag", [(XEON_AMX, "amx_bf16"), (ARM_BF16, "bf16")])
def test_auto_is_bf16_where_the_cpu_has_native_bf16(text, flag):
    c = cr.resolve_dtype("auto", "cpu", cr.parse_cpu_flags(text))
    assert c.dtype == "bfloat16" and flag in c.reason


def test_avx512_without_bf16_is_fp32_and_auto_never_picks_fp16():
    assert cr.resolve_dtype("auto", "cpu", cr.parse_cpu_flags(XEON_AVX512_NO_BF16)).dtype == "float32"
    for text in (EPYC_AVX2, XEON_AMX, XEON_AVX512_NO_BF16, ARM_BF16, ""):
        assert cr.resolve_dtype("auto", "cpu", cr.parse_cpu_flags(text)).dtype != "float16"


def test_explicit_dtype_and_gpu_auto_are_kept():
    assert cr.resolve_dtype("float32", "cpu", cr.parse_cpu_flags(XEON_AMX)).dtype == "float32"
    assert cr.resolve_dtype("bfloat16", "cpu", cr.parse_cpu_flags(EPYC_AVX2)).dtype == "bfloat16"
    assert cr.resolve_dtype("auto", "cuda:NVIDIA H100", cr.parse_cpu_flags(EPYC_AVX2)).dtype == "auto"


def test_avx2_emulation_drops_avx512_and_amx():
    flags = cr.emulate_flags(cr.parse_cpu_flags(XEON_AMX), "avx2")
    assert "avx2" in flags and not any(f.startswith(("avx512", "amx")) for f in flags)
    assert cr.resolve_dtype("auto", "cpu", flags).dtype == "float32"
    with pytest.raises(ValueError, match="only 'avx2'"):
        cr.emulate_flags(flags, "sse2")


def test_resolved_dtype_is_in_the_model_key(monkeypatch):
    from pipeline.commands.models import compose_model
    from pipeline.config.hashing import model_key

    cfg = compose_model("smollm2")
    assert cfg.dtype == "auto"
    monkeypatch.setattr(cr, "_machine_flags", lambda: cr.parse_cpu_flags(XEON_AMX))
    monkeypatch.delenv(cr.EMULATE_ENV, raising=False)
    bf16 = model_key(cfg)
    monkeypatch.setenv(cr.EMULATE_ENV, "avx2")
    fp32 = model_key(cfg)
    assert bf16["dtype"] == "bfloat16" and fp32["dtype"] == "float32"
    assert {k: v for k, v in bf16.items() if k != "dtype"} == {k: v for k, v in fp32.items() if k != "dtype"}


def test_engine_env_preloads_both_libraries_and_sets_threads():
    libs = cr.RuntimeLibs("/x/libtcmalloc_minimal.so.4", "/venv/lib/libiomp5.so")
    rt = cr.engine_process_env(2, libs, cr.wanted_pieces("tcmalloc,iomp"), inherited={"LD_PRELOAD": "/y/libother.so"})
    assert rt.env["LD_PRELOAD"] == "/x/libtcmalloc_minimal.so.4:/y/libother.so:/venv/lib/libiomp5.so"
    assert rt.env["OMP_NUM_THREADS"] == "2" and rt.warnings == []
    off = cr.engine_process_env(1, libs, cr.wanted_pieces("none"), inherited={})
    assert "LD_PRELOAD" not in off.env and off.env["OMP_NUM_THREADS"] == "1"
    default = cr.engine_process_env(1, libs, cr.wanted_pieces(), inherited={})
    assert default.env["LD_PRELOAD"] == "/x/libtcmalloc_minimal.so.4"  # the measured default: tcmalloc only


def test_a_missing_library_is_a_warning_naming_the_fix():
    rt = cr.engine_process_env(1, cr.RuntimeLibs(None, None), cr.RUNTIME_PIECES, inherited={})
    assert len(rt.warnings) == 2
    assert "libtcmalloc-minimal4" in rt.warnings[0] and "intel-openmp" in rt.warnings[1]
    with pytest.raises(ValueError, match="unknown piece"):
        cr.wanted_pieces("jemalloc")


def test_one_engine_gets_every_core_and_two_split_them():
    assert cr.threads_per_engine(8, 1) == 8
    assert cr.threads_per_engine(8, 2) == 4
    assert cr.threads_per_engine(2, 3) == 1


def test_the_report_says_which_dtype_each_engine_used_and_why():
    from pipeline.report.telemetry import telemetry_markdown

    rt = {
        "dtype": "float32",
        "dtype_reason": "auto: no native bf16 on this CPU",
        "torch_threads": 2,
        "tcmalloc_loaded": True,
        "iomp_loaded": False,
        "emulated_isa": "avx2",
    }
    md = telemetry_markdown({"wall_seconds": 1.0, "engines": {"SmolLM2": {"generated_tokens": 3, "runtime": rt}}})
    assert (
        "- SmolLM2: dtype float32 (auto: no native bf16 on this CPU); 2 OpenMP thread(s); "
        "preloaded: tcmalloc; EMULATED avx2"
    ) in md
