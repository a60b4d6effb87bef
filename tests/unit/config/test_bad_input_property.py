"""Property: any override string, and any bytes as a dataset file, give either a valid run config or
exit 2 with exactly one ``crosscot: error:`` line — never a traceback (the CLI's own pre-flight path:
compose, validate, weights, run folder, dataset load, everything checked before Ray starts)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import run_command
from pipeline.hydra_app import preflight

# Keys of the demo config (valid ones and near misses); run folders and cluster addresses are left out:
# a random path or host would make the property touch the machine, not the validation.
KEYS = [
    "generate.methods",
    "generate.thought_budget",
    "generate.answer_budget",
    "generate.num_samples",
    "transfer.variants",
    "transfer.targets",
    "dataset",
    "dataset.limit",
    "dataset.size",
    "dataset.name",
    "models.a.thinking_format",
    "models.a.max_model_len",
    "models.a.greedy.top_p",
    "model@models.b",
    "score.metrics",
    "score.judge",
    "stages",
    "error_budget",
    "truncate.prefix_fractions",
    "experiment",
    "generate.thougt_budget",
    "models.a.thinkng_format",
    "+dataset.options.answer_regex",
    "~models.c",
    "ensemble.enabled",
    "stream.flush_rows",
]
GRAMMAR = st.characters(codec="utf-8", exclude_categories=("Cs",))
VALUES = st.one_of(
    st.text(GRAMMAR, max_size=12),
    st.integers(-5, 5000).map(str),
    st.sampled_from(
        [
            "[]",
            "[full]",
            "[fulll",
            "null",
            "true",
            "1.5",
            "'(['",
            "{a: 1}",
            "${oc.env:X}",
            "[paper,strict]",
            "gsm8k",
            "jsonl",
            "tiny_think",
            "default,sampled",
        ]
    ),
)
OVERRIDE = st.one_of(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), VALUES), st.text(GRAMMAR, max_size=30))


def _check(argv: list[str], capsys) -> None:
    capsys.readouterr()
    rc = run_command(lambda: preflight([argv]) and 0, [])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    if rc == 0:  # a valid config
        return
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("crosscot: error: "), (argv, rc, err)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.lists(OVERRIDE, min_size=1, max_size=3))
def test_random_overrides_are_a_valid_config_or_one_line(overrides: list[str], capsys) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check(["experiment=demo_tiny", f"run_dir={tmp}/run", "progress=false", *overrides], capsys)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.one_of(
                st.binary(max_size=40),
                st.sampled_from([b'{"question": "1+1?", "answer": "2"}', b'{"question": 3}', b"[1]", b"{}"]),
            ),
            max_size=6,
        ).map(b"\n".join),
    ),
    name=st.sampled_from(["x.jsonl", "x.jsonl.gz", "x.parquet"]),
)
def test_random_bytes_as_a_dataset_file_are_a_valid_config_or_one_line(data: bytes, name: str, capsys) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        _check(
            ["experiment=demo_tiny", f"run_dir={tmp}/run", "progress=false", "dataset=jsonl", f"dataset.path='{path}'"],
            capsys,
        )


def setup_module() -> None:
    os.environ.setdefault("CROSSCOT_RAY_CONNECT_TIMEOUT_S", "1")
