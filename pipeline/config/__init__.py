"""Configuration: typed schemas (:mod:`.schemas`), Hydra loading and validation (:mod:`.load`), and
hashing of exactly the result-changing fields (:mod:`.hashing`).

``from pipeline.config import compose, hash_fields, RunConfig`` is the usual entry point; the names
below are the package's public surface.
"""

from pipeline.config.hashing import engine_key, hash_fields, model_key, problems_key, to_plain
from pipeline.config.load import (
    _build,
    compose,
    conf_dir,
    register_configs,
    to_run_config,
)
from pipeline.config.schemas import (
    ConfigError,
    DatasetConfig,
    EnsembleConfig,
    GenerateConfig,
    ModelConfig,
    ModelProtocol,
    ProtocolConfig,
    RayConfig,
    RunConfig,
    SamplingConfig,
    ScoreConfig,
    StreamConfig,
    TinyModelSpec,
    TransferConfig,
    TruncateConfig,
    apply_protocol,
    nohash,
)

__all__ = [
    "ConfigError",
    "DatasetConfig",
    "EnsembleConfig",
    "GenerateConfig",
    "ModelConfig",
    "ModelProtocol",
    "ProtocolConfig",
    "RayConfig",
    "RunConfig",
    "SamplingConfig",
    "ScoreConfig",
    "StreamConfig",
    "TinyModelSpec",
    "TransferConfig",
    "TruncateConfig",
    "_build",
    "apply_protocol",
    "compose",
    "conf_dir",
    "engine_key",
    "hash_fields",
    "model_key",
    "problems_key",
    "nohash",
    "register_configs",
    "to_plain",
    "to_run_config",
]
