"""Plain-data views of configs: :func:`hash_fields` (exactly the result-changing fields, for artifact keys) and :func:`to_plain` (every field, for provenance).

Fields marked ``metadata={"hash": False}`` (placement, memory, batch sizes: see :func:`pipeline.config.schemas.nohash`) are dropped from hashes, so artifact names change only when outputs would.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pipeline.config.schemas import ModelConfig, ModelProtocol


def hash_fields(obj: Any) -> Any:
    """Plain-data view of a config with non-result fields (metadata hash=False) dropped."""
    if dataclasses.is_dataclass(obj):
        out = {
            f.name: hash_fields(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.metadata.get("hash", True)
        }
        if isinstance(obj, ModelConfig):
            # The format's tags and stop strings shape every prompt and answer: a change to
            # the format definition must change the artifacts' names too.
            from pipeline.engine.formats import FORMATS

            if obj.thinking_format in FORMATS:
                out["_format"] = hash_fields(dataclasses.asdict(FORMATS.get(obj.thinking_format)))
            if obj.protocol == ModelProtocol():
                out.pop("protocol", None)  # the default protocol leaves earlier artifacts' names unchanged
        return out
    if isinstance(obj, dict):
        return {str(k): hash_fields(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [hash_fields(v) for v in obj]
    return obj


def to_plain(obj: Any) -> Any:
    """Plain-data view of a config (all fields), for provenance."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
