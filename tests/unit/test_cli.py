"""The command line: fast to start, no heavy imports, both entry points work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def test_import_is_light():
    code = (
        "import sys, pipeline, pipeline.cli, pipeline.config, pipeline.schema, pipeline.stages.dag, kernels;"
        "heavy=[m for m in ('vllm','ray','torch','triton','matplotlib') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    r = _run("-c", code)
    assert r.returncode == 0, r.stdout + r.stderr


def test_python_m_pipeline_help_lists_commands():
    r = _run("-m", "pipeline", "--help")
    assert r.returncode == 0
    for c in ("run", "import-genex", "score", "report", "plan", "models"):
        assert c in r.stdout
    # Every subcommand says what it does (its module's HELP), not "see crosscot X --help".
    import importlib

    from pipeline.cli import COMMANDS

    flat = " ".join(r.stdout.split())
    for name, module in COMMANDS.items():
        assert " ".join(importlib.import_module(f"pipeline.commands.{module}").HELP.split()) in flat, name
    assert "see 'crosscot" not in r.stdout


def test_console_script_when_installed():
    exe = shutil.which("crosscot") or (os.path.join(os.path.dirname(sys.executable), "crosscot"))
    if not os.path.exists(exe):
        import pytest

        pytest.skip("crosscot console script not installed (run make setup)")
    r = subprocess.run([exe, "score", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "run_dir" in r.stdout


def test_run_rejects_bad_override_with_clear_error(tmp_path):
    r = _run("-m", "pipeline", "run", "experiment=demo_tiny", "dataset.name=nope", f"run_dir={tmp_path}")
    assert r.returncode != 0
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("crosscot: error: dataset.name='nope': unknown dataset")
