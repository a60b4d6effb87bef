"""Settings of a served model (``engine: openai``): where its OpenAI-compatible endpoint is and how to talk to it.

A model config with ``engine: openai`` is answered by an HTTP endpoint instead of an in-process vLLM
engine: a running ``vllm serve`` (``served.base_url``), a hosted API (``api: chat``), or, with no
``base_url``, a ``vllm serve`` that crosscot starts and stops itself for that model
(:mod:`pipeline.engine.served`).  Only the served model's name and the API kind change results;
the address, the key's variable, timeouts and concurrency never do (they are left out of every hash,
and the key itself is read from the environment at request time, never stored).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

APIS = ("completions", "chat")


def _nohash(default):  # mirrors schemas.nohash (not imported: schemas imports this module)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"hash": False})
    return field(default=default, metadata={"hash": False})


@dataclass
class ServedConfig:
    """An OpenAI-compatible endpoint for one model (used when the model's ``engine`` is ``openai``)."""

    base_url: Optional[str] = _nohash(None)  # e.g. http://host:8000/v1; null = crosscot runs `vllm serve` itself
    model: Optional[str] = None  # the served model name; null = the model's short name
    # completions: crosscot renders prompts itself (token ids to /v1/completions; every role);
    # chat: a chat-only endpoint (hosted APIs): CoTs from its reasoning field, no placed CoTs.
    api: str = "completions"
    api_key_env: Optional[str] = _nohash(None)  # NAME of the environment variable holding the key
    max_concurrency: int = _nohash(64)  # requests in flight at most (lowered on HTTP 429)
    timeout_s: float = _nohash(600.0)  # per request
    max_retries: int = _nohash(4)  # retries per request on 429/5xx/timeouts/bad bodies
    startup_timeout_s: float = _nohash(900.0)  # managed server: wait this long for /health
    server_args: list = _nohash([])  # managed server: extra `vllm serve` arguments
    log_dir: Optional[str] = _nohash(None)  # managed server log folder; null = the run folder

    def validate(self, where: str) -> None:
        from pipeline.config.checks import choose, number
        from pipeline.config.schemas import ConfigError

        choose(f"{where}.api", self.api, APIS, "served API")
        number(f"{where}.max_concurrency", self.max_concurrency, 1, integer=True)
        number(f"{where}.timeout_s", self.timeout_s, 0, lo_open=True)
        number(f"{where}.max_retries", self.max_retries, 0, integer=True)
        if self.base_url is not None and not str(self.base_url).startswith(("http://", "https://")):
            raise ConfigError(
                f"{where}.base_url={self.base_url!r}: not an http(s) URL; "
                "write e.g. http://127.0.0.1:8000/v1, or null to let crosscot start `vllm serve`"
            )
        if self.api == "chat" and self.base_url is None:
            raise ConfigError(
                f"{where}.api=chat needs {where}.base_url (a managed server speaks completions); "
                "set base_url or api=completions"
            )
        if self.api_key_env is not None and not str(self.api_key_env).replace("_", "").isalnum():
            raise ConfigError(
                f"{where}.api_key_env={self.api_key_env!r}: give the NAME of an environment "
                "variable (e.g. OPENAI_API_KEY), never the key itself"
            )


def apply_served(run) -> None:
    """Managed servers log into the run folder unless told otherwise (never changes results)."""
    for m in run.models.values():
        if m.engine == "openai" and not m.served.log_dir:
            m.served.log_dir = str(run.run_dir)
