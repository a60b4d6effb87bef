"""The planner that knows tails: the engine simulator on hand-made lengths, replicas, lengths, plan output."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from pipeline.planning.lengths import DATA, cot_lengths, released_lengths, tail_shape
from pipeline.planning.simulate import Req, StepCost, simulate_engine, simulate_replicas, simulate_shards
from pipeline.planning.throughput import ModelThroughput

FLAT = StepCost(step1_s=1.0, stepB_s=1.0, batch=4, prefill_s_per_token=0.0)  # 1 s per step, any batch


def reqs(lengths: list[int], prompt: float = 0.0) -> list[Req]:
    return [Req(0.0, prompt, L) for L in lengths]


def test_equal_lengths_streaming_equals_shards():
    rs = reqs([10] * 16)
    stream = simulate_engine(rs, FLAT, slots=4)
    shards = simulate_shards(rs, FLAT, shard=4, slots=4)
    assert stream.makespan_s == pytest.approx(40.0)  # 16 requests / 4 slots x 10 steps
    assert shards.makespan_s == pytest.approx(stream.makespan_s)
    assert stream.mean_batch == pytest.approx(4.0)


def test_long_tail_makes_shards_slower_by_a_computable_factor():
    # Per shard of 4: one CoT of 100 tokens and three of 1.  Shards wait for each shard's tail:
    # 2 x 100 steps.  Streaming refills the freed slots at once: the second long CoT starts at
    # step 2 (after the first step frees three slots) and ends at step 101.
    rs = reqs([100, 1, 1, 1, 100, 1, 1, 1])
    stream = simulate_engine(rs, FLAT, slots=4)
    shards = simulate_shards(rs, FLAT, shard=4, slots=4)
    assert stream.makespan_s == pytest.approx(101.0)
    assert shards.makespan_s == pytest.approx(200.0)
    assert shards.makespan_s / stream.makespan_s == pytest.approx(200 / 101)
    assert stream.finish_s[4] == pytest.approx(101.0) and shards.finish_s[4] == pytest.approx(200.0)


def test_step_cost_from_table_and_prefill():
    t = ModelThroughput(decode_tps=320.0, prefill_tps=1000.0, single_decode_tps=50.0, batch=32)
    c = StepCost.from_throughput(t, max_num_seqs=64)
    assert c.batch == 32 and c.step(1) == pytest.approx(0.02) and c.step(32) == pytest.approx(0.1)
    assert c.step(64) == pytest.approx(0.1)  # no faster beyond the table's batch
    assert c.step(16) == pytest.approx(0.02 + 0.08 * 15 / 31)
    # one request: a prefill of 500 tokens (0.5 s) then 10 steps at batch 1
    r = simulate_engine([Req(0.0, 500, 10)], c)
    assert r.makespan_s == pytest.approx(0.5 + 10 * 0.02)


def test_arrivals_wait_and_start_time():
    r = simulate_engine([Req(5.0, 0, 3), Req(0.0, 0, 2)], FLAT, slots=1, start_s=1.0)
    assert r.finish_s == pytest.approx([8.0, 3.0])  # the engine idles from 3 s until the arrival at 5 s
    # a request arriving while a slot is free joins at the next step, not when the batch changes
    r = simulate_engine([Req(0.0, 0, 10), Req(3.0, 0, 2)], FLAT, slots=2)
    assert r.finish_s == pytest.approx([10.0, 5.0])


def test_replicas_split_the_work():
    arr, pre, dec = [0.0] * 16, [0.0] * 16, [10] * 16
    one = simulate_replicas(arr, pre, dec, FLAT, 1, slots=4)
    two = simulate_replicas(arr, pre, dec, FLAT, 2, slots=4)
    assert one.makespan_s == pytest.approx(40.0) and two.makespan_s == pytest.approx(20.0)


def test_released_lengths_and_shape():
    # data test: fails (does not skip) when ../shared/data is missing
    q = released_lengths("QwQ")
    assert len(q) >= 100 and max(q) > 2 * (sum(q) / len(q)), "QwQ's released CoTs should be long-tailed"
    assert released_lengths("NoSuchModel") == []
    shape = tail_shape()
    assert len(shape) >= 100
    lens, src = cot_lengths("QwQ", 500, 4096, 0.6)
    assert src == "released" and max(lens) <= 4096 and len(lens) == 500
    lens, src = cot_lengths("SmolLM2", 2000, 160, 0.6)
    assert src == "shape" and max(lens) == 160 and 60 < sum(lens) / len(lens) < 100
    lens, src = cot_lengths("SmolLM2", 3, 160, 0.6, measured={"SmolLM2": [7, 7, 7]})
    assert src == "measured" and lens == [7, 7, 7]
    assert DATA.is_dir()


def test_packer_fits_replicas_of_one_model():
    from pipeline.planning.packing import EngineDemand, Packer
    from pipeline.planning.throughput import load_node_type

    packer = Packer(load_node_type("h200x8").cluster())
    d = EngineDemand(name="QwQ", key="qwq", tp=1, memory_gib=120)
    assert packer.fits([d] * 8) and not packer.fits([d] * 9)


@pytest.fixture(scope="module")
def ref_plan():
    from pipeline.config import compose
    from pipeline.planning.plan import plan

    return plan(compose(["experiment=reference"]), "h200x8", 100)


def test_reference_plan_streaming_shards_and_replicas(ref_plan):
    t = ref_plan.tails
    assert t is not None and t.origin["QwQ"] == "released"
    assert t.shards.makespan_s > t.streaming.makespan_s  # the tail costs the shards
    # the two 32B models bound the makespan; idle GPUs get their replicas, and it drops
    bottleneck = max(t.streaming.engine_s, key=t.streaming.engine_s.get)
    assert bottleneck in ("QwQ", "DAPO")
    assert t.with_replicas.replicas[bottleneck] > 1
    assert t.with_replicas.makespan_s < 0.8 * t.streaming.makespan_s
    gpus = sum(k * ref_plan.schedule.waves[0].placement(m).gpus.__len__() for m, k in t.with_replicas.replicas.items())
    assert gpus <= 8
    assert any(o.startswith(("models.qwq.replicas=", "models.dapo.replicas=")) for o in t.replica_overrides)


def test_replicas_do_not_help_when_no_gpu_is_idle(ref_plan):
    from pipeline.planning.plan import plan

    from pipeline.config import compose
    from pipeline.planning.cluster import ClusterSpec

    cl = ref_plan.schedule.cluster
    five = ClusterSpec(tuple(dataclasses.replace(nd, num_gpus=5) for nd in cl.nodes), source="5 GPUs")
    p = plan(compose(["experiment=reference"]), "h200x8", 30, cluster=five)
    assert p.tails.replica_overrides == [] and p.tails.with_replicas.makespan_s == pytest.approx(
        p.tails.streaming.makespan_s
    )


def test_plan_command_prints_the_simulated_headline(capsys, tmp_path):
    import json

    from pipeline.commands import plan as cmd

    ap = argparse.ArgumentParser()
    cmd.add_arguments(ap)
    ns = ap.parse_args(
        ["--node", "h200x8", "--problems", "40", "--json", str(tmp_path / "p.json"), "experiment=reference"]
    )
    assert cmd.run(ns) == 0
    out = capsys.readouterr().out
    assert "Simulated makespan on h200x8 (SIMULATED" in out
    for line in (
        "streaming (crosscot run)",
        "synchronous shards of 64",
        "streaming + replicas",
        "replica overrides for `crosscot run`: models.",
        "mean throughput (full batches)",
    ):
        assert line in out, line
    data = json.loads((tmp_path / "p.json").read_text())["tails"]
    assert data["simulated"] and data["shards_s"] > data["streaming_s"] > data["replicas_s"] > 0


def _fake_run(tmp_path, lengths: dict[str, list[int]]):
    import pyarrow as pa
    import pyarrow.ipc as ipc

    store = tmp_path / "run" / "store"
    store.mkdir(parents=True)
    for src, ls in lengths.items():
        t = pa.table(
            {"source": [src] * (len(ls) + 1), "method": ["default"] * len(ls) + ["empty"], "cot_tokens": ls + [0]}
        )
        with ipc.new_file(str(store / f"generate-{src}-0.arrow"), t.schema) as w:
            w.write_table(t)
    return tmp_path / "run"


def test_measured_lengths_drive_the_plan(tmp_path, capsys):
    from pipeline.commands import plan as cmd
    from pipeline.planning.lengths import measured_lengths

    run = _fake_run(tmp_path, {"SmolLM2": [160] * 10, "Gemma3": [5] * 10})
    assert measured_lengths(str(run)) == {"SmolLM2": [160] * 10, "Gemma3": [5] * 10}
    ap = argparse.ArgumentParser()
    cmd.add_arguments(ap)
    outs = {}
    for extra in ([], ["--lengths", str(run)]):
        import json

        assert (
            cmd.run(
                ap.parse_args(
                    ["--node", "cpu2", "--json", str(tmp_path / "p.json"), "--force", *extra, "experiment=demo"]
                )
            )
            == 0
        )
        outs[bool(extra)] = json.loads((tmp_path / "p.json").read_text())["tails"]
    assert outs[True]["lengths"] == {"SmolLM2": "measured", "Gemma3": "measured"}
    assert outs[False]["lengths"] == {"SmolLM2": "shape", "Gemma3": "shape"}
    e = outs[True]["engine_streaming_s"]
    assert e["SmolLM2"] > outs[False]["engine_streaming_s"]["SmolLM2"]  # every CoT at the 160-token cap
    from pipeline.planning.throughput import PlanError

    with pytest.raises(PlanError, match="no generated CoTs"):  # one line, exit 2 via pipeline.errors.run_command
        cmd.run(ap.parse_args(["--node", "cpu2", "--lengths", str(tmp_path / "nope"), "experiment=demo"]))


def test_plan_check_spans():
    from types import SimpleNamespace

    from pipeline.bench.plan_check import compare, measured_spans

    tel = {
        "wall_seconds": 300.0,
        "engine_startup_seconds": 90.0,
        "stage_models": {
            "generate": {"A": {"requests": 5, "first_submit": 100.0, "last_done": 250.0}},
            "transfer": {
                "A": {"requests": 5, "first_submit": 150.0, "last_done": 280.0},
                "B": {"requests": 0, "first_submit": None, "last_done": None},
            },
        },
    }
    assert measured_spans(tel) == {"wall_s": 300.0, "startup_s": 90.0, "engine_s": 180.0}
    pl = SimpleNamespace(model="A", loaded=True)
    p = SimpleNamespace(
        load_s={"A": 60.0},
        schedule=SimpleNamespace(waves=[SimpleNamespace(placements=[pl])]),
        tails=SimpleNamespace(streaming=SimpleNamespace(makespan_s=240.0)),
        node=SimpleNamespace(run_overhead_s=15.0),
    )
    res = compare(tel, p)
    assert res["planned"] == {"startup_s": 60.0, "engine_s": 180.0, "wall_s": 255.0}
    assert res["ratio"]["engine_s"] == pytest.approx(1.0) and res["ratio"]["wall_s"] == pytest.approx(255 / 300)
    with pytest.raises(ValueError, match="first_submit"):
        measured_spans({"wall_seconds": 1.0, "stage_models": {}})
