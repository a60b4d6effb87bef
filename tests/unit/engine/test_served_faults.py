"""The served engine's HTTP client against a fault-injecting server: retries, Retry-After, adaptive
concurrency, failures that stay failures, and the preflight probes' one-line errors."""

from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.config.schemas import ConfigError, ModelConfig
from pipeline.config.served import ServedConfig
from pipeline.engine.fault_server import FaultServer
from pipeline.engine.openai_engine import parse_output, request_body
from pipeline.engine.served_client import ServedClient, ServedRequestError

KEY = "sk-test-SECRET-1234"


def _cfg(url: str, **kw) -> ModelConfig:
    return ModelConfig(
        name="m", path="/nonexistent", thinking_format="plain", engine="openai", served=ServedConfig(base_url=url, **kw)
    )


def _params(n: int = 1, **kw) -> dict:
    return {
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": -1,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "seed": None,
        "max_tokens": 4,
        "n": n,
        **kw,
    }


def _one(client: ServedClient, ids=(1, 2, 3), n: int = 1, lp: bool = False):
    p = _params(n, **({"prompt_logprobs": 0} if lp else {}))
    body = request_body("m", list(ids), p)
    return client.complete(body, lambda d: parse_output(d, list(ids), n, lp))


def _client(srv: FaultServer, **kw) -> ServedClient:
    return ServedClient(srv.base_url, _cfg(srv.base_url, **kw), backoff_s=0.01, max_backoff_s=0.05)


@pytest.mark.parametrize(
    "fault,counter",
    [
        ("429", "rate_limited"),
        ("500", "server_errors"),
        ("503", "server_errors"),
        ("drop", "connection_errors"),
        ("malformed", "bad_responses"),
        ("empty", "bad_responses"),
        ("truncated", "connection_errors"),
    ],
)
def test_transient_fault_is_retried(fault, counter):
    with FaultServer([fault, fault]) as srv:
        c = _client(srv)
        out = asyncio.run(_one(c))
    assert out.outputs[0].text == " 7" and out.outputs[0].token_ids == [7]
    assert c.counts[counter] == 2 and c.counts["retries"] == 2 and c.counts["failed"] == 0


def test_timeout_is_retried():
    with FaultServer(["sleep:1.5"]) as srv:
        c = _client(srv, timeout_s=0.3)
        out = asyncio.run(_one(c))
    assert out.outputs[0].text == " 7"
    assert c.counts["timeouts"] == 1 and c.counts["retries"] == 1


def test_retry_after_is_honoured():
    with FaultServer(["429:1"]) as srv:
        c = _client(srv)
        t0 = time.monotonic()
        asyncio.run(_one(c))
        waited = time.monotonic() - t0
    assert waited >= 1.0, f"retried after {waited:.2f}s, Retry-After said 1s"
    assert c.counts["rate_limited"] == 1


def test_without_retry_after_backoff_is_short():
    with FaultServer(["429"]) as srv:
        c = _client(srv)
        t0 = time.monotonic()
        asyncio.run(_one(c))
    assert time.monotonic() - t0 < 0.8


def test_persistent_failure_raises_and_never_leaks_the_key(monkeypatch):
    monkeypatch.setenv("FAULT_KEY", KEY)
    with FaultServer(["500"] * 10) as srv:
        c = _client(srv, max_retries=2, api_key_env="FAULT_KEY")
        with pytest.raises(ServedRequestError) as e:
            asyncio.run(_one(c))
        sent = srv.headers_seen[-1].get("authorization")
    assert sent == f"Bearer {KEY}"  # the key goes in the header, and nowhere else
    assert "3 tries" in str(e.value) and "HTTP 500" in str(e.value)
    assert KEY not in str(e.value) and KEY not in repr(c.telemetry())
    assert c.counts["requests"] == 3 and c.counts["failed"] == 1


def test_rate_limits_lower_the_in_flight_limit():
    with FaultServer(["429"] * 6) as srv:
        c = _client(srv, max_concurrency=8)

        async def many():
            return await asyncio.gather(*(_one(c) for _ in range(8)))

        outs = asyncio.run(many())
    tel = c.telemetry()
    assert len(outs) == 8
    assert tel["concurrency_limit_min"] < 8, tel
    assert tel["concurrency_changes"] and tel["rate_limited"] == 6


def test_prompt_logprobs_parsed():
    with FaultServer() as srv:
        out = asyncio.run(_one(_client(srv), ids=(5, 6, 7), lp=True))
    assert out.prompt_logprobs[0] is None and out.prompt_logprobs[2][7].logprob == -0.5


def test_request_body_carries_every_sampling_setting():
    body = request_body("m", [1, 2], _params(2, seed=9, stop=["</think>"], skip_special_tokens=False))
    assert body["prompt"] == [1, 2] and body["n"] == 2 and body["seed"] == 9 and body["stop"] == ["</think>"]
    assert body["return_token_ids"] is True and body["skip_special_tokens"] is False


# ---------------------------------------------------------------- preflight probes
def test_probe_unreachable_url_is_one_line():
    from pipeline.engine.served_probe import list_models

    with pytest.raises(ConfigError, match="no OpenAI-compatible server answers there") as e:
        list_models(_cfg("http://127.0.0.1:9/v1"), timeout=2)
    assert "\n" not in str(e.value)


def test_probe_wrong_model_name():
    from pipeline.engine.served_probe import served_identity

    with FaultServer(model="served-a") as srv:
        with pytest.raises(ConfigError, match=r"does not serve it.*'served-a'"):
            served_identity(_cfg(srv.base_url, model="served-b"))
        ident = served_identity(_cfg(srv.base_url, model="served-a"))
    assert ident == {"served": "served-a", "root": "/weights/served-a", "owned_by": "fault", "max_model_len": 1024}
    assert srv.base_url not in repr(ident)  # the address is not part of the identity


def test_probe_missing_key_variable(monkeypatch):
    from pipeline.engine.served_probe import check_key

    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR is not set"):
        check_key(_cfg("http://127.0.0.1:9/v1", api_key_env="NO_SUCH_KEY_VAR"))


def test_probe_endpoint_without_prompt_logprobs():
    from pipeline.engine.served_probe import check_prompt_logprobs

    with FaultServer(["nolp"]) as srv, pytest.raises(ConfigError, match="returns no prompt log-probabilities"):
        check_prompt_logprobs(_cfg(srv.base_url))
    with FaultServer() as srv:
        check_prompt_logprobs(_cfg(srv.base_url))  # a server that has them passes


def test_api_key_itself_in_api_key_env_is_refused():
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        _cfg("http://x/v1", api_key_env=KEY).validate("a")


# ---------------------------------------------------------------- chat-only endpoints
def test_chat_endpoint_source_cot_from_reasoning_field_and_clear_errors():
    from pipeline.engine.openai_chat import ChatEngine, NotServable
    from pipeline.engine.vllm_engine import Sampling

    with FaultServer(["429"]) as srv:
        eng = ChatEngine(_cfg(srv.base_url, api="chat"))
        eng.client.backoff_s = 0.01
        out = asyncio.run(
            eng.generate(
                {
                    "prompt": "What is 3+4?",
                    "cot": None,
                    "sampling": Sampling(0.0, 1.0, -1),
                    "think_tokens": 64,
                    "answer_tokens": 8,
                }
            )
        )
        assert out["cot"] == "3 plus 4 is 7." and out["answer_text"] == "Answer: 7" and out["cot_tokens"] == 8
        assert srv.requests[-1]["messages"][-1] == {"role": "user", "content": "What is 3+4?"}
        with pytest.raises(NotServable, match="cannot answer after a given CoT"):
            asyncio.run(
                eng.generate(
                    {
                        "prompt": "q",
                        "cot": "foreign CoT",
                        "sampling": Sampling(0.0, 1.0, -1),
                        "think_tokens": 8,
                        "answer_tokens": 8,
                    }
                )
            )


def test_chat_endpoint_as_transfer_target_is_a_preflight_error(tiny_cfg):
    from pipeline.engine.openai_chat import check_roles

    run = tiny_cfg("models.a.engine=openai", "models.a.served.api=chat", "models.a.served.base_url=http://x/v1")
    with pytest.raises(ConfigError, match="models.a is a chat-only endpoint .* cannot be a transfer target"):
        check_roles(run)
    ok = tiny_cfg(
        "models.a.engine=openai",
        "models.a.served.api=chat",
        "models.a.served.base_url=http://x/v1",
        "transfer.targets=[tiny-thought,tiny-harmony]",
        "generate.methods=[default,sampled]",
    )
    check_roles(ok)  # a source only: fine
