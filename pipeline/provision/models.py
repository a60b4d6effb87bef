"""Model provisioning: make sure a model's weights exist locally before an engine loads them.

``ensure_model`` returns the folder of a model: an existing local folder, a
tiny random model it builds, a GGUF-shipped small model it converts
(:mod:`pipeline.provision.gguf`), or a hub id passed through for GPU nodes with a
hub cache.  When nothing fits it raises an error saying where it looked and how
to provide the weights.
"""

from __future__ import annotations

import os
from pathlib import Path


class ModelNotFound(FileNotFoundError):
    pass


def _looks_like_hub_id(path: str) -> bool:
    return "/" in path and not path.startswith((".", "/", "~")) and path.count("/") == 1 and not os.path.exists(path)


def check_source(cfg, key: str = "") -> None:
    """Raise :class:`ModelNotFound` (naming the fix) unless ``cfg``'s weights can be had: a recipe
    (``tiny``/``gguf``), a local folder with ``config.json``, or a hub id.  Reads no weights; called
    for every model before Ray or any engine starts."""
    if cfg.tiny is not None or cfg.gguf:
        return
    path = os.path.expanduser(str(cfg.path))
    if Path(path, "config.json").exists() or _looks_like_hub_id(path):
        return
    raise ModelNotFound(
        f"models.{key or cfg.name}.path={cfg.path}: no weights there (looked for {path}/config.json); "
        "set models.<key>.path to a local folder with config.json + safetensors, a hub id, "
        "or give the model a `tiny:` or `gguf:` recipe and run `crosscot models prepare`"
    )


def ensure_model(cfg) -> str:
    """Return a loadable path for ``cfg`` (a ModelConfig), provisioning it if needed."""
    path = os.path.expanduser(str(cfg.path))
    if cfg.tiny is not None:
        from pipeline.provision.tiny import build_tiny

        return str(build_tiny(cfg.tiny, cfg.thinking_format, path))
    if cfg.gguf:
        # Always through the provisioner: it checks its marker (about 1 ms when up to date)
        # and rebuilds a folder made by an older recipe.
        from pipeline.provision import gguf

        return str(gguf.prepare(cfg.gguf, path))
    check_source(cfg)
    if _looks_like_hub_id(path) and not Path(path, "config.json").exists():
        # A hub id: vLLM resolves it from the local hub cache (HF_HOME) on GPU nodes.
        from huggingface_hub import try_to_load_from_cache

        if os.environ.get("HF_HUB_OFFLINE") == "1" and try_to_load_from_cache(path, "config.json") is None:
            raise ModelNotFound(
                f"model {cfg.name!r}: hub id {path!r} is not in the local Hugging Face cache and the hub "
                "is offline. Download it on a machine with access (huggingface-cli download "
                f"{path}) or set models.<key>.path to a local folder holding config.json and weights."
            )
    return path
