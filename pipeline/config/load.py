"""Loading configs: Hydra composition of ``conf/`` into a validated :class:`RunConfig`.

:func:`compose` composes ``conf/<name>.yaml`` with overrides; :func:`to_run_config` turns a composed DictConfig into typed dataclasses (unknown or missing fields raise :class:`ConfigError` naming the path) and runs every ``validate()``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from omegaconf import MISSING

from pipeline.config.schemas import ConfigError, DatasetConfig, ModelConfig, RunConfig, apply_protocol


def register_configs() -> None:
    """Register the schemas in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="dataset", name="dataset_schema", node=DatasetConfig)


def conf_dir() -> str:
    """Absolute path of the project's ``conf/`` folder."""
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(os.path.dirname(here)), "conf")  # pipeline/config/ -> repo root


def compose(overrides: list[str] | None = None, config_name: str = "config") -> RunConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides into a validated RunConfig."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = hcompose(config_name=config_name, overrides=list(overrides or []))
    return to_run_config(cfg)


def to_run_config(cfg: Any) -> RunConfig:
    """Turn a composed DictConfig into a validated RunConfig (models typed too)."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    data.pop("hydra", None)
    run = _build(RunConfig, data, "")
    run.validate()
    apply_protocol(run)
    return run


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate nested dataclasses from plain data with clear errors."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(
            f"{where or 'config'} has unknown field(s) {sorted(unknown)}; allowed: {sorted(known)}"
        )
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        if name not in data:
            continue
        v = data[name]
        sub = f"{where}.{name}" if where else name
        if v == "???":
            raise ConfigError(f"{sub} is required but missing: set it in the YAML or as {sub}=...")
        typ = _dataclass_type(cls, name)
        if name == "models" and cls is RunConfig:
            v = {k: _build(ModelConfig, mv, f"models.{k}") for k, mv in (v or {}).items()}
        elif typ is not None:
            v = _build(typ, v, sub)
        kwargs[name] = v
    obj = cls(**kwargs)
    _check_missing(obj, where)
    return obj


def _check_missing(obj: Any, where: str) -> None:
    """Required fields (MISSING) anywhere below ``obj`` -> error naming the full path."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        sub = f"{where}.{f.name}" if where else f.name
        if v is MISSING or (isinstance(v, str) and v == "???"):
            raise ConfigError(f"{sub} is required but missing: set it in the YAML or as {sub}=...")
        if dataclasses.is_dataclass(v):
            _check_missing(v, sub)


def _dataclass_type(cls: type, name: str) -> Optional[type]:
    import typing

    hints = typing.get_type_hints(cls)
    t = hints.get(name)
    args = typing.get_args(t)
    if args:  # Optional[X]
        t = next((a for a in args if a is not type(None)), None)
    return t if isinstance(t, type) and dataclasses.is_dataclass(t) else None
