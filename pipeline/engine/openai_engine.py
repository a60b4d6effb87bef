"""A served model as an :class:`~pipeline.engine.protocol.Engine`: the same operations, over HTTP.

:class:`OpenAIEngine` is :class:`~pipeline.engine.vllm_engine.ModelEngine` with another transport:
every operation (think, answer, generate, complete, propose, score_texts) renders its prompt with
the model's own tokenizer and chat template exactly as the in-process engine does, and only the last
step, one request of token ids with its sampling settings (``run``), goes to ``/v1/completions`` of
an OpenAI-compatible server instead of vLLM's step loop.  So the placed thinking is byte for byte the
in-process one, and with the same per-request seeds a vLLM server returns the same tokens.

The endpoint is a ``vllm serve`` crosscot starts itself (:mod:`pipeline.engine.served`, when
``served.base_url`` is null) or any server the user runs.  ``served.api: chat`` (a hosted API)
answers through :mod:`pipeline.engine.openai_chat` instead: CoTs from the reasoning field it returns,
and a clear error for a role it cannot play.

HTTP, retries and adaptive concurrency live in :mod:`pipeline.engine.served_client`; this module
only maps one request to a body and the body back to the engine's output shape
(:func:`request_body`, :func:`parse_output`: the one adapter between the engine's requests and the wire).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.engine.phases import PHASE_COUNTERS
from pipeline.engine.vllm_engine import ModelEngine, Sampling


@dataclass
class Choice:
    """One completion, shaped like vLLM's ``CompletionOutput`` as far as the engine reads it."""

    text: str
    token_ids: list[int]
    finish_reason: str | None
    stop_reason: Any = None


@dataclass
class _Logprob:
    logprob: float


@dataclass
class Output:
    """One request's result, shaped like vLLM's ``RequestOutput`` as far as the engine reads it."""

    outputs: list[Choice]
    prompt_token_ids: list[int]
    num_cached_tokens: int = 0
    prompt_logprobs: list[dict[int, _Logprob] | None] | None = None


def request_body(model: str, ids: list[int], p: dict) -> dict:
    """The ``/v1/completions`` body of one request: token ids and every sampling setting, explicitly."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": ids,
        "max_tokens": int(p["max_tokens"]),
        "temperature": p["temperature"],
        "top_p": p["top_p"],
        "top_k": p["top_k"],
        "min_p": p["min_p"],
        "repetition_penalty": p["repetition_penalty"],
        "n": p.get("n", 1),
        "return_token_ids": True,
        "skip_special_tokens": p.get("skip_special_tokens", True),
        "include_stop_str_in_output": p.get("include_stop_str_in_output", False),
        "ignore_eos": p.get("ignore_eos", False),
    }
    if p.get("seed") is not None:
        body["seed"] = p["seed"]
    if p.get("stop"):
        body["stop"] = list(p["stop"])
    if p.get("stop_token_ids"):
        body["stop_token_ids"] = [int(t) for t in p["stop_token_ids"]]
    if p.get("prompt_logprobs") is not None:
        body["prompt_logprobs"] = p["prompt_logprobs"]
    return body


class BadResponse(RuntimeError):
    """The server answered 200 with a body that is not a usable completion (retried like a 5xx)."""


def parse_output(data: Any, ids: list[int], want_n: int, want_lp: bool) -> Output:
    """A completions response as an :class:`Output`; :class:`BadResponse` when it is unusable."""
    try:
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
    except (TypeError, KeyError, AttributeError):
        raise BadResponse("response has no 'choices' list") from None
    if len(choices) != want_n:
        raise BadResponse(f"response has {len(choices)} choice(s), asked for {want_n}")
    outs = []
    for c in choices:
        if not isinstance(c, dict) or not isinstance(c.get("text"), str):
            raise BadResponse("a choice has no text")
        tids = c.get("token_ids")
        if not isinstance(tids, list):
            raise BadResponse("a choice has no token_ids (the server must return them: a vLLM server does)")
        outs.append(Choice(c["text"], [int(t) for t in tids], c.get("finish_reason"), c.get("stop_reason")))
    plp = None
    if want_lp:
        raw = choices[0].get("prompt_logprobs")
        if not isinstance(raw, list) or len(raw) != len(ids):
            raise BadResponse("response has no prompt_logprobs for every prompt position")
        plp = [None if d is None else {int(k): _Logprob(float(v["logprob"])) for k, v in d.items()} for d in raw]
    usage = data.get("usage") or {}
    cached = ((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0
    return Output(outs, list(ids), int(cached), plp)


@dataclass
class _Busy:
    """Busy intervals of the endpoint as this engine saw it (some request in flight)."""

    in_flight: int = 0
    since: float = 0.0
    intervals: list = field(default_factory=list)

    def enter(self) -> None:
        if self.in_flight == 0:
            self.since = time.time()
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.intervals.append((self.since, time.time()))


class OpenAIEngine(ModelEngine):
    """One served model (module docstring); a managed ``vllm serve`` when ``served.base_url`` is null."""

    def __init__(self, model_cfg, seed: int = 0):
        from pipeline.engine.formats import get_format
        from pipeline.engine.served_client import ServedClient
        from pipeline.engine.served_probe import served_name

        self.cfg = model_cfg
        self.fmt = get_format(model_cfg.thinking_format)
        self.server = None
        t0 = time.time()
        base_url = model_cfg.served.base_url
        if not base_url:
            from pipeline.engine.served import ManagedServer

            self.server = ManagedServer(model_cfg, seed)
            base_url = self.server.start()
        self.base_url = base_url
        self.client = ServedClient(base_url, model_cfg)
        self.served_model = served_name(model_cfg)
        self.tok = _load_tokenizer(model_cfg)
        self.load_seconds = time.time() - t0
        self.load_intervals = [(t0, time.time())]
        self.stats = {
            "prefill_tokens": 0,
            "cached_tokens": 0,
            "generated_tokens": 0,
            "requests": 0,
            "load_seconds": self.load_seconds,
            **{k: 0 for k in PHASE_COUNTERS},
        }
        self._busy = _Busy()
        self._specials = [t for t in getattr(self.tok, "all_special_tokens", []) if t and t != self.fmt.think_stop]
        # The close tag as one token id, as the in-process engine stops on it (``stop_token_ids``).
        tag_ids = self.encode(self.fmt.think_stop) if self.fmt.think_stop else []
        self._close_id = tag_ids[0] if len(tag_ids) == 1 else None
        # For the answer's cache-hit telemetry only (the server's block size is not reported).
        self.block_size = int(model_cfg.block_size or 16)

    def info(self) -> dict:
        return {
            "name": self.cfg.name,
            "vllm": "served",
            "served_model": self.served_model,
            "managed": self.server is not None,
            "load_seconds": self.load_seconds,
            "vocab_size": len(self.tok),
            "max_model_len": self.cfg.max_model_len,
        }

    # The sampling of one request as plain data (the in-process engine builds vLLM SamplingParams).
    def params(self, s: Sampling, max_tokens: int, stop=None, **kw) -> dict:
        return {
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k if s.top_k > 0 else -1,
            "min_p": s.min_p,
            "repetition_penalty": s.repetition_penalty,
            "seed": s.seed if s.temperature > 0 else None,
            "max_tokens": max_tokens,
            "stop": stop,
            **kw,
        }

    @staticmethod
    def _lp_params(skip_cache: bool) -> dict:
        # A vLLM server computes prompt log-probabilities without reading its prefix cache.
        return {
            "temperature": 0.0,
            "top_p": 1.0,
            "top_k": -1,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "seed": None,
            "max_tokens": 1,
            "prompt_logprobs": 0,
        }

    async def run(self, ids: list[int], params: dict, priority: int = 0) -> Output:
        """One request to the endpoint (retried there on transient failures); counts its tokens.
        ``priority`` is ignored: a server schedules by priority only when started so."""
        body = request_body(self.served_model, ids, params)
        want_lp = params.get("prompt_logprobs") is not None
        self._busy.enter()
        try:
            o = await self.client.complete(body, lambda data: parse_output(data, ids, body["n"], want_lp))
        finally:
            self._busy.leave()
        self._count(o)
        return o

    def run_many(self, ids: list[list[int]], params: list) -> list:
        import asyncio

        async def all_() -> list:
            return list(await asyncio.gather(*(self.run(i, p) for i, p in zip(ids, params))))

        return asyncio.run(all_())

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

    def __del__(self) -> None:
        srv = getattr(self, "server", None)
        if srv is not None:
            srv.stop()


def _load_tokenizer(cfg):
    """The model's own tokenizer (and chat template), as the in-process engine has it."""
    from transformers import AutoTokenizer

    from pipeline.provision.models import ensure_model

    path = cfg.tokenizer or ensure_model(cfg)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    if cfg.chat_template:
        tok.chat_template = cfg.chat_template
    return tok


def engine_for(model_cfg, seed: int = 0):
    """The engine a model config asks for: in-process vLLM, or a served endpoint."""
    if model_cfg.engine == "openai":
        if model_cfg.served.api == "chat":
            from pipeline.engine.openai_chat import ChatEngine

            return ChatEngine(model_cfg, seed)
        return OpenAIEngine(model_cfg, seed)
    return ModelEngine(model_cfg, seed=seed)
