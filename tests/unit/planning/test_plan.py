"""Run planning: token counts by hand, wave timing, baselines, node types, telemetry, CLI and bench."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

import pytest

from pipeline.config import conf_dir
from pipeline.planning.plan import (
    PlanParams,
    compose_run,
    estimate_work,
    format_plan,
    plan,
    problem_count,
)
from pipeline.planning.throughput import (
    NodeType,
    PlanError,
    load_node_type,
    load_telemetry,
)

ROOT = os.path.dirname(conf_dir())

# Minimal stand-ins for the reference model / dataset YAMLs when another helper has not written
# them yet; written only into the test's temporary copy of conf/, never into conf/.
REF_MODELS = {
    "nrr": ("NRR", "think_tags"),
    "opent": ("OpenT", "openthoughts"),
    "oss": ("OSS", "harmony"),
    "qwq": ("QwQ", "think_tags"),
    "dapo": ("DAPO", "think_tags"),
}


@pytest.fixture(scope="module")
def conf_copy(tmp_path_factory) -> str:
    dst = str(tmp_path_factory.mktemp("conf") / "conf")
    shutil.copytree(conf_dir(), dst)
    for key, (name, fmt) in REF_MODELS.items():
        p = os.path.join(dst, "model", f"{key}.yaml")
        if not os.path.exists(p):
            with open(p, "w") as f:
                f.write(
                    f"defaults: [model_schema, _self_]\nname: {name}\npath: /models/{key}\n"
                    f"thinking_format: {fmt}\nmax_model_len: 8192\n"
                    "greedy: {temperature: 0.0, top_p: 1.0, top_k: -1}\n"
                    "sampled: {temperature: 0.6, top_p: 0.95, top_k: -1}\n"
                )
    p = os.path.join(dst, "dataset", "medcalc.yaml")
    if not os.path.exists(p):
        with open(p, "w") as f:
            f.write("defaults: [dataset_schema, _self_]\nname: medcalc\npath: /data/medcalc.csv\n")
    return dst


SMALL = [
    "experiment=demo_tiny",
    "models.a.num_cpus=1",
    "models.b.num_cpus=1",
    "models.c.num_cpus=1",
    "generate.thought_budget=100",
    "generate.answer_budget=10",
    "generate.num_samples=2",
    "dataset.size=10",
    "transfer.answer_budget=20",
]
PARAMS = PlanParams(thought_fill=0.5, answer_fill=0.5, prompt_tokens=40)


def flat_node(cpus: float = 8) -> NodeType:
    """Round numbers for hand computation: 100 decode tok/s, 1000 prefill tok/s, 10 single, 10 s loads."""
    from pipeline.planning.throughput import ModelThroughput

    t = ModelThroughput(100.0, 1000.0, 10.0, 1)
    return NodeType(
        name="flat",
        cpus_per_node=cpus,
        memory_gib=64,
        load_fixed_s=10,
        load_gibps=0,
        throughput={n: t for n in ("tiny-think", "tiny-thought", "tiny-harmony")},
    )


def test_token_counts_by_hand(conf_copy):
    run = compose_run(SMALL, conf_copy)
    work = estimate_work(run, 10, PARAMS)
    # T = 100 * .5 = 50 CoT tokens, A = 10 * .5 = 5 answer tokens, P = 40 prompt tokens, n = 10
    g = {(w.model, w.detail): w for w in work if w.stage == "generate"}
    e = g[("tiny-think", "empty")]
    assert (e.requests, e.prefill_tokens, e.decode_tokens) == (10, 400, 50)
    d = g[("tiny-think", "default")]
    assert (d.requests, d.prefill_tokens, d.decode_tokens) == (10, 400, 550)
    s = g[("tiny-think", "sampled x2")]
    assert (s.requests, s.prefill_tokens, s.decode_tokens) == (20, 400, 1100)  # prompt shared via prefix cache
    # transfer (as stages/transfer.py submits, see test_plan_counts_what_the_stages_submit): 3 sources'
    # Default CoTs x 10 problems to every target = 30 per variant; the target's own 2 Sampled CoTs x 10
    # problems only in without_answer: +20
    t = {(w.model, w.detail): w for w in work if w.stage == "transfer"}
    full, wa = t[("tiny-harmony", "full")], t[("tiny-harmony", "without_answer")]
    assert (full.requests, wa.requests) == (30, 50)
    assert full.prefill_tokens == pytest.approx(30 * 50 + 10 * 40 / 2)  # prompt once per (problem, target)
    assert wa.prefill_tokens == pytest.approx(50 * 45 + 10 * 40 / 2)
    assert (full.decode_tokens, wa.decode_tokens) == (30 * 10, 50 * 10)
    assert len([w for w in work if w.stage == "transfer"]) == 3 * 2
    assert not [w for w in work if w.stage == "ensemble"]


def test_makespan_and_baselines_by_hand(conf_copy):
    run = compose_run(SMALL, conf_copy)
    p = plan(run, flat_node(), params=PARAMS)
    assert p.n_problems == 10 and len(p.schedule.waves) == 1
    gen = (400 + 400 + 400) / 1000 + (50 + 550 + 1100) / 100  # 18.2 s per model
    xfer = (1700 + 2450) / 1000 + 800 / 100  # 12.15 s per target
    assert p.makespan_s == pytest.approx(10 + gen + xfer)
    seq_b = p.baselines["sequential_batched"]
    # 3 generate loads + 2 transfer loads (the last generator stays loaded) = 5 x 10 s
    assert seq_b.loads == 5
    assert seq_b.makespan_s == pytest.approx(50 + 3 * (gen + xfer))
    gen1 = 1.2 + 1700 / 10
    xfer1 = 4.15 + 800 / 10
    assert p.baselines["sequential_single"].makespan_s == pytest.approx(50 + 3 * (gen1 + xfer1))
    assert p.speedup("sequential_single") > p.speedup("sequential_batched") > 1
    # with 2 CPUs only two 1-CPU engines fit: 3 waves and 4 loads, and a longer makespan
    p2 = plan(run, flat_node(cpus=2), params=PARAMS)
    assert len(p2.schedule.waves) == 3 and p2.schedule.total_loads == 4
    assert p2.makespan_s > p.makespan_s
    assert p2.makespan_s == pytest.approx(sum(w.seconds for w in p2.wave_times))


def test_schedule_and_tables_are_printed(conf_copy):
    run = compose_run(SMALL, conf_copy)
    text = format_plan(plan(run, "cpu2", params=PARAMS))
    for needle in (
        "Requests and tokens per stage and model",
        "wave 1 [generate]",
        "engine loads: 4",
        "sequential_single",
        "sequential_batched",
        "tiny-think",
        "CPU-only",
    ):
        assert needle in text, needle


def test_node_types_load_and_cover_reference_models():
    names = {"NRR", "OpenT", "OSS", "QwQ", "DAPO"}
    h100, h200 = load_node_type("h100x8"), load_node_type("h200x8")
    for nt, mem in ((h100, 79.6), (h200, 140.4)):
        assert nt.gpus_per_node == 8 and nt.gpu_memory_gib == mem
        assert names <= set(nt.throughput)
        for t in nt.throughput.values():
            assert t.decode_tps > t.single_decode_tps > 0 and t.prefill_tps > 0
    # at the same TP size, the bigger, faster memory never makes a model slower
    for n in names:
        a = h100.throughput[n]
        b = h200.throughput[n].scaled_to(a.tp)
        assert b.decode_tps >= a.decode_tps and b.single_decode_tps >= a.single_decode_tps
        assert b.prefill_tps >= a.prefill_tps
    cpu = load_node_type("cpu2")
    assert cpu.gpus_per_node == 0 and cpu.cluster().cpu_only
    with pytest.raises(PlanError, match=r"node type 'h999'.*known node types.*h100x8"):
        load_node_type("h999")


def test_telemetry_overrides_node_table(conf_copy, tmp_path):
    run = compose_run(SMALL, conf_copy)
    tele = tmp_path / "telemetry.json"
    tele.write_text(json.dumps({"models": {"tiny-think": {"decode_tokens_per_s": 10000, "prefill_tps": 100000}}}))
    assert load_telemetry(str(tele))["tiny-think"] == {"decode_tps": 10000.0, "prefill_tps": 100000.0}
    base = plan(run, flat_node(), params=PARAMS)
    fast = plan(run, flat_node(), throughput=str(tele), params=PARAMS)
    assert fast.throughput["tiny-think"].source == "telemetry"
    assert fast.throughput["tiny-think"].single_decode_tps == 10.0  # not measured: node table value kept
    assert fast.throughput["tiny-harmony"].source.startswith("node table")
    w = {(x.stage, x.model, x.detail): x for x in fast.work}
    assert w[("generate", "tiny-think", "default")].batched_s < w[("generate", "tiny-harmony", "default")].batched_s
    assert fast.makespan_s == pytest.approx(base.makespan_s)  # the slower engines still set the wave time
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PlanError, match="telemetry"):
        load_telemetry(str(bad))


def test_reference_sweep_plan(conf_copy, tmp_path):
    run = compose_run(["experiment=reference"], conf_copy)
    assert sorted(run.model_names) == ["DAPO", "NRR", "OSS", "OpenT", "QwQ"]
    stage_counts = _stage_requests(run, 100, tmp_path)
    for node in ("h100x8", "h200x8"):
        p = plan(run, node)
        assert p.n_problems == 100  # the study's sample (dataset.options.sample=genex)
        t = p.totals()
        assert t["generate"]["requests"] == stage_counts["generate"] == 5 * 3 * 100
        # what the transfer stage itself sends for this config (not the planner's own formula): per
        # target and variant every source's Default CoT and the ensemble's CoT; plus, without its
        # answer, the target's own Sampled CoT
        assert t["transfer"]["requests"] == stage_counts["transfer"] == 5 * 2 * (5 + 1) * 100 + 5 * 100
        assert len(p.schedule.waves) == 1 and p.schedule.total_loads == 5
        assert p.baselines["sequential_single"].loads == 5 + 4 + 3
        assert p.speedup("sequential_single") > 5 and p.speedup("sequential_batched") > 1
    # cached candidate scoring (the default) beats vLLM's cache-skipping prompt-logprob rescoring
    naive = plan(run, "h100x8", params=PlanParams(evaluator_prefix_cache=False))
    assert naive.makespan_s > plan(run, "h100x8").makespan_s


def test_node_overrides_size_engines_for_80gb(conf_copy):
    from pipeline.planning.throughput import apply_node_overrides

    run = compose_run(["experiment=reference"], conf_copy)
    h100 = load_node_type("h100x8")
    sized, hydra = apply_node_overrides(run, h100)
    assert ("models.qwq.tensor_parallel_size=2" in hydra) == (run.model("QwQ").tensor_parallel_size != 2)
    assert sized.model("QwQ").tensor_parallel_size == 2 and sized.model("DAPO").tensor_parallel_size == 2
    # without the node's sizing the 32B models do not fit an 80 GB GPU, and the error says how to fix it
    from pipeline.planning.cluster import PlacementError

    if run.model("QwQ").memory_gib > 80:
        with pytest.raises(PlacementError, match="tensor_parallel_size=2"):
            plan(run, h100, node_overrides=False)
    p = plan(run, h100)
    assert p.run_overrides == hydra and "models.qwq.tensor_parallel_size=2" in format_plan(p)
    bad = NodeType(name="bad", gpus_per_node=8, gpu_memory_gib=80, model_overrides={"QwQ": {"dtype": "float16"}})
    with pytest.raises(PlanError, match=r"model_overrides\.QwQ\.dtype is not a placement field"):
        apply_node_overrides(run, bad)


def test_problem_count_sources(conf_copy):
    run = compose_run(SMALL, conf_copy)
    assert problem_count(run) == 10 and problem_count(run, 3) == 3
    run.dataset.name, run.dataset.limit = "jsonl", None
    with pytest.raises(PlanError, match="--problems"):
        problem_count(run)
    run.dataset.limit = 7
    assert problem_count(run) == 7


def test_cli_run_prints_plan_and_writes_json(tmp_path, capsys):
    from pipeline.commands import plan as cmd

    assert isinstance(cmd.HELP, str) and cmd.HELP
    ap = argparse.ArgumentParser()
    cmd.add_arguments(ap)
    ns = ap.parse_args(
        [
            "--node",
            "cpu2",
            "--problems",
            "6",
            "--json",
            str(tmp_path / "p.json"),
            "experiment=demo_tiny",
            "models.a.num_cpus=1",
            "models.b.num_cpus=1",
            "models.c.num_cpus=1",
            "generate.thought_budget=64",
        ]
    )
    assert cmd.run(ns) == 0
    out = capsys.readouterr().out
    assert "Wave schedule:" in out and "engine loads: 4" in out and "6 problems" in out
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["loads"] == 4 and data["baselines"]["sequential_single"]["ratio"] > 1
    from pipeline.cli import main

    assert main(["plan", "--node", "nope", "experiment=demo_tiny"]) == 2
    assert capsys.readouterr().err.startswith("crosscot: error: node type 'nope'")


def test_python_m_pipeline_plan_subprocess():
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "plan",
            "--node",
            "cpu2",
            "--problems",
            "4",
            "experiment=demo_tiny",
            "models.a.num_cpus=1",
            "models.b.num_cpus=1",
            "models.c.num_cpus=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "wave 3 [transfer]" in r.stdout and "4 problems" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "pipeline", "plan", "experiment=nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.startswith("crosscot: error:") and "Traceback" not in r.stderr


def test_bench_writes_markdown(conf_copy, tmp_path):
    from pipeline.bench import plan as bench_plan

    run = compose_run(["experiment=reference"], conf_copy)
    md = bench_plan.main(str(tmp_path), run=run, n_problems=100)
    text = (tmp_path / "plan_bench.md").read_text()
    assert text.strip() == md.strip()
    rows = [line for line in md.splitlines() if line.startswith("| h")]
    # 4 settings, with and without the ensemble, in the estimate table and in the simulated one
    assert len(rows) == 2 * 2 * 4 and "Without the ensemble stage" in md and "SIMULATED makespans" in md
    assert "h200x8" in md and "6 of 8 GPUs" in md and "TP=2" in md


def test_import_is_light():
    code = (
        "import sys, pipeline.planning.plan, pipeline.planning.packing, pipeline.bench.plan, pipeline.commands.plan; "
        "bad = [m for m in ('ray', 'vllm', 'torch', 'triton') if m in sys.modules]; "
        "assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def _stage_requests(run, n: int, tmp_path) -> dict[str, int]:
    """What the generate and transfer stages themselves would submit for ``run`` on n problems: the
    generate stage's real items over synthetic problems, the truncate stage's real variants of their
    CoTs (and of the ensemble's, when enabled), and the transfer stage's own routing of each variant."""
    import pyarrow as pa

    from pipeline.datasets import get_dataset
    from pipeline.schema import PROBLEMS
    from pipeline.stages.context import Context
    from pipeline.stages.generate import GenerateStage
    from pipeline.stages.transfer import transfer_method
    from pipeline.stages.truncate import COT_METHODS, TruncateStage
    from pipeline.store.artifacts import Store

    ctx = Context(cfg=run, store=Store(tmp_path / "store"), run_dir=tmp_path, pool_factory=lambda: None)
    ds = run.dataset.name
    ctx._problems = pa.Table.from_pylist(
        [
            {"dataset": ds, "problem_id": f"p{i}", "prompt": f"Question {i}?", "gold": '{"answer": "5"}', "meta": None}
            for i in range(n)
        ],
        PROBLEMS,
    )
    gen_rows = [row for m in run.models.values() for _, row in GenerateStage().items(ctx, m.name)]
    if run.ensemble.enabled:
        gen_rows += [
            {
                "dataset": ds,
                "problem_id": f"p{i}",
                "method": "ensemble",
                "source": "G/E",
                "variant": "full",
                "sample": 0,
                "target": "G/E",
            }
            for i in range(n)
        ]
    plugin = get_dataset(ds)
    cots = []
    for row in gen_rows:  # every CoT gets a non-answer sentence and an answer, as the truncate stage sees it
        if row["method"] in COT_METHODS:
            cots += TruncateStage.variants(
                {
                    **row,
                    "cot": "We compute the score step by step. The total is 5. So the answer is 5.",
                    "answer_text": "The answer is 5.",
                },
                plugin,
                run.truncate,
            )
    tc = run.transfer
    sources, targets = set(tc.sources or run.model_names), tc.targets or run.model_names
    transfers = sum(
        1
        for c in cots
        if c["variant"] in tc.variants and not c.get("error")
        for t in targets
        if transfer_method(c, t, sources)
    )
    return {"generate": len(gen_rows) - (n if run.ensemble.enabled else 0), "transfer": transfers}


def test_plan_counts_what_the_stages_submit(conf_copy, tmp_path):
    """The planner's request counts equal what the generate and transfer stages build for the same config."""
    n = 7
    for overrides in (
        ["experiment=reference"],
        ["experiment=reference", "transfer.variants=[full]"],
        ["experiment=reference", "generate.num_samples=3", "transfer.targets=[QwQ,NRR]"],
    ):
        run = compose_run(overrides, conf_copy)
        t = plan(run, "h100x8", n).totals()
        got = _stage_requests(run, n, tmp_path / str(len(overrides)) / overrides[-1].replace("/", "_"))
        assert t["generate"]["requests"] == got["generate"], overrides
        assert t["transfer"]["requests"] == got["transfer"], overrides
