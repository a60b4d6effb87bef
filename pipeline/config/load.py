"""Loading configs: Hydra composition of ``conf/`` into a validated :class:`RunConfig`.

:func:`compose` composes ``conf/<name>.yaml`` with overrides; :func:`to_run_config` turns a composed DictConfig into typed dataclasses (unknown or missing fields raise :class:`ConfigError` naming the path) and runs every ``validate()``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from omegaconf import MISSING

from pipeline.config.schemas import ConfigError, DatasetConfig, ModelConfig, RunConfig, apply_protocol
from pipeline.errors import did_you_mean


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
    from hydra.errors import HydraException

    overrides = list(overrides or [])
    try:
        with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
            cfg = hcompose(config_name=config_name, overrides=overrides)
    except (HydraException, ValueError) as e:  # ValueError: Hydra's own, e.g. a number as a config group
        raise composition_error(e, overrides) from e
    return to_run_config(cfg)


def model_slot_error(key: str, slot: str, value: Any, slot_exists: bool = False) -> ConfigError:
    """``models.<slot>=<value>`` (a name where a model config belongs): how to choose a model by config
    group — replacing the slot's model when it has one, else adding one."""
    from pipeline.errors import did_you_mean

    models = config_names("model")
    if value in models:
        if slot_exists:
            return ConfigError(
                f"{key}={value}: a model is chosen by config group; "
                f"write model@models.{slot}={value} (+model@models.{slot}={value} to add one)"
            )
        return ConfigError(
            f"{key}={value}: a model is chosen by config group; "
            f"write +model@models.{slot}={value} to add it (model@models.{slot}=... replaces one)"
        )
    return ConfigError(
        f"{key}={value}: no such model config{did_you_mean(str(value), models)}; "
        f"choose one of {models} as model@models.{slot}=<name>"
    )


def config_names(group: str) -> list[str]:
    """The configs of a ``conf/`` group (``model``, ``dataset``, ...), schema nodes left out."""
    import os

    folder = os.path.join(conf_dir(), group)
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")) if os.path.isdir(folder) else []


def composition_error(e: Exception, overrides: list[str]) -> ConfigError:
    """A Hydra composition error as one line naming the bad override, the allowed values and the fix."""
    import re

    from hydra.errors import MissingConfigException, OverrideParseException

    from pipeline.errors import did_you_mean

    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, MissingConfigException) and e.missing_cfg_file and "/" in e.missing_cfg_file:
        group, name = e.missing_cfg_file.rsplit("/", 1)
        opts = [o for o in (e.options or config_names(group)) if not o.endswith("_schema")]
        said = next(
            (
                o
                for o in overrides
                if o.lstrip("+~").split("=", 1)[0].split("@", 1)[0] == group and o.endswith(f"={name}")
            ),
            f"{group}={name}",
        )
        return ConfigError(f"{said}: no such {group} config{did_you_mean(name, opts)}; choose one of {opts}")
    if isinstance(e, OverrideParseException):
        from pipeline.config.overrides import quote_hint

        bad = _unparsable(overrides) or "an override"
        hint = quote_hint(bad) if bad != "an override" else None
        if hint:  # a path or text holding the grammar's characters: quoting is the whole fix
            return ConfigError(f"{bad}: the value has characters Hydra's override syntax reserves; {hint}")
        return ConfigError(
            f"{bad}: cannot parse this override ({' '.join(first.split())}); write key=value, lists as key=[a,b]"
        )
    m = re.match(r"Could not override '([^']+)'", first)
    if m:
        key = m.group(1)
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), "?")
        if key.startswith("models.") and key.count(".") >= 2:  # a field of a model: models.a.<field>
            parts = key.split(".")
            cls: Any = ModelConfig
            where = f"models.{parts[1]}"
            for p in parts[2:-1]:  # walk nested settings (greedy.temperature, tiny.hidden_size, ...)
                sub = _dataclass_type(cls, p)
                if sub is None:
                    break
                cls, where = sub, f"{where}.{p}"
            names = [f"{where}.{f.name}" for f in dataclasses.fields(cls)]
            return ConfigError(
                f"{key}={value}: no such setting{did_you_mean(key, names)}; "
                f"the settings of {where} are in pipeline/config/schemas.py ({cls.__name__})"
            )
        if key.startswith(("models.", "model@models.")):
            return model_slot_error(key, key.split("models.", 1)[1], value)
        return ConfigError(
            f"{key}={value}: no such setting{did_you_mean(key, _known_keys(key))}; "
            "the fields are documented in pipeline/config/schemas.py (+key=value adds a key to an open mapping)"
        )
    if first.startswith("Config group override must be"):
        groups = ("dataset", "experiment", "model_set", "ray", "study_protocol", "node")
        group = next(
            (
                o.split("=", 1)[0]
                for o in overrides
                if "=" in o
                and o.split("=", 1)[0].lstrip("+~") in groups
                and o.split("=", 1)[1] not in config_names(o.split("=", 1)[0].lstrip("+~"))
            ),
            "the group",
        )
        opts = config_names(group.lstrip("+~")) if group != "the group" else []
        return ConfigError(
            f"{group}: a config group takes a config name, not a number or mapping; choose one of {opts}"
        )
    if "Error merging override" in first:
        cause = e.__cause__ or e.__context__
        detail = " ".join(str(cause).splitlines()[0].split()) if cause else ""
        return ConfigError(
            f"{first.replace('Error merging override ', '')}: wrong type ({detail}); "
            "give a value of the field's type (see pipeline/config/schemas.py)"
        )
    return ConfigError(f"{first}; check the overrides {overrides}")


def _unparsable(overrides: list[str]) -> Optional[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_override(o)
        except Exception:  # noqa: BLE001 - any parse failure names this override
            return o
    return None


def _known_keys(key: str) -> list[str]:
    """Dotted field names next to ``key`` in the RunConfig schema (for did-you-mean)."""
    cls: Any = RunConfig
    parts = key.split(".")
    prefix = []
    for p in parts[:-1]:
        sub = _dataclass_type(cls, p) if dataclasses.is_dataclass(cls) else None
        if sub is None:
            break
        cls, prefix = sub, prefix + [p]
    if not dataclasses.is_dataclass(cls):
        return []
    return [".".join(prefix + [f.name]) for f in dataclasses.fields(cls)]


def to_run_config(cfg: Any) -> RunConfig:
    """Turn a composed DictConfig into a validated RunConfig (models typed too)."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    data.pop("hydra", None)
    run = _build(RunConfig, data, "")
    run.validate()
    apply_protocol(run)
    from pipeline.config.served import apply_served

    apply_served(run)
    if run.node_type:
        apply_node(run)
    return run


def apply_node(run: RunConfig) -> None:
    """Apply the node type's engine sizing (``conf/node/<run.node_type>.yaml`` ``model_overrides``: TP,
    memory; placement fields only, so no hash changes) to the run, as ``crosscot plan --node`` assumes."""
    from pipeline.planning.throughput import PlanError, apply_node_overrides

    try:
        sized, _ = apply_node_overrides(run, run.node_type)
    except (PlanError, FileNotFoundError) as e:
        raise ConfigError(
            f"node_type={run.node_type!r}: {e}; use a name from conf/node (h100x8, h200x8, cpu2) or a node file's path"
        ) from None
    for key, m in sized.models.items():
        run.models[key] = m


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate nested dataclasses from plain data with clear errors."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        first = sorted(unknown)[0]
        raise ConfigError(
            f"{where or 'config'} has unknown field(s) {sorted(unknown)}{did_you_mean(first, known)}; "
            f"allowed: {sorted(known)}"
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
            for k, mv in (v or {}).items():
                if not isinstance(mv, dict):
                    raise model_slot_error(f"models.{k}", k, mv, slot_exists=True)
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
