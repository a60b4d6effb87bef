"""A chat-only endpoint (a hosted API) as an engine: what it can do, and a clear error for the rest.

``served.api: chat`` sends ``/v1/chat/completions``: the server renders the prompt and keeps its
reasoning hidden or returns it in a separate field (``reasoning_content`` or ``reasoning``).  So such
a model can be a *source* (``generate`` without a given CoT: the CoT is the reasoning field, the
answer the message content) and the *answer-removal filter* (``truncate.filter=rewrite`` runs one
such ``generate`` per CoT, as the study did with o4-mini).  It cannot place a foreign CoT inside its
hidden reasoning (transfer target, Empty CoT, the answer phase), continue raw text (the ``llm``
filter) or score tokens (ensemble): :func:`check_roles` says so before any engine starts, and the
engine raises :class:`NotServable` should a call get through anyway.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.engine.openai_engine import BadResponse, _Busy


class NotServable(RuntimeError):
    """A role a chat-only endpoint cannot play."""


def check_roles(run) -> None:
    """ConfigError for a chat-only model given a role that needs more than chat (see module docstring)."""
    from pipeline.config.schemas import ConfigError

    names = run.model_names
    targets = set(run.transfer.targets if run.transfer.targets is not None else names)
    for key, m in run.models.items():
        if m.engine != "openai" or m.served.api != "chat":
            continue
        roles = []
        if "transfer" in run.stages and m.name in targets:
            roles.append("transfer target (a foreign CoT placed in its reasoning)")
        if "generate" in run.stages and "empty" in run.generate.methods:
            roles.append("Empty CoT source (an empty CoT placed in its reasoning)")
        if run.ensemble.enabled and m.name in set(run.ensemble.generators) | set(run.ensemble.evaluators):
            roles.append("ensemble generator/evaluator (raw continuations and token log-probabilities)")
        if run.truncate.filter == "llm" and run.truncate.filter_model == m.name:
            roles.append("llm answer filter (raw continuations; use truncate.filter=rewrite)")
        if roles:
            raise ConfigError(
                f"models.{key} is a chat-only endpoint (served.api=chat) and cannot be a {roles[0]}; "
                "serve it with vLLM (served.api=completions), or leave it out of that role "
                "(transfer.targets, generate.methods, ensemble.*, truncate.filter_model)"
            )


class ChatEngine:
    """Source and rewrite filter over ``/v1/chat/completions`` (module docstring)."""

    def __init__(self, model_cfg, seed: int = 0):
        from pipeline.engine.served_client import ServedClient
        from pipeline.engine.served_probe import served_name

        self.cfg = model_cfg
        t0 = time.time()
        self.client = ServedClient(model_cfg.served.base_url, model_cfg)
        self.client.url = model_cfg.served.base_url.rstrip("/") + "/chat/completions"
        self.served_model = served_name(model_cfg)
        self.load_seconds = time.time() - t0
        self.load_intervals = [(t0, time.time())]
        self.stats = {
            "prefill_tokens": 0,
            "cached_tokens": 0,
            "generated_tokens": 0,
            "requests": 0,
            "load_seconds": self.load_seconds,
        }
        self._busy = _Busy()

    def _no(self, what: str) -> NotServable:
        return NotServable(f"model {self.cfg.name!r} is a chat-only endpoint: it cannot {what}")

    def info(self) -> dict:
        return {
            "name": self.cfg.name,
            "vllm": "served-chat",
            "served_model": self.served_model,
            "managed": False,
            "load_seconds": self.load_seconds,
            "vocab_size": 0,
            "max_model_len": self.cfg.max_model_len,
        }

    def get_stats(self) -> dict:
        from pipeline.report.telemetry import union_seconds

        iv = list(self._busy.intervals)
        return {
            **self.stats,
            "steps": 0,
            "max_in_flight": self.client.max_seen_in_flight,
            "intervals": iv,
            "load_intervals": list(self.load_intervals),
            "engine_seconds": union_seconds(iv),
            "served": self.client.telemetry(),
        }

    def chat_template_marker(self) -> str | None:
        return None

    def generation_prompt(self, user_prompt: str) -> str:
        raise self._no("show its prompt (the server renders it)")

    async def generate(self, r: dict) -> dict:
        """Request as ModelEngine.generate; only ``cot=None`` (the model thinks itself)."""
        if r.get("cot") is not None:
            raise self._no("answer after a given CoT (its reasoning is the server's)")
        msgs: list[dict] = []
        system = r.get("system") or self.cfg.system_prompt
        if system:
            msgs.append({"role": "system", "content": system})
        msgs.append({"role": "user", "content": r["prompt"]})
        s = r["sampling"]
        body: dict[str, Any] = {
            "model": self.served_model,
            "messages": msgs,
            "max_completion_tokens": int(r["think_tokens"]) + int(r["answer_tokens"]),
        }
        if s.temperature > 0:  # hosted reasoning models accept only their default sampling
            body.update(temperature=s.temperature, top_p=s.top_p)
            if s.seed is not None:
                body["seed"] = s.seed
        self._busy.enter()
        try:
            out = await self.client.complete(body, _parse_chat)
        finally:
            self._busy.leave()
        self.stats["requests"] += 1
        self.stats["prefill_tokens"] += out.pop("_prompt_tokens")
        self.stats["generated_tokens"] += out.pop("_completion_tokens")
        return out

    async def think(self, r: dict) -> dict:
        raise self._no("write a CoT without answering (use generate)")

    async def answer(self, r: dict) -> dict:
        raise self._no("answer after a placed CoT")

    async def complete(self, r: dict) -> dict:
        raise self._no("continue raw text")

    async def propose(self, r: dict) -> dict:
        raise self._no("propose ensemble sentences")

    async def score_texts(self, r: dict, mode: str = "cached") -> list[dict]:
        raise self._no("score token log-probabilities")


def _parse_chat(data: Any) -> dict:
    try:
        c = data["choices"][0]
        msg = c["message"]
    except (TypeError, KeyError, IndexError):
        raise BadResponse("chat response has no choices[0].message") from None
    content = msg.get("content")
    if content is not None and not isinstance(content, str):
        raise BadResponse("chat message content is not text")
    cot = msg.get("reasoning_content") or msg.get("reasoning") or ""
    usage = data.get("usage") or {}
    details = usage.get("completion_tokens_details") or {}
    fr = c.get("finish_reason")
    return {
        "cot": cot,
        "cot_tokens": int(details.get("reasoning_tokens") or 0),
        "forced_close": False,
        "cot_finish_reason": "stop" if fr == "stop" else "length",
        "error": None,
        "answer_text": content or "",
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "answer_tokens": int(usage.get("completion_tokens") or 0) - int(details.get("reasoning_tokens") or 0),
        "finish_reason": fr,
        "_prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "_completion_tokens": int(usage.get("completion_tokens") or 0),
    }
