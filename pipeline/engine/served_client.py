"""HTTP to one OpenAI-compatible endpoint: retries with backoff, ``Retry-After``, adaptive concurrency.

:class:`ServedClient` posts one JSON body (httpx) and hands the decoded response to a parser. A
request is retried (up to ``served.max_retries`` times, exponential backoff with jitter) on HTTP
408/409/429/5xx, a timeout, a dropped or refused connection, a body that is not JSON, or one the
parser rejects (:class:`~pipeline.engine.openai_engine.BadResponse`: no choices, a truncated body);
a 429 or 503 waits at least what its ``Retry-After`` header says. Other 4xx answers (a bad request
will stay bad) fail at once. When every try failed it raises :class:`ServedRequestError`, which the
stage runner records as a failed item, exactly like an engine failure: the run fails at the end and
a rerun redoes only that item; nothing is ever cached from a failed request.

Adaptive concurrency (:class:`AdaptiveLimit`): at most ``served.max_concurrency`` requests are in
flight; each 429 halves the limit (never below 1), and every ``limit`` successes raise it by one
again, so a rate-limited endpoint is fed as fast as it accepts. The limit's history is in
:meth:`ServedClient.telemetry` (the engine's stats, so ``telemetry.json``). The API key is read
from the environment per client and sent in a header only; no message here ever contains it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Any

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def quiet_httpx() -> None:
    """httpx logs every request at INFO: keep it off stderr, where a user error must be one line."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)


class ServedRequestError(RuntimeError):
    """A request that failed on every try (the message names the endpoint, never the key)."""


class AdaptiveLimit:
    """A concurrency bound that halves on rate limiting and creeps back up on success."""

    def __init__(self, maximum: int):
        self.maximum = max(1, int(maximum))
        self.limit = self.maximum
        self.in_flight = 0
        self.min_seen = self.maximum
        self.max_seen_in_flight = 0
        self._ok = 0
        self._cond: asyncio.Condition | None = None
        self.history: list[tuple[float, int]] = []  # (time, new limit) at every change

    def _c(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> None:
        async with self._c():
            await self._c().wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
            self.max_seen_in_flight = max(self.max_seen_in_flight, self.in_flight)

    async def release(self, rate_limited: bool) -> None:
        async with self._c():
            self.in_flight -= 1
            if rate_limited:
                self._set(max(1, self.limit // 2))
                self._ok = 0
            else:
                self._ok += 1
                if self._ok >= self.limit and self.limit < self.maximum:
                    self._set(self.limit + 1)
                    self._ok = 0
            self._c().notify_all()

    def _set(self, v: int) -> None:
        if v != self.limit:
            self.limit = v
            self.min_seen = min(self.min_seen, v)
            self.history.append((time.time(), v))


def retry_after(headers: Any) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), None when absent."""
    v = headers.get("retry-after") if headers is not None else None
    if not v:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(v).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class ServedClient:
    """Posts completions to one endpoint (module docstring)."""

    def __init__(self, base_url: str, model_cfg, backoff_s: float = 0.5, max_backoff_s: float = 30.0):
        from pipeline.engine.served_probe import headers

        sv = model_cfg.served
        self.url = base_url.rstrip("/") + "/completions"
        self.base_url = base_url
        self.name = model_cfg.name
        self.timeout = float(sv.timeout_s)
        self.max_retries = int(sv.max_retries)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._headers = headers(model_cfg)
        self._secret = self._headers.get("Authorization", "")[len("Bearer ") :]
        self.limit = AdaptiveLimit(sv.max_concurrency)
        self._clients: dict[int, Any] = {}  # one httpx client per event loop (benches use asyncio.run)
        self.counts = {
            "requests": 0,
            "retries": 0,
            "rate_limited": 0,
            "server_errors": 0,
            "timeouts": 0,
            "connection_errors": 0,
            "bad_responses": 0,
            "failed": 0,
        }

    @property
    def max_seen_in_flight(self) -> int:
        return self.limit.max_seen_in_flight

    def _client(self):
        import httpx

        quiet_httpx()

        loop = id(asyncio.get_running_loop())
        c = self._clients.get(loop)
        if c is None:
            c = httpx.AsyncClient(
                timeout=self.timeout,
                headers=self._headers,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
            )
            self._clients = {loop: c}  # a previous loop's client is closed with that loop
        return c

    def telemetry(self) -> dict:
        lim = self.limit
        return {
            **self.counts,
            "base_url": self.base_url,
            "max_concurrency": lim.maximum,
            "concurrency_limit": lim.limit,
            "concurrency_limit_min": lim.min_seen,
            "concurrency_changes": [[t, v] for t, v in lim.history[-200:]],
        }

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _delay(self, attempt: int, floor: float | None) -> float:
        d = min(self.max_backoff_s, self.backoff_s * (2**attempt)) * (0.5 + random.random() / 2)
        return max(d, floor or 0.0)

    async def complete(self, body: dict, parse: Callable[[Any], Any]) -> Any:
        """POST ``body``, retrying transient failures; ``parse(json)`` of the first good answer."""
        import httpx

        quiet_httpx()

        from pipeline.engine.openai_engine import BadResponse

        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.counts["retries"] += 1
            floor: float | None = None
            limited = False
            await self.limit.acquire()
            try:
                self.counts["requests"] += 1
                r = await self._client().post(self.url, json=body)
                if r.status_code == 200:
                    try:
                        return parse(json.loads(r.content))
                    except (ValueError, BadResponse) as e:  # malformed or truncated JSON, or unusable
                        self.counts["bad_responses"] += 1
                        last = f"unusable response ({type(e).__name__}: {str(e)[:120]})"
                else:
                    last = self._scrub(f"HTTP {r.status_code}: {r.text[:200]!r}")  # a server may echo the key
                    limited = r.status_code == 429
                    if r.status_code not in RETRY_STATUS:
                        self.counts["failed"] += 1
                        raise ServedRequestError(f"model {self.name!r} at {self.base_url}: {last} (not retried)")
                    self.counts["rate_limited" if limited else "server_errors"] += 1
                    floor = retry_after(r.headers)
            except httpx.TimeoutException as e:
                self.counts["timeouts"] += 1
                last = f"timeout after {self.timeout:g}s ({type(e).__name__})"
            except httpx.TransportError as e:  # refused, dropped, reset, truncated chunked body
                self.counts["connection_errors"] += 1
                last = f"connection error ({type(e).__name__}: {str(e)[:120]})"
            finally:
                await self.limit.release(limited)
            if attempt < self.max_retries:
                await asyncio.sleep(self._delay(attempt, floor))
        self.counts["failed"] += 1
        raise ServedRequestError(
            f"model {self.name!r} at {self.base_url}: request failed after {self.max_retries + 1} tries; last: {last}"
        )
