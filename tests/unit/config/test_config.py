"""Every config under conf/ composes and validates; bad values get errors naming the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, ModelConfig, compose, conf_dir, hash_fields

CONF = Path(conf_dir())


def _names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", _names("experiment"))
def test_every_experiment_composes(experiment, tmp_path):
    # run_dir given: sweep experiments interpolate it from ${hydra:job.num}, set only inside a multirun
    cfg = compose([f"experiment={experiment}", f"run_dir={tmp_path}"])
    assert cfg.models, experiment
    for m in cfg.models.values():
        assert m.greedy.temperature == 0  # explicit, greedy
        assert m.sampled.top_p > 0


@pytest.mark.parametrize("model", _names("model"))
def test_every_model_composes(model):
    cfg = (
        compose(["experiment=demo_tiny", f"+model@models.extra={model}"])
        if not model.startswith("tiny")
        else compose(["experiment=demo_tiny"])
    )
    names = cfg.model_names
    assert len(names) == len(set(names))
    m = cfg.models["extra"] if "extra" in cfg.models else cfg.models["a"]
    assert isinstance(m, ModelConfig)
    assert m.path and m.thinking_format


@pytest.mark.parametrize("dataset", _names("dataset"))
def test_every_dataset_composes(dataset):
    cfg = compose(["experiment=demo_tiny", f"dataset={dataset}"])
    assert cfg.dataset.name


@pytest.mark.parametrize("ray_cfg", _names("ray"))
def test_every_ray_config_composes(ray_cfg):
    cfg = compose([f"ray={ray_cfg}"])
    assert (cfg.ray.address is None) == (ray_cfg == "local")


def test_node_types_parse():
    from omegaconf import OmegaConf

    for p in (CONF / "node").glob("*.yaml"):
        data = OmegaConf.to_container(OmegaConf.load(p))
        assert data, p


def test_unknown_thinking_format_names_field_and_choices():
    with pytest.raises(ConfigError, match=r"models\.a\.thinking_format='nope'.*think_tags"):
        compose(["experiment=demo_tiny", "models.a.thinking_format=nope"])


def test_unknown_dataset_suggests():
    with pytest.raises(ConfigError, match=r"dataset.name='toy_arit': unknown dataset \(did you mean 'toy_arith'\?\)"):
        compose(["experiment=demo_tiny", "dataset.name=toy_arit"])


def test_greedy_must_be_greedy():
    with pytest.raises(ConfigError, match="greedy.temperature"):
        compose(["experiment=demo_tiny", "models.a.greedy.temperature=0.5"])


def test_unknown_model_in_transfer_targets():
    with pytest.raises(ConfigError, match="transfer.targets has 'ghost': unknown model"):
        compose(["experiment=demo_tiny", "transfer.targets=[ghost]"])


def test_missing_sampling_is_an_error_not_a_default():
    from pipeline.config import RunConfig, _build

    data = {
        "models": {
            "x": {
                "name": "x",
                "path": "/p",
                "thinking_format": "plain",
                "greedy": {"temperature": 0.0, "top_p": 1.0, "top_k": -1},
            }
        },
        "dataset": {"name": "toy_arith"},
    }
    with pytest.raises(ConfigError, match=r"models\.x\.sampled\.temperature is required"):
        _build(RunConfig, data, "")


def test_unknown_field_rejected():
    from pipeline.config import RunConfig, _build

    with pytest.raises(ConfigError, match="unknown field"):
        _build(RunConfig, {"genrate": {}}, "")


def test_hash_fields_drop_placement_only():
    cfg = compose(["experiment=demo_tiny"])
    m = cfg.models["a"]
    h = hash_fields(m)
    assert "tensor_parallel_size" not in h and "kv_cache_gib" not in h and "num_cpus" not in h
    assert "dtype" in h and "greedy" in h and "_weights" in h and "path" not in h  # content, not place
    cfg2 = compose(["experiment=demo_tiny", "models.a.num_cpus=2", "models.a.max_num_seqs=8"])
    assert hash_fields(cfg2.models["a"]) == h
    cfg3 = compose(["experiment=demo_tiny", "models.a.sampled.temperature=0.3"])
    assert hash_fields(cfg3.models["a"]) != h
