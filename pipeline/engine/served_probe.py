"""Before any engine starts: check every served model's endpoint, and what it reports for the hash.

:func:`check_served` runs in ``crosscot run``'s preflight for each model with ``engine: openai`` and
a ``base_url``: the key's environment variable must be set, ``GET /v1/models`` must answer and list
the served model name, and a role that needs prompt log-probabilities (an ensemble evaluator) needs
an endpoint that returns them (a one-token probe).  Every failure is a one-line
:class:`~pipeline.config.schemas.ConfigError` naming the fix, before Ray or an engine starts.

:func:`served_identity` is the served model's identity in artifact hashes: its name and what
``/v1/models`` says of it (root, owner, context length; never the URL, never the key), probed
once per process.  Managed servers (no ``base_url``) are keyed like in-process engines, by the
weights folder they serve.
"""

from __future__ import annotations

import os
from typing import Any

_IDENTITY: dict[tuple[str, str], dict] = {}
_KEYS: dict[int, str] = {}  # id(model config) -> its key under models (for messages naming the override)


def served_name(cfg) -> str:
    return cfg.served.model or cfg.name


def api_key(cfg) -> str | None:
    """The key from the variable ``served.api_key_env`` names (None when no variable is configured)."""
    var = cfg.served.api_key_env
    return os.environ.get(var) if var else None


def headers(cfg) -> dict[str, str]:
    key = api_key(cfg)
    return {"Authorization": f"Bearer {key}"} if key else {}


def _slot(cfg) -> str:
    return _KEYS.get(id(cfg), cfg.name)


def _err(msg: str):
    from pipeline.config.schemas import ConfigError

    return ConfigError(msg)


def list_models(cfg, timeout: float = 10.0) -> list[dict]:
    """``GET <base_url>/models`` as a list of model entries; a ConfigError when unreachable or refused."""
    import httpx

    from pipeline.engine.served_client import quiet_httpx

    quiet_httpx()

    url = cfg.served.base_url.rstrip("/") + "/models"
    where = f"models.{_slot(cfg)}.served.base_url={cfg.served.base_url}"
    try:
        r = httpx.get(url, headers=headers(cfg), timeout=timeout)
    except httpx.HTTPError as e:
        raise _err(
            f"{where}: no OpenAI-compatible server answers there ({type(e).__name__}); start the server, "
            "fix the URL (it ends in /v1), or set base_url=null to let crosscot start `vllm serve`"
        ) from None
    if r.status_code in (401, 403):
        raise _err(
            f"{where}: the server refused the key (HTTP {r.status_code}); put a valid key in the "
            f"variable models.{_slot(cfg)}.served.api_key_env names"
        )
    try:
        r.raise_for_status()
        data = r.json()["data"]
        return [d for d in data if isinstance(d, dict)]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        raise _err(
            f"{where}: GET /models answered HTTP {r.status_code} without a model list; "
            "point base_url at an OpenAI-compatible API root (ending in /v1)"
        ) from None


def served_identity(cfg) -> dict:
    """What the server reports of the served model, without volatile fields (see module docstring)."""
    key = (str(cfg.served.base_url), served_name(cfg))
    if key not in _IDENTITY:
        entry = _find(cfg, list_models(cfg))
        _IDENTITY[key] = {
            "served": served_name(cfg),
            **{k: entry.get(k) for k in ("root", "owned_by", "max_model_len", "parent") if entry.get(k) is not None},
        }
    return _IDENTITY[key]


def _find(cfg, models: list[dict]) -> dict:
    from pipeline.errors import did_you_mean

    name = served_name(cfg)
    ids = [str(m.get("id")) for m in models]
    for m in models:
        if m.get("id") == name:
            return m
    raise _err(
        f"models.{_slot(cfg)}.served.model={name!r}: the server at {cfg.served.base_url} does not serve "
        f"it{did_you_mean(name, ids)}; it serves {ids[:8]}: set served.model to one of them"
    )


def check_key(cfg) -> None:
    var = cfg.served.api_key_env
    if var and not os.environ.get(var):
        raise _err(
            f"models.{_slot(cfg)}.served.api_key_env={var}: the environment variable {var} is not set; "
            f"export {var}=<your key> before the run (the key is read from there, never stored)"
        )


def check_prompt_logprobs(cfg, timeout: float = 30.0) -> None:
    """A one-token completion asking for prompt log-probabilities; a ConfigError if none come back."""
    import httpx

    from pipeline.engine.served_client import quiet_httpx

    quiet_httpx()

    where = f"models.{_slot(cfg)} (ensemble evaluator, served at {cfg.served.base_url})"
    fix = (
        "score candidates with an in-process model or a vLLM server (`vllm serve` returns prompt_logprobs), "
        "or remove this model from ensemble.evaluators"
    )
    if cfg.served.api == "chat":
        raise _err(f"{where}: a chat-only endpoint gives no prompt log-probabilities; {fix}")
    body: dict[str, Any] = {
        "model": served_name(cfg),
        "prompt": "Hello world",
        "max_tokens": 1,
        "temperature": 0.0,
        "prompt_logprobs": 0,
    }
    try:
        r = httpx.post(
            cfg.served.base_url.rstrip("/") + "/completions", json=body, headers=headers(cfg), timeout=timeout
        )
        plp = r.json()["choices"][0].get("prompt_logprobs") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
        plp = None
    if not plp or not any(plp):
        raise _err(f"{where}: the endpoint returns no prompt log-probabilities; {fix}")


def check_served(run) -> None:
    """Preflight of every served model in a RunConfig (module docstring); no-op without served models."""
    from pipeline.engine.openai_chat import check_roles

    check_roles(run)
    evaluators = set(run.ensemble.evaluators) if run.ensemble.enabled and "ensemble" in run.stages else set()
    for key, m in run.models.items():
        if m.engine != "openai":
            continue
        _KEYS[id(m)] = key
        check_key(m)
        if not m.served.base_url:
            continue  # managed: crosscot starts the server itself, from the local weights (checked with them)
        served_identity(m)
        if m.name in evaluators:
            check_prompt_logprobs(m)
