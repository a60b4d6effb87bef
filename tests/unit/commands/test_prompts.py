"""``crosscot prompts`` and the prompt builder it shares with the engine (pipeline.engine.messages)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import ModelProtocol, compose
from pipeline.datasets.medcalc_study import GENEX_ROW_NUMBERS, STUDY_SYSTEM
from pipeline.engine.messages import place_cot, template_call, thought_budget
from pipeline.engine.formats import get_format

REPO = Path(__file__).resolve().parents[3]
TINY = [
    "experiment=demo_tiny",
    "dataset=medcalc",
    "models.a.max_model_len=4096",
    "models.b.max_model_len=4096",
    "models.c.max_model_len=4096",
]


def _prompts(*args: str) -> list[dict]:
    """``crosscot prompts ARGS`` through the CLI's own entry point, in this process (a new interpreter per call
    cost ~5 s of imports; the one-subprocess test below keeps the real command line covered)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["prompts", *args])
    assert rc == 0, err.getvalue()
    return [json.loads(x) for x in out.getvalue().splitlines()]


def test_prompts_from_the_command_line() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "prompts",
            "experiment=demo_tiny",
            "--model",
            "a",
            "--method",
            "default",
            "--limit",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["messages"]


def test_reference_paper_shows_the_study_messages_for_its_100_problems() -> None:
    rows = _prompts("experiment=reference_paper", "--model", "qwq", "--method", "default")
    assert [int(r["problem_id"]) for r in rows] == list(GENEX_ROW_NUMBERS)
    for r in rows:
        assert [m["role"] for m in r["messages"]] == ["system", "user"]
        assert r["messages"][0]["content"] == STUDY_SYSTEM
        assert r["messages"][1]["content"].startswith("Here is the patient note:\n")
        assert r["think_budget"] == 4096 and r["think_budget_plus_prompt"] is True
    oss = _prompts("experiment=reference_paper", "--model", "OSS", "--method", "transfer", "--limit", "2")
    assert len(oss) == 2
    assert oss[0]["chat_template_kwargs"] == {"reasoning_effort": "medium", "model_identity": STUDY_SYSTEM}
    own = _prompts("experiment=reference_paper", "--model", "oss", "--method", "default", "--limit", "1")
    assert own[0]["chat_template_kwargs"]["reasoning_effort"] == "low"
    ours = _prompts("experiment=reference", "--model", "oss", "--method", "transfer", "--limit", "1")
    assert ours[0]["chat_template_kwargs"] == {"reasoning_effort": "medium"}  # system stays a system turn


def test_rendered_with_tiny_tokenizers_shows_bug_compat_flags() -> None:
    from pipeline.provision.models import ensure_model

    for m in compose(TINY).models.values():
        ensure_model(m)  # provisions the tiny tokenizers (no engine)
    paper = {
        m: _prompts(*TINY, "+study_protocol=paper", "--model", m, "--method", "transfer", "--limit", "1")[0]
        for m in ("a", "b", "c")
    }
    ours = {
        m: _prompts(*TINY, "+study_protocol=ours", "--model", m, "--method", "transfer", "--limit", "1")[0]
        for m in ("a", "b", "c")
    }
    assert "<think>\n<think><<COT>></think>" in paper["a"]["rendered"]  # doubled open tag (bug-compat)
    assert ours["a"]["rendered"].count("<think>") == 1
    assert paper["b"]["rendered"].endswith("<|begin_of_thought|><<COT>><|end_of_thought|><|begin_of_solution|>")
    assert paper["c"]["rendered"].endswith("<|start|>assistantassistantanalysis<<COT>>assistantfinal")
    assert ours["c"]["rendered"].endswith(
        "<|channel|>analysis<|message|><<COT>><|end|><|start|>assistant<|channel|>final<|message|>"
    )
    # The study's system text becomes gpt-oss's model identity: no system turn is rendered.
    assert "<|start|>system" not in paper["c"]["rendered"] and "<|start|>system" in ours["c"]["rendered"]
    assert paper["a"]["rendered"].startswith("<|im_start|>system\n" + STUDY_SYSTEM)


def test_errors_are_one_line_exit_2() -> None:
    for args, msg in (
        (["experiment=reference", "--model", "gpt5", "--method", "default"], "--model 'gpt5' is not configured"),
        (["experiment=nope", "--model", "qwq", "--method", "default"], "no such experiment config"),
        (["experiment=reference", "--model", "qwq", "--method", "default", "--limit", "0"], "--limit 0"),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "pipeline", "prompts", *args], capture_output=True, text=True, cwd=REPO, timeout=300
        )
        assert r.returncode == 2 and r.stderr.startswith("crosscot: error: ") and msg in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_place_cot_and_budget_rules() -> None:
    fmt = get_format("think_tags")
    study = ModelProtocol(cot_strings="study")
    gen = "<|im_start|>assistant\n<think>\n"
    assert place_cot(fmt, gen, "c", study) == "<|im_start|>assistant\n<think>c</think>"
    assert (
        place_cot(fmt, gen, "c", ModelProtocol(cot_strings="study", double_think_open=True)) == gen + "<think>c</think>"
    )
    assert place_cot(fmt, gen, "c", ModelProtocol()) == fmt.place_cot(gen, "c")
    with pytest.raises(ValueError):
        place_cot(fmt, gen, "c", ModelProtocol(cot_strings="nope"))
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert template_call(msgs, ModelProtocol(system_role="merge"))[0] == [{"role": "user", "content": "S\n\nU"}]
    p = ModelProtocol(
        chat_template_kwargs={"reasoning_effort": "low"}, transfer_chat_template_kwargs={"reasoning_effort": "medium"}
    )
    assert template_call(msgs, p, "own")[1] == {"reasoning_effort": "low"}
    assert template_call(msgs, p, "transfer")[1] == {"reasoning_effort": "medium"}
    assert thought_budget(4096, 700, 32768, True) == 4796
    assert thought_budget(4096, 700, 4096, True) == 3396  # capped by the context window
    assert thought_budget(4096, 700, 4096, True, reserve=96) == 3300  # room for the answer that follows
    assert thought_budget(4096, 700, 32768, False) == 4096


def test_instruction_induction_study_prompt_and_forced_prefix() -> None:
    """reference_paper on Instruction Induction: the benchmark's prompt as the only user turn, and the
    study's forced answer " The instruction is:" right after the thinking."""
    from pipeline.datasets.ii_study import FORCED_PREFIX, STUDY_TASKS
    from pipeline.provision.models import ensure_model

    rows = _prompts(
        "experiment=reference_paper", "dataset=instruction_induction", "--model", "qwq", "--method", "default"
    )
    assert len(rows) == 100 and len({r["problem_id"].rsplit("-", 1)[0] for r in rows}) == len(STUDY_TASKS)
    for r in rows:
        assert [m["role"] for m in r["messages"]] == ["user"]
        assert r["messages"][0]["content"].endswith("\n\nThe instruction was")
        assert r["answer_prefix"] == FORCED_PREFIX
    tiny = ["experiment=demo_tiny", "dataset=instruction_induction", "dataset.options.tasks=[rhymes]"]
    for m in compose(tiny).models.values():
        ensure_model(m)
    paper = _prompts(*tiny, "+study_protocol=paper", "--model", "a", "--method", "transfer", "--limit", "1")[0]
    assert paper["rendered"].endswith(
        "The instruction was<|im_end|>\n<|im_start|>assistant\n<think>\n<think><<COT>></think> The instruction is:"
    )
    empty = _prompts(*tiny, "+study_protocol=paper", "--model", "c", "--method", "empty", "--limit", "1")[0]
    assert empty["rendered"].endswith("assistantanalysisassistantfinal The instruction is:")
    ours = _prompts(*tiny, "--model", "a", "--method", "transfer", "--limit", "1")[0]
    assert "answer_prefix" not in ours and not ours["rendered"].endswith(
        FORCED_PREFIX
    )  # our protocol: no forced answer


def test_place_cot_appends_the_answer_prefix() -> None:
    fmt = get_format("think_tags")
    proto = ModelProtocol()
    assert (
        place_cot(fmt, "<u>q</u>", "c", proto, " The instruction is:")
        == place_cot(fmt, "<u>q</u>", "c", proto) + " The instruction is:"
    )
    assert place_cot(fmt, "<u>q</u>", "c", proto, None) == place_cot(fmt, "<u>q</u>", "c", proto)
