"""A small OpenAI-compatible HTTP server that misbehaves on cue: the test double of a served model.

Used by the served-engine fault tests and by ``crosscot faults`` (cases with a ``server``), never by a run.

It binds 127.0.0.1 on a free port (port 0) in a background thread.  ``/v1/models`` lists one model;
``/v1/completions`` plays the next action of a script (then ``ok`` once the script is used up):

* ``ok`` — a valid completion of ``n`` choices (text ``" 7"``, token ids ``[7]``), with prompt
  log-probabilities when asked;
* ``429`` / ``429:S`` — rate limited, without / with ``Retry-After: S``; ``500`` / ``503`` — server errors;
* ``sleep:S`` — answer ``ok`` after S seconds (a client timeout shorter than S sees a timeout);
* ``drop`` — close the connection without a response; ``malformed`` — 200 with a body that is not JSON;
* ``empty`` — 200 with an empty choice list; ``truncated`` — a Content-Length longer than the body sent;
* ``nolp`` — a valid completion without prompt log-probabilities.

``/v1/chat/completions`` answers ``ok`` with a message whose ``reasoning_content`` is a CoT.

Every request's JSON body is kept in ``requests`` (the tests check what was sent).
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any


class FaultServer:
    def __init__(self, script: list[str] | None = None, model: str = "m", models_status: int = 200):
        self.script = list(script or [])
        self.model = model
        self.models_status = models_status
        self.requests: list[dict] = []
        self.headers_seen: list[dict] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FaultServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
        # Handlers of kept-alive connections end before the loop does (no "loop is closed" on close).
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                hdrs = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(hdrs.get("content-length", 0) or 0))
                self.headers_seen.append(hdrs)
                if not await self._respond(method, path, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _send(writer, status: int, body: bytes, extra: str = "", length: int | None = None) -> None:
        reason = {
            200: "OK",
            429: "Too Many Requests",
            500: "Internal Server Error",
            503: "Service Unavailable",
            401: "Unauthorized",
            404: "Not Found",
        }.get(status, "X")
        n = len(body) if length is None else length
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n"
            f"{extra}\r\n".encode()
            + body
        )

    async def _respond(self, method: str, path: str, body: bytes, writer) -> bool:
        if path.endswith("/models"):
            data: dict[str, Any] = {
                "object": "list",
                "data": [
                    {
                        "id": self.model,
                        "object": "model",
                        "owned_by": "fault",
                        "root": "/weights/" + self.model,
                        "max_model_len": 1024,
                    }
                ],
            }
            self._send(writer, self.models_status, json.dumps(data).encode())
            await writer.drain()
            return True
        req = json.loads(body or b"{}")
        self.requests.append(req)
        action = self.script.pop(0) if self.script else "ok"
        kind, _, arg = action.partition(":")
        if kind == "sleep":
            await asyncio.sleep(float(arg))
            kind = "ok"
        if kind in ("ok", "nolp") and path.endswith("/chat/completions"):
            msg = {"role": "assistant", "content": "Answer: 7", "reasoning_content": "3 plus 4 is 7."}
            data = {
                "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 9,
                    "completion_tokens": 12,
                    "completion_tokens_details": {"reasoning_tokens": 8},
                },
            }
            self._send(writer, 200, json.dumps(data).encode())
        elif kind in ("ok", "nolp"):
            self._send(writer, 200, json.dumps(self._completion(req, with_lp=kind == "ok")).encode())
        elif kind in ("429", "500", "503"):
            extra = f"Retry-After: {arg}\r\n" if arg else ""
            self._send(writer, int(kind), b'{"error": "injected"}', extra)
        elif kind == "drop":
            return False
        elif kind == "malformed":
            self._send(writer, 200, b'{"choices": [{"text": "7", ')
        elif kind == "empty":
            self._send(writer, 200, json.dumps({"choices": []}).encode())
        elif kind == "truncated":
            full = json.dumps(self._completion(req, True)).encode()
            self._send(writer, 200, full[: len(full) // 2], length=len(full))
            await writer.drain()
            return False
        await writer.drain()
        return True

    @staticmethod
    def _completion(req: dict, with_lp: bool) -> dict:
        prompt = req.get("prompt") or []
        ids = prompt if isinstance(prompt, list) else [1] * max(1, len(str(prompt).split()))
        choice: dict = {"index": 0, "text": " 7", "token_ids": [7], "finish_reason": "stop", "stop_reason": None}
        if req.get("prompt_logprobs") is not None and with_lp:
            choice["prompt_logprobs"] = [None] + [{str(t): {"logprob": -0.5}} for t in ids[1:]]
        choices = [dict(choice, index=i) for i in range(int(req.get("n", 1)))]
        return {
            "id": "cmpl-x",
            "object": "text_completion",
            "model": req.get("model"),
            "choices": choices,
            "usage": {"prompt_tokens": len(ids), "completion_tokens": 1},
        }
