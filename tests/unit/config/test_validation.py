"""Every enum and number is checked when the config loads, with the allowed values and a did-you-mean;
the CLI turns user errors into one line on stderr and exit 2 (a traceback only with --debug)."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError, compose


@pytest.mark.parametrize(
    "override, says",
    [
        ("models.a=nosuch", "models.a=nosuch: no such model config"),
        ("models.a=tiny_thought", "write model@models.a=tiny_thought"),
        ("model@models.a=nosuch", "model@models.a=nosuch: no such model config"),
        ("dataset=medcalcc", "(did you mean 'medcalc'?)"),
        ("transfer.variants=[fulll]", "(did you mean 'full'?)"),
        ("transfer.variants=[fulll", "cannot parse this override"),
        ("transfer.targets=[tiny-thnk]", "(did you mean 'tiny-think'?)"),
        ("score.judge=bogus", "score.judge='bogus': unknown judge"),
        ("score.metrics=[papr]", "(did you mean 'paper'?)"),
        ("stages=[generat]", "(did you mean 'generate'?)"),
        ("generate.methods=[defualt]", "(did you mean 'default'?)"),
        ("generate.thougt_budget=3", "(did you mean 'generate.thought_budget'?)"),
        ("generate.num_samples=abc", "generate.num_samples=abc: wrong type"),
        ("generate.num_samples=0", "generate.num_samples=0: out of range"),
        ("truncate.filter=llmm", "(did you mean 'llm'?)"),
        ("truncate.prefix_fractions=[1.5]", "truncate.prefix_fractions[]=1.5: out of range"),
        ("ensemble.scoring=nll", "ensemble.scoring='nll'"),
        ("ensemble.candidates=0", "ensemble.candidates=0"),
        ("models.a.dtype=fp16", "models.a.dtype='fp16'"),
        ("models.a.thinking_format=think_tag", "(did you mean 'think_tags'?)"),
        ("models.a.greedy.top_p=2", "models.a.greedy.top_p=2.0: out of range"),
        ("models.a.sampled.min_p=-1", "models.a.sampled.min_p"),
        ("models.a.max_num_seqs=0", "models.a.max_num_seqs=0"),
        ("models.a.tiny.family=gpt2", "models.a.tiny.family='gpt2'"),
        ("ray.max_concurrent_engines=0", "ray.max_concurrent_engines=0"),
        ("error_budget=2", "error_budget=2"),
        ("+dataset.options.on_bad_row=ignore", "dataset.options.on_bad_row='ignore'"),
    ],
)
def test_bad_values_fail_at_load_naming_value_and_choices(override, says):
    with pytest.raises(ConfigError) as e:
        compose(["experiment=demo_tiny", override])
    assert says in str(e.value)
    assert "\n" not in str(e.value).strip()


def test_good_config_still_loads():
    cfg = compose(["experiment=demo_tiny", "truncate.prefix_fractions=[0.5]", "transfer.variants=[full,prefix_0.5]"])
    assert cfg.transfer.variants == ["full", "prefix_0.5"]


def test_cli_one_line_exit_2_and_debug_traceback(capsys, monkeypatch):
    from pipeline.cli import main

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert main(["plan", "--node", "cpu2", "experiment=demo_tiny", "score.judge=bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "crosscot: error: score.judge='bogus': unknown judge (did you mean 'ours'?); choose one of ['ours', 'stored']"
    ]
    assert main(["--debug", "plan", "--node", "cpu2", "experiment=demo_tiny", "score.judge=bogus"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_run_checks_everything_before_ray(monkeypatch, tmp_path):
    """A bad job anywhere in a sweep stops `run` before Hydra, Ray or any engine starts."""
    import pipeline.hydra_app as app

    started = []
    monkeypatch.setattr(app, "_main", lambda: started.append(1))
    with pytest.raises(ConfigError, match="dataset.limit=0"):
        app.run_cli(["-m", "experiment=demo_tiny", f"run_dir={tmp_path}", "dataset.limit=2,0"])
    with pytest.raises(FileNotFoundError, match="no weights there"):
        app.run_cli(["experiment=demo_tiny", "models.a.tiny=null", f"models.a.path={tmp_path}/none"])
    assert started == []
