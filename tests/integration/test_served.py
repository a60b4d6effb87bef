"""A managed `vllm serve` as a model of a real run: the tables equal the in-process run's byte for byte,
the server is gone after the run, and a rerun of the finished run makes zero requests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TABLES = ("consistency_summary.csv", "accuracy.csv", "consistency_pairs.csv")
SMALL = [
    "dataset.size=6",
    "generate.thought_budget=24",
    "generate.answer_budget=8",
    "transfer.answer_budget=8",
    "progress=false",
    "~models.c",
]


def _run(*overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", *overrides, *SMALL],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def _server_processes(port: str) -> list[str]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = d.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "api_server" in cmd and f"--port {port} " in cmd + " ":
                out.append(d.name)
    return out


def test_managed_server_tables_byte_identical_and_rerun_makes_no_requests(tmp_path):
    _run("experiment=demo_tiny", f"run_dir={tmp_path / 'inproc'}")
    served = tmp_path / "served"
    _run("experiment=demo_tiny_server", f"run_dir={served}")
    for t in TABLES:
        a = (tmp_path / "inproc" / "tables" / t).read_bytes()
        b = (served / "tables" / t).read_bytes()
        assert a == b, f"tables/{t} differs between in-process and served model a"
    log = (served / "served-tiny-think.log").read_text()
    posts = log.count("POST /v1/completions")
    assert posts > 0, "model a never went through the server"
    port = re.findall(r"--port (\d+)", log)[-1]
    assert not _server_processes(port), "the managed server outlived its run"
    _run("experiment=demo_tiny_server", f"run_dir={served}")
    log2 = (served / "served-tiny-think.log").read_text()
    assert log2.count("POST /v1/completions") == posts and log2.count("# crosscot:") == log.count("# crosscot:"), (
        "a rerun of a finished run sent requests (or started a server)"
    )


def test_served_engine_matches_in_process_on_every_role(tmp_path):
    """One managed server and one in-process engine of tiny-think: the same CoTs, answers, raw
    continuations, ensemble proposals and candidate NLLs (within 1e-4 per token)."""
    import dataclasses

    from pipeline.config import compose
    from pipeline.engine.openai_engine import OpenAIEngine
    from pipeline.engine.protocol import AnswerRequest, GenerateRequest, ProposeRequest, ScoreRequest
    from pipeline.engine.vllm_engine import ModelEngine, Sampling
    from pipeline.text.rewrite_filter import rewrite_one

    m = compose(["experiment=demo_tiny"]).model("tiny-think")
    served_cfg = dataclasses.replace(m, engine="openai", served=dataclasses.replace(m.served, log_dir=str(tmp_path)))
    local, served = ModelEngine(m, seed=0), OpenAIEngine(served_cfg, seed=0)
    try:
        s = Sampling(0.8, 0.95, -1, seed=1234)
        gen = [
            GenerateRequest(prompt=f"What is {i} + 3?", sampling=s, thought_budget=40, answer_budget=8)
            for i in range(4)
        ]
        tr = [
            AnswerRequest(
                prompt="What is 2 + 3?", cot="two plus three is five", phase="transfer", sampling=s, answer_budget=8
            )
        ]
        prop = [ProposeRequest(prompt="What is 2 + 3?", cot="we add", n=3, max_candidate_tokens=10, sampling=s)]
        for name, reqs in (("generate", gen), ("answer", tr), ("propose", prop)):
            got = served.run_batch([r.run(served) for r in reqs])
            want = local.run_batch([r.run(local) for r in reqs])
            assert got == want, name
        for mode in ("cached", "paper"):
            sc = ScoreRequest(
                prompt="What is 2 + 3?",
                cot="we add two",
                candidates=[" and three.", " so five", " hmm"],
                closes=[False, True, False],
                mode=mode,
            )
            a, b = local.run_batch([sc.run(local)])[0], served.run_batch([sc.run(served)])[0]
            for x, y in zip(a, b):
                assert x.n_tokens == y.n_tokens
                assert abs(x.mean_nll - y.mean_nll) < 1e-4, (mode, x, y)
        import asyncio

        import pytest

        # The answer-removal filter role is one generate item per CoT (equal above); the study's long
        # prompt does not fit this tiny model's 1024-token context, and both say so the same way.
        errors = []
        for eng in (served, local):
            with pytest.raises(RuntimeError, match="exceeds max_model_len") as e:
                asyncio.run(rewrite_one(eng.generate, m, "we add two and three. The answer is 5."))
            errors.append(str(e.value))
        assert errors[0] == errors[1]
        assert served.get_stats()["served"]["failed"] == 0
    finally:
        served.server.stop()
    assert not served.server.record.exists()
