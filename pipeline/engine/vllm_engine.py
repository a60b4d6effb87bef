"""One vLLM engine for one model, continuously fed, and the per-item operations every stage sends it.

:class:`ModelEngine` owns a vLLM ``LLMEngine`` driven by a
:class:`pipeline.engine.stream.StepLoop` (requests join the running batch
between two engine steps and return as each finishes).  Its operations take
ONE item and are coroutines, so any number of items can be in flight and a
multi-phase item moves on the moment its own previous phase is done:

* ``think`` — open the model's thinking and let it write a CoT until it closes
  it or hits the budget;
* ``answer`` — place a given CoT (own, transferred, empty) in the model's own
  thinking format and let it answer;
* ``generate`` — think, then answer after that CoT (the reference study's
  two-phase generation): the answer request goes out as soon as *this* CoT
  closes, never waiting for other CoTs;
* ``complete`` — raw continuations of a rendered prompt (LLM answer filter);
* ``propose`` / ``score_texts`` — one ensemble step for one problem
  (candidates; their log-probabilities, reusing the prefix cache).

``batch(op, items)`` runs many items concurrently (for callers that want a
list back).  The same class runs inside a Ray actor (:mod:`pipeline.engine.ray_pool`)
or in-process; :class:`pipeline.engine.fake.FakeEngine` mirrors it for fast
unit tests of stage logic.

Determinism: every sampled request carries its own seed
(:func:`request_seed` of its identity), so a row never depends on what it
was batched with, on arrival order or on in-flight limits.  On the CPU build
per-request seeds crash once a prefill is chunked ("CPU Generator does not use
offset"), so CPU engines run with chunked prefill off and a token budget per
step of at least ``max_model_len`` (every prompt prefills in one step); checked
byte-identical across batch compositions in ``tests/integration``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any, Optional

from pipeline.engine.phases import (
    ANSWER_PRIORITY,
    PHASE_COUNTERS,
    Thought,
    answer_ids,
    batched_tokens_of,
    cacheable_tokens,
    computed_before,
)


def request_seed(base: int, *parts: Any) -> int:
    """Deterministic per-request seed: independent of batching and scheduling."""
    h = hashlib.sha256(repr((base,) + parts).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


@dataclass
class Sampling:
    """Resolved decoding settings for one request (from a model's SamplingConfig)."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: Optional[int] = None

    @classmethod
    def from_config(cls, cfg, seed: Optional[int] = None) -> "Sampling":
        return cls(cfg.temperature, cfg.top_p, cfg.top_k, cfg.min_p, cfg.repetition_penalty, seed)


def engine_env(model_cfg) -> dict[str, str]:
    """Environment an engine process needs (set before vllm is imported)."""
    return {
        # In-process engine core: no extra process per actor, no spawn pitfalls in Ray.
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": str(max(1, int(round(model_cfg.kv_cache_gib)))),
        "TOKENIZERS_PARALLELISM": "false",
        # CPU engines: vLLM's default core binding makes every other thread pool (the
        # sampler's, a second engine's) contend with spinning OpenMP threads; measured
        # 25x slower sampled decoding on 2 cores. Ignored on GPU nodes.
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
        "VLLM_CONFIGURE_LOGGING": "1",
    }


def engine_args(model_cfg, path: str, seed: int, cpu: bool) -> dict:
    """Keyword arguments of ``vllm.EngineArgs`` for one model (same code path on CPU and CUDA)."""
    kw: dict[str, Any] = dict(
        model=path,
        tokenizer=model_cfg.tokenizer or path,
        dtype=model_cfg.dtype,
        max_model_len=model_cfg.max_model_len,
        tensor_parallel_size=model_cfg.tensor_parallel_size,
        gpu_memory_utilization=model_cfg.gpu_memory_utilization,
        enforce_eager=model_cfg.enforce_eager,
        enable_prefix_caching=model_cfg.enable_prefix_caching,
        max_num_seqs=model_cfg.max_num_seqs,
        trust_remote_code=model_cfg.trust_remote_code,
        seed=seed,
    )
    if model_cfg.block_size:
        kw["block_size"] = model_cfg.block_size
    if model_cfg.tensor_parallel_size > 1:
        # TP > 1 inside a Ray actor: vLLM's Ray executor places its workers in the
        # placement group the actor was scheduled into (captured child tasks).
        kw["distributed_executor_backend"] = "ray"
    # Answers run before new CoTs (priority scheduling), so a finished CoT's blocks are still cached.
    kw["scheduling_policy"] = "priority"
    from pipeline.engine.settings import batched_tokens

    kw["max_num_batched_tokens"] = batched_tokens(model_cfg, cpu)
    if cpu:
        # Per-request seeds need unchunked prefills on the CPU build (module docstring).
        kw["enable_chunked_prefill"] = False
    return kw


class ModelEngine:
    """A continuously fed vLLM engine for one model (see module docstring)."""

    def __init__(self, model_cfg, seed: int = 0):
        for k, v in engine_env(model_cfg).items():
            os.environ.setdefault(k, v)
        from pipeline.engine.formats import get_format
        from pipeline.provision.models import ensure_model

        self.cfg = model_cfg
        self.fmt = get_format(model_cfg.thinking_format)
        path = ensure_model(model_cfg)
        t0 = time.time()
        from vllm.engine.arg_utils import EngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.llm_engine import LLMEngine

        from pipeline.engine.settings import runtime_env
        from pipeline.engine.stream import StepLoop

        self._cpu = current_platform.is_cpu()
        # Engine core and determinism switches are read by vLLM when the engine is built.
        self.runtime = runtime_env(model_cfg, self._cpu)
        os.environ.update(self.runtime.env)
        self.llm = LLMEngine.from_engine_args(EngineArgs(**engine_args(model_cfg, path, seed, self._cpu)))
        self.block_size = int(self.llm.vllm_config.cache_config.block_size)
        self.load_seconds = time.time() - t0
        self.loop = StepLoop(self.llm, model_cfg.name)
        # Loading counts as engine time; telemetry also reports the share outside engines without it.
        self.load_intervals = [(t0, time.time())]
        self.tok = self.llm.get_tokenizer()
        if model_cfg.chat_template:
            self.tok.chat_template = model_cfg.chat_template
        self.stats = {"prefill_tokens": 0, "cached_tokens": 0, "generated_tokens": 0, "requests": 0,
                      "load_seconds": self.load_seconds, **{k: 0 for k in PHASE_COUNTERS}}
        self._specials = [t for t in getattr(self.tok, "all_special_tokens", []) if t and t != self.fmt.think_stop]
        # The close tag as one token id (a special token): the thinking phase then stops on that id
        # and is not detokenized step by step (its text is decoded once at the end).
        tag_ids = self.encode(self.fmt.think_stop) if self.fmt.think_stop else []
        self._close_id: Optional[int] = tag_ids[0] if len(tag_ids) == 1 else None

    # ------------------------------------------------------------------ prompts
    # [issue10 hook] prompts come from pipeline.engine.messages (shared with `crosscot prompts`):
    # the problem's system message, the model's protocol (system role, chat-template kwargs such
    # as gpt-oss reasoning_effort, CoT placement strings) and the phase ("transfer" for given CoTs).
    def generation_prompt(self, user_prompt: str, system: Optional[str] = None, phase: str = "own") -> str:
        from pipeline.engine.messages import chat_messages, render

        return render(self.tok, chat_messages(user_prompt, system, self.cfg.system_prompt), self.cfg.protocol, phase)

    def thinking_prompt(self, user_prompt: str, system: Optional[str] = None) -> str:
        return self.fmt.open_thinking(self.generation_prompt(user_prompt, system))

    def answer_prompt(self, user_prompt: str, cot: str, system: Optional[str] = None, phase: str = "own",
                      answer_prefix: Optional[str] = None) -> str:
        from pipeline.engine.messages import place_cot

        return place_cot(self.fmt, self.generation_prompt(user_prompt, system, phase), cot, self.cfg.protocol,
                         answer_prefix)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def info(self) -> dict:
        import vllm

        return {"name": self.cfg.name, "vllm": vllm.__version__, "load_seconds": self.load_seconds,
                "vocab_size": len(self.tok), "max_model_len": self.cfg.max_model_len,
                "determinism": self.runtime.determinism, "engine_core": self.runtime.core,
                "block_size": self.block_size, "max_num_batched_tokens": batched_tokens_of(self.llm)}

    # ----------------------------------------------------------------- running
    def params(self, s: Sampling, max_tokens: int, stop=None, **kw):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            temperature=s.temperature, top_p=s.top_p, top_k=s.top_k if s.top_k > 0 else 0,
            min_p=s.min_p, repetition_penalty=s.repetition_penalty,
            seed=s.seed if s.temperature > 0 else None,
            max_tokens=max_tokens, stop=stop, output_kind=RequestOutputKind.FINAL_ONLY, **kw,
        )

    async def run(self, ids: list[int], params, priority: int = 0) -> Any:
        """One request through the step loop (prompt by token ids); counts its tokens."""
        from vllm.inputs import TokensPrompt

        o = await self.loop.run(TokensPrompt(prompt_token_ids=ids), params, priority)
        self._count(o)
        return o

    def run_many(self, ids: list[list[int]], params: list) -> list:
        """Blocking: a whole batch at once (the synchronous baseline of ``crosscot bench``)."""
        from vllm.inputs import TokensPrompt

        outs = self.loop.run_many([TokensPrompt(prompt_token_ids=p) for p in ids], params)
        for o in outs:
            self._count(o)
        return outs

    def _count(self, o) -> None:
        cached = o.num_cached_tokens or 0
        self.stats["requests"] += 1
        self.stats["cached_tokens"] += cached
        self.stats["prefill_tokens"] += len(o.prompt_token_ids) - cached
        self.stats["generated_tokens"] += sum(len(c.token_ids) for c in o.outputs)

    def _fit(self, ids: list[int], max_tokens: int, what: str) -> Optional[str]:
        """Error text when a prompt cannot fit the context window, else None."""
        if len(ids) + max_tokens > self.cfg.max_model_len:
            return (
                f"{what}: prompt of {len(ids)} tokens + {max_tokens} new tokens exceeds "
                f"max_model_len={self.cfg.max_model_len} of model {self.cfg.name!r}; raise "
                f"models.<key>.max_model_len or lower the token budget"
            )
        return None

    async def batch(self, op: str, items: list, *args) -> list:
        """Run ``op`` on every item concurrently; results in item order."""
        fn = getattr(self, op)
        return list(await asyncio.gather(*(fn(it, *args) for it in items)))

    def run_batch(self, op: str, items: list, *args) -> list:
        """Blocking :meth:`batch` for in-process callers without an event loop (benches, tests)."""
        return asyncio.run(self.batch(op, items, *args))

    def get_stats(self) -> dict:
        from pipeline.report.telemetry import union_seconds

        return {**self.stats, "steps": self.loop.steps, "max_in_flight": self.loop.max_seen_in_flight,
                "intervals": list(self.loop.intervals), "load_intervals": list(self.load_intervals),
                "engine_seconds": union_seconds(self.loop.intervals)}

    # ------------------------------------------------------------------ ops
    async def think(self, r: dict) -> dict:
        """Write a CoT. Request: {prompt, system?, sampling: Sampling, max_tokens, reserve?}.

        The thinking budget is ``max_tokens`` (the study's protocol: plus the prompt's tokens, capped so
        that ``reserve`` answer tokens still fit; :func:`pipeline.engine.messages.thought_budget`).
        """
        return (await self._think(r)).out

    async def _think(self, r: dict) -> Thought:
        from pipeline.engine.messages import thought_budget

        p = self.encode(self.thinking_prompt(r["prompt"], r.get("system")))  # [issue10 hook] system
        budget = thought_budget(r["max_tokens"], len(p), self.cfg.max_model_len,  # [issue10 hook] budget
                                self.cfg.protocol.thought_budget_plus_prompt, r.get("reserve", 0))
        err = self._fit(p, budget, "think")
        if err:
            return Thought({"cot": "", "cot_tokens": 0, "finish_reason": "error", "forced_close": False,
                            "error": err}, p, [], False)
        if self._close_id is not None:
            params = self.params(r["sampling"], budget, stop_token_ids=[self._close_id], detokenize=False,
                                 skip_special_tokens=False)
        else:
            params = self.params(r["sampling"], budget, stop=[self.fmt.think_stop], skip_special_tokens=False)
        o = await self.run(p, params)
        self._phase("think", o)
        c = o.outputs[0]
        gen = list(c.token_ids)
        if self._close_id is not None:
            closed = c.finish_reason == "stop" and c.stop_reason == self._close_id
            # A stop (close tag or end of turn) is the last token id; the text never shows it.
            text = self.tok.decode(gen[:-1] if c.finish_reason == "stop" and gen else gen,
                                   skip_special_tokens=False)
        else:
            closed = c.finish_reason == "stop" and c.stop_reason == self.fmt.think_stop
            text = c.text
        out = {
            "cot": self.fmt.clean(text),
            "cot_tokens": len(gen),
            # "stop": the model closed its thinking (or ended its turn); "length": we close it.
            "finish_reason": "stop" if c.finish_reason == "stop" else "length",
            "forced_close": not closed,
            "error": None,
            "think_prompt_tokens": len(p),
            "think_cached_tokens": int(o.num_cached_tokens or 0),
        }
        return Thought(out, p, gen, closed, text, c.finish_reason == "stop")

    async def answer(self, r: dict) -> dict:
        """Answer after a placed CoT. Request: {prompt, system?, phase?, answer_prefix?, cot, sampling, max_tokens}."""
        p = self.encode(self.answer_prompt(r["prompt"], r.get("cot") or "", r.get("system"),  # [issue10 hook]
                                           r.get("phase", "own"), r.get("answer_prefix")))
        return await self._answer_ids(p, r, [])

    async def _answer_ids(self, p: list[int], r: dict, before: list[int]) -> dict:
        """The answer request on prompt ids ``p``; ``before``: ids already computed in this engine
        (the thinking request's prompt and CoT) for the cache-hit telemetry."""
        err = self._fit(p, r["max_tokens"], "answer")
        if err:
            return {"answer_text": None, "prompt_tokens": len(p), "answer_tokens": 0, "finish_reason": "error",
                    "error": err}
        # Higher priority than new CoTs: the answer runs while the CoT's blocks are still cached.
        o = await self.run(p, self.params(r["sampling"], r["max_tokens"], stop=list(self.fmt.answer_stop) or None),
                           priority=ANSWER_PRIORITY)
        self._phase("answer", o, cacheable_tokens(before, self.block_size) if before else None)
        c = o.outputs[0]
        return {"answer_text": c.text, "prompt_tokens": len(o.prompt_token_ids), "answer_tokens": len(c.token_ids),
                "finish_reason": c.finish_reason, "error": None, "cached_tokens": int(o.num_cached_tokens or 0)}

    def _answer_after(self, t: Thought, r: dict) -> tuple[list[int], list[int]]:
        """Prompt ids of the answer after a CoT this engine just wrote, and the ids it computed before:
        by token ids (:func:`pipeline.engine.phases.answer_ids`), else the text path (re-rendered,
        re-tokenized: where the protocol places a CoT differently, or ``answer_by="text"``, benches)."""
        text_prompt = self.answer_prompt(r["prompt"], t.out["cot"], r.get("system"), "own", r.get("answer_prefix"))
        ids = None
        if r.get("answer_by", "ids") == "ids":
            ids = answer_ids(t, text_prompt, self.thinking_prompt(r["prompt"], r.get("system")) + t.out["cot"],
                             self.fmt.think_stop, self.encode,
                             lambda x: self.tok.decode(x, skip_special_tokens=False), self._close_id)
        if ids is None:
            self.stats["answer_text_path"] += 1
            ids = self.encode(text_prompt)
        return ids, computed_before(t)

    async def generate(self, r: dict) -> dict:
        """Two-phase generation: think (unless the CoT is given, e.g. "" for Empty CoT), then answer.

        Request: {prompt, system?, answer_prefix?, cot (None = think first), sampling, think_tokens,
        answer_tokens, answer_by? ("ids", default, or "text")}.
        When the model does not close its thinking within ``think_tokens`` we
        close it ourselves and ask for the answer, as the reference study does.
        The answer request after a CoT goes in by token ids (:meth:`_answer_after`).
        """
        areq = {"prompt": r["prompt"], "cot": None, "system": r.get("system"),
                "answer_prefix": r.get("answer_prefix"),  # [issue10 hook]
                "sampling": r["sampling"], "max_tokens": r["answer_tokens"], "answer_by": r.get("answer_by", "ids")}
        if r.get("cot") is None:
            t = await self._think({"prompt": r["prompt"], "system": r.get("system"),  # [issue10 hook]
                                   "sampling": r["sampling"], "max_tokens": r["think_tokens"],
                                   "reserve": r["answer_tokens"]})
            out = t.out
            out["cot_finish_reason"] = out.pop("finish_reason")
            if out.get("error"):
                out["answer_text"] = None
                return out
            out.update(await self._answer_thought(t, areq))
            return out
        out = {"cot": r["cot"], "cot_tokens": 0, "cot_finish_reason": "given", "forced_close": False, "error": None}
        out.update(await self.answer({**areq, "cot": r["cot"]}))
        return out

    async def _answer_thought(self, t: Thought, r: dict) -> dict:
        """The answer request after a CoT this engine just wrote (by token ids: :meth:`_answer_after`)."""
        ids, before = self._answer_after(t, r)
        return await self._answer_ids(ids, r, before)

    def _phase(self, phase: str, o, cacheable: Optional[int] = None) -> None:
        """Per-phase prompt and cache-hit counters (telemetry.json's engines)."""
        self.stats[f"{phase}_requests"] += 1
        self.stats[f"{phase}_prompt_tokens"] += len(o.prompt_token_ids)
        self.stats[f"{phase}_cached_tokens"] += int(o.num_cached_tokens or 0)
        if cacheable is not None:
            self.stats[f"{phase}_cacheable_tokens"] += cacheable
            self.stats[f"{phase}_cached_of_cacheable"] += min(cacheable, int(o.num_cached_tokens or 0))

    def _complete_args(self, r: dict) -> tuple[list[int], object]:
        ids = r["ids"] if r.get("ids") is not None else self.encode(r["text"])
        s = r.get("sampling") or Sampling(0.0, 1.0, -1)
        return ids, self.params(s, r["max_tokens"], stop=r.get("stop"), n=r.get("n", 1),
                                ignore_eos=bool(r.get("ignore_eos")), skip_special_tokens=False)

    @staticmethod
    def _completion(o) -> dict:
        return {"texts": [c.text for c in o.outputs], "token_ids": [list(c.token_ids) for c in o.outputs],
                "finish_reasons": [c.finish_reason for c in o.outputs]}

    async def complete(self, r: dict) -> dict:
        """Raw continuations. Request: {text | ids, sampling?, max_tokens, n?, stop?, ignore_eos?}."""
        return self._completion(await self.run(*self._complete_args(r)))

    def complete_blocking(self, reqs: list[dict]) -> list[dict]:
        """A whole batch at once, returning when its longest request is done.

        Not used by the pipeline: it is the synchronous-shard execution the
        streaming design replaced, kept as the baseline (and, given every
        request, the engine's ceiling) of ``crosscot bench replay``.
        """
        args = [self._complete_args(r) for r in reqs]
        return [self._completion(o) for o in self.run_many([a[0] for a in args], [a[1] for a in args])]

    def chat_template_marker(self) -> str | None:
        """This model's chat-rendered generation prompt around a placeholder (LLM answer filter), or None."""
        from pipeline.text.llm_filter import MARK

        try:
            t = self.generation_prompt(MARK)
        except Exception:  # noqa: BLE001 - engines without a chat template: plain text
            return None
        return t if t.count(MARK) == 1 else None

    # ------------------------------------------------------------- scoring
    @staticmethod
    def _lp_params(skip_cache: bool):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False,
                              flat_logprobs=True, skip_reading_prefix_cache=skip_cache,
                              output_kind=RequestOutputKind.FINAL_ONLY)

    async def score_ids(self, ctx: list[int], conts: list[list[int]], mode: str = "cached") -> list[dict]:
        """Log-probabilities of each continuation's own tokens after one context.

        ``mode="cached"``: the context is prefilled once (a warm request holding
        all but its last token) and every continuation is scored as
        context+continuation with ``prompt_logprobs`` while *reading* the prefix
        cache, so only the continuation tokens (plus the partial last block) are
        prefilled.  vLLM skips the cache for prompt-logprob requests by default
        because cached positions get no logprobs; we only read the
        continuation's own positions, and the first of those comes from the
        logits at the context's last position, which therefore must be
        computed: a request whose ``num_cached_tokens`` reaches ``len(ctx)`` is
        recomputed without the cache.  ``mode="naive"``: the default vLLM
        behaviour (whole sequence re-prefilled per continuation; the bench
        baseline).  ``mode="paper"``: also the mean NLL over prompt + CoT +
        candidate (``seq_mean_nll``), the reference study's choice.
        """
        nc = len(ctx)
        if mode == "cached" and nc > 1:
            await self.run(ctx[:-1], self.params(Sampling(0.0, 1.0, -1), 1))
        skip = mode != "cached"
        want_seq = mode == "paper"

        async def one(kids: list[int]) -> dict:
            ids = ctx + kids
            o = await self.run(ids, self._lp_params(skip))
            if not skip and (o.num_cached_tokens or 0) >= nc and kids:  # position nc-1 not computed
                o = await self.run(ids, self._lp_params(True))
            return self._read_lp(o, ids, nc, len(kids), want_seq)

        return list(await asyncio.gather(*(one(k) for k in conts)))

    @staticmethod
    def _read_lp(o, ids: list[int], nc: int, nk: int, want_seq: bool) -> dict:
        plp = o.prompt_logprobs
        lps = []
        for pos in range(1 if want_seq else nc, nc + nk):
            d = plp[pos]
            if d is None or ids[pos] not in d:
                raise RuntimeError(f"engine returned no logprob for prompt position {pos}")
            lps.append(float(d[ids[pos]].logprob))
        cand = lps[-nk:] if nk else []
        out = {"logprobs": cand, "n_tokens": nk, "mean_nll": (-sum(cand) / nk) if nk else float("inf")}
        if want_seq:
            out["seq_mean_nll"] = -sum(lps) / max(1, len(lps))
        return out

    async def score(self, r: dict, mode: str = "cached") -> list[dict]:
        """:meth:`score_ids` on texts. Request: {context, continuations: [text]}."""
        return await self.score_ids(self.encode(r["context"]), [self.encode(k) for k in r["continuations"]], mode)

    # ================================================================ ensemble
    # Each model sees the growing CoT in its OWN thinking format and tokenizer:
    # context = thinking_prompt(problem) + CoT so far.

    async def propose(self, r: dict) -> dict:
        """Candidate continuations of a growing CoT for one problem.

        Request: {prompt, system?, cot, n, max_tokens, sampling, budget?}.  ``budget``
        (set for the first generator only) is the ensemble's thought budget in
        this model's tokens: when the CoT already reaches it nothing is run
        (``exhausted``), else ``max_tokens`` is capped to what is left.  Returns
        {texts, closed, cot_tokens, exhausted, error}: raw texts (the close tag
        kept when the model wrote it; other special tokens removed), ``closed``
        true when the model wrote its close tag or ended its turn (EOS).
        """
        cot_tokens = len(self.encode(r["cot"])) if r["cot"] else 0
        base = {"texts": [], "closed": [], "cot_tokens": cot_tokens, "exhausted": False, "error": None}
        max_tokens = r["max_tokens"]
        if r.get("budget") is not None:
            max_tokens = min(max_tokens, r["budget"] - cot_tokens)
            if max_tokens <= 0:
                return {**base, "exhausted": True}
        p = self.encode(self.thinking_prompt(r["prompt"], r.get("system")) + r["cot"])  # [issue10 hook] system
        err = self._fit(p, max_tokens, "ensemble propose")
        if err:
            return {**base, "exhausted": True, "error": err}
        o = await self.run(p, self.params(r["sampling"], max_tokens, stop=[self.fmt.think_stop], n=r.get("n", 1),
                                          include_stop_str_in_output=True, skip_special_tokens=False))
        for c in o.outputs:
            text = c.text
            for s in self._specials:
                text = text.replace(s, "")
            base["texts"].append(text)
            base["closed"].append(c.finish_reason == "stop")
        return base

    async def score_texts(self, r: dict, mode: str = "cached") -> list[dict]:
        """Score one problem's candidate sentences after its CoT.

        Request: {prompt, system?, cot, candidates: [text], closes: [bool]}.  The context
        is this model's thinking prompt + CoT; a candidate that closes the
        thinking is scored with this model's own close tag appended.  Returns
        per candidate :meth:`score_ids`'s dict without the log-probs, or
        {mean_nll: inf, error} when context+candidate cannot fit.
        """
        close = self.fmt.close.rstrip()
        ctx = self.encode(self.thinking_prompt(r["prompt"], r.get("system")) + r["cot"])  # [issue10 hook] system
        cands = [self.encode(t + (close if c else "")) for t, c in zip(r["candidates"], r["closes"])]
        err = self._fit(ctx, max((len(c) for c in cands), default=0) + 1, "ensemble score")
        if err:
            return [{"mean_nll": float("inf"), "seq_mean_nll": float("inf"), "n_tokens": 0, "error": err}
                    for _ in cands]
        scored = await self.score_ids(ctx, cands, mode=mode) if cands else []
        return [{k: v for k, v in d.items() if k != "logprobs"} for d in scored]
