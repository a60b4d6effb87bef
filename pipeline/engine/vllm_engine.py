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
from typing import Any, Awaitable, Iterable, Optional, TypeVar

from pipeline.engine.phases import (
    ANSWER_PRIORITY,
    PHASE_COUNTERS,
    Thought,
    answer_ids,
    batched_tokens_of,
    cacheable_tokens,
    computed_before,
    two_phase,
)
from pipeline.engine.protocol import (
    GREEDY,
    AnswerBy,
    AnswerRequest,
    AnswerResult,
    CandidateScore,
    CompleteRequest,
    Completion,
    GenerateRequest,
    GenerateResult,
    Proposal,
    ProposeRequest,
    Sampling,
    ScoreMode,
    ScoreRequest,
    ThinkRequest,
    ThinkResult,
)

T = TypeVar("T")


def request_seed(base: int, *parts: Any) -> int:
    """Deterministic per-request seed: independent of batching and scheduling."""
    h = hashlib.sha256(repr((base,) + parts).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


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


def engine_args(model_cfg, path: str, seed: int, cpu: bool, dtype: Optional[str] = None) -> dict:
    """Keyword arguments of ``vllm.EngineArgs`` for one model (same code path on CPU and CUDA).

    ``dtype``: the resolved dtype (:func:`pipeline.engine.cpu_runtime.resolve_dtype`); default the config's.
    """
    kw: dict[str, Any] = dict(
        model=path,
        tokenizer=model_cfg.tokenizer or path,
        dtype=dtype or model_cfg.dtype,
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
    if model_cfg.revision:  # a pinned hub revision, for the weights and (unless given apart) the tokenizer
        kw["revision"] = model_cfg.revision
        if not model_cfg.tokenizer:
            kw["tokenizer_revision"] = model_cfg.revision
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

    def __init__(self, model_cfg, seed: int = 0, engine_overrides: Optional[dict] = None):
        """``engine_overrides``: extra ``vllm.EngineArgs`` (benches only, e.g. a fixed KV-cache size)."""
        for k, v in engine_env(model_cfg).items():
            os.environ.setdefault(k, v)
        from pipeline.engine import cpu_runtime

        cpu_runtime.apply_isa_emulation()  # before torch/vLLM pick their kernels
        # The same resolution as the artifact key's (pipeline.config.hashing.model_key).
        self.dtype = cpu_runtime.resolve_for_this_machine(model_cfg.dtype)
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
        self.core_runtime = runtime_env(model_cfg, self._cpu)
        os.environ.update(self.core_runtime.env)
        kw = {**engine_args(model_cfg, path, seed, self._cpu, self.dtype.dtype), **(engine_overrides or {})}
        self.llm = LLMEngine.from_engine_args(EngineArgs(**kw))
        self.block_size = int(self.llm.vllm_config.cache_config.block_size)
        self.load_seconds = time.time() - t0
        self.loop = StepLoop(self.llm, model_cfg.name)
        # Loading counts as engine time; telemetry also reports the share outside engines without it.
        self.load_intervals = [(t0, time.time())]
        self.tok = self.llm.get_tokenizer()
        if model_cfg.chat_template:
            self.tok.chat_template = model_cfg.chat_template
        self.runtime = {
            "dtype": self.dtype.dtype,
            "dtype_requested": self.dtype.requested,
            "dtype_reason": self.dtype.reason,
            "model_dtype": str(self.llm.model_config.dtype).replace("torch.", ""),
            **cpu_runtime.process_report(),
        }
        self.stats: dict[str, Any] = {
            "prefill_tokens": 0,
            "cached_tokens": 0,
            "generated_tokens": 0,
            "requests": 0,
            "load_seconds": self.load_seconds,
            "runtime": self.runtime,
            **{k: 0 for k in PHASE_COUNTERS},
        }
        self._specials = [t for t in getattr(self.tok, "all_special_tokens", []) if t and t != self.fmt.think_stop]
        # The close tag as one token id (a special token): the thinking phase then stops on that id,
        # not on a string match.  Its text still comes from vLLM's incremental detokenizer, which holds
        # back a trailing incomplete character (decoding the ids at the end would not): a served
        # engine returns the same text.
        tag_ids = self.encode(self.fmt.think_stop) if self.fmt.think_stop else []
        self._close_id: Optional[int] = tag_ids[0] if len(tag_ids) == 1 else None

    # ------------------------------------------------------------------ prompts
    # Prompts come from pipeline.engine.messages (shared with `crosscot prompts`):
    # the problem's system message, the model's protocol (system role, chat-template kwargs such
    # as gpt-oss reasoning_effort, CoT placement strings) and the phase ("transfer" for given CoTs).
    def generation_prompt(self, user_prompt: str, system: Optional[str] = None, phase: str = "own") -> str:
        from pipeline.engine.messages import chat_messages, render

        return render(self.tok, chat_messages(user_prompt, system, self.cfg.system_prompt), self.cfg.protocol, phase)

    def thinking_prompt(self, user_prompt: str, system: Optional[str] = None) -> str:
        return self.fmt.open_thinking(self.generation_prompt(user_prompt, system))

    def answer_prompt(
        self,
        user_prompt: str,
        cot: str,
        system: Optional[str] = None,
        phase: str = "own",
        answer_prefix: Optional[str] = None,
    ) -> str:
        from pipeline.engine.messages import place_cot

        return place_cot(
            self.fmt, self.generation_prompt(user_prompt, system, phase), cot, self.cfg.protocol, answer_prefix
        )

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def info(self) -> dict:
        import vllm

        return {
            "name": self.cfg.name,
            "vllm": vllm.__version__,
            "load_seconds": self.load_seconds,
            "vocab_size": len(self.tok),
            "max_model_len": self.cfg.max_model_len,
            "runtime": self.runtime,
            "determinism": self.core_runtime.determinism,
            "engine_core": self.core_runtime.core,
            "block_size": self.block_size,
            "max_num_batched_tokens": batched_tokens_of(self.llm),
            "kv_tokens": self.kv_tokens(),
        }

    def kv_tokens(self) -> Optional[int]:
        """Tokens the KV cache holds (blocks x block size; vLLM sets the blocks once the cache is sized)."""
        blocks = self.llm.vllm_config.cache_config.num_gpu_blocks
        return int(blocks) * self.block_size if blocks else None

    # ----------------------------------------------------------------- running
    def params(self, s: Sampling, max_tokens: int, stop=None, **kw):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k if s.top_k > 0 else 0,
            min_p=s.min_p,
            repetition_penalty=s.repetition_penalty,
            seed=s.seed if s.temperature > 0 else None,
            max_tokens=max_tokens,
            stop=stop,
            output_kind=RequestOutputKind.FINAL_ONLY,
            **kw,
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

    @staticmethod
    def run_batch(items: Iterable[Awaitable[T]]) -> list[T]:
        """Run these coroutines (one per item, e.g. ``[e.think(r) for r in reqs]``) concurrently to
        their end; results in item order.  Blocking, for in-process callers without an event loop
        (benches, tests)."""

        async def gather() -> list[T]:
            return list(await asyncio.gather(*items))

        return asyncio.run(gather())

    def get_stats(self) -> dict:
        from pipeline.report.telemetry import union_seconds

        return {
            **self.stats,
            "steps": self.loop.steps,
            "max_in_flight": self.loop.max_seen_in_flight,
            "intervals": list(self.loop.intervals),
            "load_intervals": list(self.load_intervals),
            "engine_seconds": union_seconds(self.loop.intervals),
        }

    # ------------------------------------------------------------------ ops
    async def think(self, r: ThinkRequest) -> ThinkResult:
        """Write a CoT within ``r.thought_budget`` tokens.

        The study's protocol adds the prompt's tokens to the budget, capped so that ``r.reserve``
        answer tokens still fit (:func:`pipeline.engine.messages.thought_budget`).
        """
        return (await self.thought(r)).result

    async def thought(self, r: ThinkRequest) -> Thought:
        """:meth:`think`, with the ids the answer after it builds on (:meth:`answer_after`)."""
        from pipeline.engine.messages import thought_budget

        p = self.encode(self.thinking_prompt(r.prompt, r.system))
        budget = thought_budget(
            r.thought_budget, len(p), self.cfg.max_model_len, self.cfg.protocol.thought_budget_plus_prompt, r.reserve
        )
        err = self._fit(p, budget, "think")
        if err:
            return Thought(
                ThinkResult(cot="", cot_tokens=0, finish_reason="error", forced_close=False, error=err), p, [], False
            )
        if self._close_id is not None:
            params = self.params(r.sampling, budget, stop_token_ids=[self._close_id], skip_special_tokens=False)
        else:
            params = self.params(r.sampling, budget, stop=[self.fmt.think_stop], skip_special_tokens=False)
        o = await self.run(p, params)
        self._phase("think", o)
        c = o.outputs[0]
        gen = list(c.token_ids)
        # A stop (close tag or end of turn) is the last token id; the text never shows it.
        text = c.text
        if self._close_id is not None:
            closed = c.finish_reason == "stop" and c.stop_reason == self._close_id
        else:
            closed = c.finish_reason == "stop" and c.stop_reason == self.fmt.think_stop
        res = ThinkResult(
            cot=self.fmt.clean(text),
            cot_tokens=len(gen),
            # "stop": the model closed its thinking (or ended its turn); "length": we close it.
            finish_reason="stop" if c.finish_reason == "stop" else "length",
            forced_close=not closed,
            think_prompt_tokens=len(p),
            think_cached_tokens=int(o.num_cached_tokens or 0),
        )
        return Thought(res, p, gen, closed, text, c.finish_reason == "stop")

    async def answer(self, r: AnswerRequest) -> AnswerResult:
        """Answer after the CoT placed in this model's thinking format."""
        p = self.encode(self.answer_prompt(r.prompt, r.cot or "", r.system, r.phase, r.answer_prefix))
        return await self._answer_ids(p, r, [])

    async def _answer_ids(self, p: list[int], r: AnswerRequest, before: list[int]) -> AnswerResult:
        """The answer request on prompt ids ``p``; ``before``: ids already computed in this engine
        (the thinking request's prompt and CoT) for the cache-hit telemetry."""
        err = self._fit(p, r.answer_budget, "answer")
        if err:
            return AnswerResult(
                answer_text=None, prompt_tokens=len(p), answer_tokens=0, finish_reason="error", error=err
            )
        # Higher priority than new CoTs: the answer runs while the CoT's blocks are still cached.
        o = await self.run(
            p,
            self.params(r.sampling, r.answer_budget, stop=list(self.fmt.answer_stop) or None),
            priority=ANSWER_PRIORITY,
        )
        self._phase("answer", o, cacheable_tokens(before, self.block_size) if before else None)
        c = o.outputs[0]
        return AnswerResult(
            answer_text=c.text,
            prompt_tokens=len(o.prompt_token_ids),
            answer_tokens=len(c.token_ids),
            finish_reason=c.finish_reason,
            cached_tokens=int(o.num_cached_tokens or 0),
        )

    def _answer_after(self, t: Thought, r: AnswerRequest, by: AnswerBy) -> tuple[list[int], list[int]]:
        """Prompt ids of the answer after a CoT this engine just wrote, and the ids it computed before:
        by token ids (:func:`pipeline.engine.phases.answer_ids`), else the text path (re-rendered,
        re-tokenized: where the protocol places a CoT differently, or ``by="text"``, benches)."""
        cot = t.result.cot
        text_prompt = self.answer_prompt(r.prompt, cot, r.system, "own", r.answer_prefix)
        ids = None
        if by == "ids":
            ids = answer_ids(
                t,
                text_prompt,
                self.thinking_prompt(r.prompt, r.system) + cot,
                self.fmt.think_stop,
                self.encode,
                lambda x: self.tok.decode(x, skip_special_tokens=False),
                self._close_id,
            )
        if ids is None:
            self.stats["answer_text_path"] += 1
            ids = self.encode(text_prompt)
        return ids, computed_before(t)

    async def answer_after(self, t: Thought, r: AnswerRequest, by: AnswerBy = "ids") -> AnswerResult:
        """The answer request after a CoT this engine just wrote (by token ids: :meth:`_answer_after`)."""
        ids, before = self._answer_after(t, r, by)
        return await self._answer_ids(ids, r, before)

    def _phase(self, phase: str, o, cacheable: Optional[int] = None) -> None:
        """Per-phase prompt and cache-hit counters (telemetry.json's engines)."""
        self.stats[f"{phase}_requests"] += 1
        self.stats[f"{phase}_prompt_tokens"] += len(o.prompt_token_ids)
        self.stats[f"{phase}_cached_tokens"] += int(o.num_cached_tokens or 0)
        if cacheable is not None:
            self.stats[f"{phase}_cacheable_tokens"] += cacheable
            self.stats[f"{phase}_cached_of_cacheable"] += min(cacheable, int(o.num_cached_tokens or 0))

    async def generate(self, r: GenerateRequest) -> GenerateResult:
        """Two-phase generation: think (unless the CoT is given, e.g. "" for Empty CoT), then answer.

        When the model does not close its thinking within ``thought_budget`` we
        close it ourselves and ask for the answer, as the reference study does.
        The answer request after a CoT goes in by token ids (:meth:`_answer_after`).
        """
        return await two_phase(self, r)

    def _complete_args(self, r: CompleteRequest) -> tuple[list[int], object]:
        ids = r.ids if r.ids is not None else self.encode(r.text or "")
        return ids, self.params(
            r.sampling or GREEDY, r.max_tokens, stop=r.stop, n=r.n, ignore_eos=r.ignore_eos, skip_special_tokens=False
        )

    @staticmethod
    def _completion(o: Any) -> Completion:
        return Completion(
            texts=[c.text for c in o.outputs],
            token_ids=[list(c.token_ids) for c in o.outputs],
            finish_reasons=[c.finish_reason for c in o.outputs],
        )

    async def complete(self, r: CompleteRequest) -> Completion:
        """Raw continuations of a text or of token ids."""
        return self._completion(await self.run(*self._complete_args(r)))

    def complete_blocking(self, reqs: list[CompleteRequest]) -> list[Completion]:
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

        return SamplingParams(
            max_tokens=1,
            temperature=0.0,
            prompt_logprobs=0,
            detokenize=False,
            flat_logprobs=True,
            skip_reading_prefix_cache=skip_cache,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    async def score_ids(self, ctx: list[int], conts: list[list[int]], mode: ScoreMode = "cached") -> list[dict]:
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
            await self.run(ctx[:-1], self.params(GREEDY, 1))
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

    async def score(self, context: str, continuations: list[str], mode: ScoreMode = "cached") -> list[dict]:
        """:meth:`score_ids` on texts (benches, tests)."""
        return await self.score_ids(self.encode(context), [self.encode(k) for k in continuations], mode)

    # ================================================================ ensemble
    # Each model sees the growing CoT in its OWN thinking format and tokenizer:
    # context = thinking_prompt(problem) + CoT so far.

    async def propose(self, r: ProposeRequest) -> Proposal:
        """Candidate continuations of a growing CoT for one problem.

        ``r.thought_budget`` (set for the first generator only) is the ensemble's thought budget
        in this model's tokens: when the CoT already reaches it nothing is run (``exhausted``),
        else ``max_candidate_tokens`` is capped to what is left.  Texts are raw (the close tag
        kept when the model wrote it; other special tokens removed); ``closed`` is true when the
        model wrote its close tag or ended its turn (EOS).
        """
        cot_tokens = len(self.encode(r.cot)) if r.cot else 0
        max_tokens = r.max_candidate_tokens
        if r.thought_budget is not None:
            max_tokens = min(max_tokens, r.thought_budget - cot_tokens)
            if max_tokens <= 0:
                return Proposal(texts=[], closed=[], cot_tokens=cot_tokens, exhausted=True)
        p = self.encode(self.thinking_prompt(r.prompt, r.system) + r.cot)
        err = self._fit(p, max_tokens, "ensemble propose")
        if err:
            return Proposal(
                texts=[], closed=[], cot_tokens=cot_tokens, exhausted=True, error=err, context_tokens=len(p)
            )
        o = await self.run(
            p,
            self.params(
                r.sampling,
                max_tokens,
                stop=[self.fmt.think_stop],
                n=r.n,
                include_stop_str_in_output=True,
                skip_special_tokens=False,
            ),
        )
        out = Proposal(texts=[], closed=[], cot_tokens=cot_tokens, context_tokens=len(p))
        for c in o.outputs:
            text = c.text
            for s in self._specials:
                text = text.replace(s, "")
            out.texts.append(text)
            out.closed.append(c.finish_reason == "stop")
        return out

    async def score_texts(self, r: ScoreRequest) -> list[CandidateScore]:
        """Score one problem's candidate sentences after its CoT (``r.mode``: see :meth:`score_ids`).

        The context is this model's thinking prompt + CoT; a candidate that closes the
        thinking is scored with this model's own close tag appended.  A candidate gets
        ``mean_nll=inf`` with ``error`` when context+candidate cannot fit.
        """
        close = self.fmt.close.rstrip()
        ctx = self.encode(self.thinking_prompt(r.prompt, r.system) + r.cot)
        cands = [self.encode(t + (close if c else "")) for t, c in zip(r.candidates, r.closes)]
        err = self._fit(ctx, max((len(c) for c in cands), default=0) + 1, "ensemble score")
        if err:
            return [
                CandidateScore(mean_nll=float("inf"), seq_mean_nll=float("inf"), n_tokens=0, error=err) for _ in cands
            ]
        scored = await self.score_ids(ctx, cands, mode=r.mode) if cands else []
        return [
            CandidateScore(mean_nll=d["mean_nll"], n_tokens=d["n_tokens"], seq_mean_nll=d.get("seq_mean_nll"))
            for d in scored
        ]
