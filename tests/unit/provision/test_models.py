"""Model provisioning: missing weights give an error saying where we looked and how to provide them."""

from __future__ import annotations

import pytest

from pipeline.config import compose
from pipeline.provision.models import ModelNotFound, ensure_model


def test_missing_local_folder(tmp_path):
    m = compose(["experiment=demo"]).model("SmolLM2")
    m.gguf = None
    m.path = str(tmp_path / "nowhere")
    with pytest.raises(ModelNotFound, match=r"(?s)no weights .*nowhere.*config\.json.*models prepare"):
        ensure_model(m)


def test_hub_id_not_cached_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = compose(["experiment=reference"]).model("QwQ")
    with pytest.raises(ModelNotFound, match=r"(?s)Qwen/QwQ-32B.*not in the local Hugging Face cache.*local folder"):
        ensure_model(m)


def test_local_folder_passes_through(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    m = compose(["experiment=reference"]).model("QwQ")
    m.path = str(tmp_path)
    assert ensure_model(m) == str(tmp_path)


def test_tiny_is_built_once_and_reused(tmp_path):
    m = compose(["experiment=demo_tiny"]).model("tiny-think")
    m.path = str(tmp_path / "tiny")
    p1 = ensure_model(m)
    stamp = (tmp_path / "tiny" / "model.safetensors").stat().st_mtime_ns
    assert ensure_model(m) == p1
    assert (tmp_path / "tiny" / "model.safetensors").stat().st_mtime_ns == stamp
    m.tiny.seed = 99  # a new recipe rebuilds
    ensure_model(m)
    assert (tmp_path / "tiny" / "model.safetensors").stat().st_mtime_ns != stamp
