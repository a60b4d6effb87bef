"""One vLLM engine for one model, and the request types every stage sends it.

:class:`ModelEngine` wraps ``vllm.LLM`` with the few operations the study
needs, each taking a whole *batch* (never one request at a time):

* ``think`` — open the model's thinking and let it write a CoT until it closes
  it or hits the budget;
* ``answer`` — place a given CoT (own, transferred, empty) in the model's own
  thinking format and let it answer (the second phase of the two-phase
  generation the reference study uses when thinking is not closed in budget);
* ``complete`` — raw continuations of rendered prompts (ensemble candidates,
  LLM answer filter);
* ``score`` — log-probabilities of given continuation tokens after a context,
  reusing the engine's prefix cache (see :meth:`ModelEngine.score`).

The same class runs inside a Ray actor (:mod:`pipeline.engine.pool`) or
in-process; :class:`FakeEngine` in :mod:`pipeline.engine.fake` mirrors its
interface for fast unit tests of stage logic.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any, Optional


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


class ModelEngine:
    """A vLLM engine for one model (see module docstring)."""

    def __init__(self, model_cfg, seed: int = 0):
        for k, v in engine_env(model_cfg).items():
            os.environ.setdefault(k, v)
        from pipeline.formats import get_format
        from pipeline.models import ensure_model

        self.cfg = model_cfg
        self.fmt = get_format(model_cfg.thinking_format)
        path = ensure_model(model_cfg)
        t0 = time.time()
        from vllm import LLM

        self.llm = LLM(
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
            **({"block_size": model_cfg.block_size} if getattr(model_cfg, "block_size", None) else {}),
            # TP > 1 inside a Ray actor: vLLM's Ray executor places its workers in the
            # placement group the actor was scheduled into (captured child tasks).
            **({"distributed_executor_backend": "ray"} if model_cfg.tensor_parallel_size > 1 else {}),
        )
        self.load_seconds = time.time() - t0
        from vllm.platforms import current_platform

        self._cpu = current_platform.is_cpu()
        self._batch_seeds: list[int] = []
        self._load_interval = (t0, time.time())
        self.tok = self.llm.get_tokenizer()
        if model_cfg.chat_template:
            self.tok.chat_template = model_cfg.chat_template
        self.stats = {"prefill_tokens": 0, "cached_tokens": 0, "generated_tokens": 0, "requests": 0, "batches": 0,
                      "engine_seconds": 0.0, "load_seconds": self.load_seconds}
        # Wall-clock intervals the engine was busy (loading included), so the driver can
        # tell how much of a run's wall time was spent outside the engines.
        self.intervals: list[tuple[float, float]] = [self._load_interval]

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
                      answer_prefix: Optional[str] = None) -> str:  # [issue10 hook] answer_prefix
        from pipeline.engine.messages import place_cot

        return place_cot(self.fmt, self.generation_prompt(user_prompt, system, phase), cot, self.cfg.protocol,
                         answer_prefix)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def info(self) -> dict:
        import vllm

        return {"name": self.cfg.name, "vllm": vllm.__version__, "load_seconds": self.load_seconds,
                "vocab_size": len(self.tok), "max_model_len": self.cfg.max_model_len}

    # ----------------------------------------------------------------- running
    def _params(self, s: Sampling, max_tokens: int, stop=None, **kw):
        from vllm import SamplingParams

        seed = s.seed if s.temperature > 0 else None
        if seed is not None and self._cpu:
            # vLLM's CPU runner crashes on per-request seeds once a prefill is chunked
            # ("CPU Generator does not use offset"); we seed the engine's generator per
            # batch instead (see _run), which is deterministic for a given batch.
            self._batch_seeds.append(seed)
            seed = None
        return SamplingParams(
            temperature=s.temperature, top_p=s.top_p, top_k=s.top_k if s.top_k > 0 else 0,
            min_p=s.min_p, repetition_penalty=s.repetition_penalty, seed=seed,
            max_tokens=max_tokens, stop=stop, **kw,
        )

    def _run(self, prompt_ids: list[list[int]], params: list) -> list:
        from vllm.inputs import TokensPrompt

        if self._batch_seeds:
            import torch

            torch.manual_seed(request_seed(0, tuple(self._batch_seeds)))
            self._batch_seeds = []
        t0 = time.time()
        outs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompt_ids], params, use_tqdm=False
        )
        self.stats["engine_seconds"] += time.time() - t0
        self.intervals.append((t0, time.time()))
        self.stats["requests"] += len(outs)
        self.stats["batches"] += 1
        for o in outs:
            cached = o.num_cached_tokens or 0
            self.stats["cached_tokens"] += cached
            self.stats["prefill_tokens"] += len(o.prompt_token_ids) - cached
            self.stats["generated_tokens"] += sum(len(c.token_ids) for c in o.outputs)
        return outs

    def _fit(self, ids: list[int], max_tokens: int, what: str) -> Optional[str]:
        """Error text when a prompt cannot fit the context window, else None."""
        if len(ids) + max_tokens > self.cfg.max_model_len:
            return (
                f"{what}: prompt of {len(ids)} tokens + {max_tokens} new tokens exceeds "
                f"max_model_len={self.cfg.max_model_len} of model {self.cfg.name!r}; raise "
                f"models.<key>.max_model_len or lower the token budget"
            )
        return None

    def think(self, requests: list[dict]) -> list[dict]:
        """Write CoTs. Each request: {prompt, sampling: Sampling, max_tokens}."""
        results: list[Optional[dict]] = [None] * len(requests)
        ids, params, idx = [], [], []
        stop = [self.fmt.think_stop]
        from pipeline.engine.messages import thought_budget

        for i, r in enumerate(requests):
            p = self.encode(self.thinking_prompt(r["prompt"], r.get("system")))  # [issue10 hook] system
            budget = thought_budget(r["max_tokens"], len(p), self.cfg.max_model_len,
                                    self.cfg.protocol.thought_budget_plus_prompt, r.get("reserve", 0))  # [issue10 hook]
            err = self._fit(p, budget, "think")
            if err:
                results[i] = {"cot": "", "cot_tokens": 0, "finish_reason": "error", "forced_close": False,
                              "error": err}
                continue
            ids.append(p)
            params.append(self._params(r["sampling"], budget, stop=stop, skip_special_tokens=False))
            idx.append(i)
        for i, o in zip(idx, self._run(ids, params) if ids else []):
            c = o.outputs[0]
            closed = c.finish_reason == "stop" and c.stop_reason == self.fmt.think_stop
            text = c.text
            results[i] = {
                "cot": self.fmt.clean(text),
                "cot_tokens": len(c.token_ids),
                # "stop": the model closed its thinking (or ended its turn); "length": we close it.
                "finish_reason": "stop" if c.finish_reason == "stop" else "length",
                "forced_close": not closed,
                "error": None,
            }
        return results  # type: ignore[return-value]

    def answer(self, requests: list[dict]) -> list[dict]:
        """Answer after a placed CoT. Each request: {prompt, cot, sampling, max_tokens}."""
        results: list[Optional[dict]] = [None] * len(requests)
        ids, params, idx = [], [], []
        stop = list(self.fmt.answer_stop) or None
        for i, r in enumerate(requests):
            p = self.encode(self.answer_prompt(r["prompt"], r.get("cot") or "", r.get("system"),
                                               r.get("phase", "own"), r.get("answer_prefix")))  # [issue10 hook] system, phase, answer_prefix
            err = self._fit(p, r["max_tokens"], "answer")
            if err:
                results[i] = {"answer_text": None, "prompt_tokens": len(p), "answer_tokens": 0,
                              "finish_reason": "error", "error": err}
                continue
            ids.append(p)
            params.append(self._params(r["sampling"], r["max_tokens"], stop=stop))
            idx.append(i)
        for i, o in zip(idx, self._run(ids, params) if ids else []):
            c = o.outputs[0]
            results[i] = {"answer_text": c.text, "prompt_tokens": len(o.prompt_token_ids),
                          "answer_tokens": len(c.token_ids), "finish_reason": c.finish_reason, "error": None}
        return results  # type: ignore[return-value]

    def generate(self, requests: list[dict]) -> list[dict]:
        """Two-phase generation: think (unless the CoT is given, e.g. "" for Empty CoT), then answer.

        Each request: {prompt, cot (None = think first), sampling, think_tokens, answer_tokens}.
        When the model does not close its thinking within ``think_tokens`` we
        close it ourselves and ask for the answer, as the reference study does.
        """
        out: list[dict] = [dict() for _ in requests]
        think_idx = [i for i, r in enumerate(requests) if r.get("cot") is None]
        thoughts = self.think([{"prompt": requests[i]["prompt"], "sampling": requests[i]["sampling"],
                                "system": requests[i].get("system"),  # [issue10 hook]
                                "reserve": requests[i]["answer_tokens"],  # [issue10 hook]
                                "max_tokens": requests[i]["think_tokens"]} for i in think_idx])
        for i, t in zip(think_idx, thoughts):
            out[i].update(t)
        for i, r in enumerate(requests):
            if r.get("cot") is not None:
                out[i].update({"cot": r["cot"], "cot_tokens": 0, "finish_reason": "given",
                               "forced_close": False, "error": None})
        ans_idx = [i for i in range(len(requests)) if not out[i].get("error")]
        answers = self.answer([{"prompt": requests[i]["prompt"], "cot": out[i]["cot"],
                                "system": requests[i].get("system"),  # [issue10 hook]
                                "answer_prefix": requests[i].get("answer_prefix"),  # [issue10 hook]
                                "sampling": requests[i]["sampling"], "max_tokens": requests[i]["answer_tokens"]}
                               for i in ans_idx])
        for i, a in zip(ans_idx, answers):
            out[i]["cot_finish_reason"] = out[i].pop("finish_reason")
            out[i].update(a)
        for o in out:
            if "cot_finish_reason" not in o:
                o["cot_finish_reason"] = o.pop("finish_reason", "error")
                o.setdefault("answer_text", None)
        return out

    def complete(self, requests: list[dict]) -> list[dict]:
        """Raw continuations. Each request: {text, sampling, max_tokens, n?, stop?}."""
        ids = [self.encode(r["text"]) for r in requests]
        params = [self._params(r["sampling"], r["max_tokens"], stop=r.get("stop"), n=r.get("n", 1),
                               skip_special_tokens=False) for r in requests]
        outs = self._run(ids, params) if ids else []
        return [{"texts": [c.text for c in o.outputs], "token_ids": [list(c.token_ids) for c in o.outputs],
                 "finish_reasons": [c.finish_reason for c in o.outputs]} for o in outs]

    def score(self, contexts: list[str], continuations: list[list[str]], mode: str = "cached") -> list[list[dict]]:
        """Log-probabilities of each continuation's own tokens after its context.

        ``mode="cached"``: each context is prefilled once (``warm`` request) and
        every candidate is scored as context+candidate with ``prompt_logprobs``
        while *reading* the prefix cache, so only the candidate tokens (plus
        the partial last cache block) are prefilled.  vLLM skips the cache for
        prompt-logprob requests by default because cached positions get no
        logprobs; we only need the candidate's own positions.  The first candidate
        token's log-prob comes from the logits at the context's *last* position,
        so at most ``len(context) - 1`` tokens may come from the cache: the warm
        request holds all but the last context token, and any request whose
        ``num_cached_tokens`` still reaches ``len(context)`` (a block-aligned
        context cached by an earlier request) is recomputed without the cache.
        Cached positions carry no (or garbage) log-probs and are never read.
        ``mode="naive"``: the default vLLM behaviour (whole sequence re-prefilled
        for every candidate) — the baseline of ``make bench``.

        Returns per context, per continuation: {logprobs: [...], n_tokens, mean_nll,
        seq_mean_nll (over context+continuation: the reference study's choice)}.
        """
        return self.score_ids([self.encode(c) for c in contexts],
                              [[self.encode(k) for k in conts] for conts in continuations], mode)

    def score_ids(self, ctx_ids: list[list[int]], cont_ids: list[list[list[int]]],
                  mode: str = "cached") -> list[list[dict]]:
        """:meth:`score` on already tokenized contexts and continuations."""
        from vllm import SamplingParams

        def lp_params(skip_cache: bool):
            return SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False,
                                  flat_logprobs=True, skip_reading_prefix_cache=skip_cache)

        greedy = Sampling(0.0, 1.0, -1)
        if mode == "cached":
            # Warm the prefix cache with all but the context's last token: the first candidate
            # token's log-prob comes from the logits at the context's last position, which must
            # be computed, so at most nc-1 context tokens may be read from the cache.
            warm = [c[:-1] for c in ctx_ids if len(c) > 1]
            if warm:
                self._run(warm, [self._params(greedy, 1) for _ in warm])
        flat, meta = [], []
        for ci, (cids, conts) in enumerate(zip(ctx_ids, cont_ids)):
            for ki, kids in enumerate(conts):
                flat.append(cids + kids)
                meta.append((ci, ki, len(cids), len(kids)))
        want_seq = mode == "paper"
        params = lp_params(skip_cache=(mode != "cached"))
        outs = self._run(flat, [params] * len(flat)) if flat else []
        res: list[list[dict]] = [[{} for _ in conts] for conts in cont_ids]
        redo = []
        for j, (o, (ci, ki, nc, nk)) in enumerate(zip(outs, meta)):
            if (o.num_cached_tokens or 0) >= nc and nk:  # position nc-1 not computed: recompute
                redo.append(j)
                continue
            res[ci][ki] = self._read_lp(o, flat[j], nc, nk, want_seq)
        if redo:
            p2 = lp_params(skip_cache=True)
            outs2 = self._run([flat[j] for j in redo], [p2] * len(redo))
            for j, o in zip(redo, outs2):
                ci, ki, nc, nk = meta[j]
                res[ci][ki] = self._read_lp(o, flat[j], nc, nk, want_seq)
        return res

    @staticmethod
    def _read_lp(o, ids: list[int], nc: int, nk: int, want_seq: bool) -> dict:
        plp = o.prompt_logprobs
        lps = []
        start = 1 if want_seq else nc
        for pos in range(start, nc + nk):
            d = plp[pos]
            if d is None or ids[pos] not in d:
                raise RuntimeError(f"engine returned no logprob for prompt position {pos}")
            lps.append(float(d[ids[pos]].logprob))
        cand = lps[-nk:] if nk else []
        out = {"logprobs": cand, "n_tokens": nk,
               "mean_nll": (-sum(cand) / nk) if nk else float("inf")}
        if want_seq:
            out["seq_mean_nll"] = -sum(lps) / max(1, len(lps))
        return out

    def get_stats(self) -> dict:
        return {**self.stats, "intervals": list(self.intervals)}

    # ================================================================ ensemble
    # Batch methods of the sentence-level ensemble (pipeline.stages.ensemble).
    # Each model sees the growing CoT in its OWN thinking format and tokenizer:
    # context = thinking_prompt(problem) + CoT so far.

    def propose(self, requests: list[dict]) -> list[dict]:
        """Candidate continuations of a growing CoT, one batched engine call.

        Each request: {prompt, cot, n, max_tokens, sampling, budget?}.  ``budget``
        (set for the first generator only) is the ensemble's thought budget in
        this model's tokens: when the CoT already reaches it the request is not
        run (``exhausted``), else ``max_tokens`` is capped to what is left.
        Returns per request {texts, closed, cot_tokens, exhausted, error}: raw
        texts (the close tag kept when the model wrote it; other special tokens
        removed), ``closed`` true when the model wrote its close tag or ended
        its turn (EOS).
        """
        out: list[Optional[dict]] = [None] * len(requests)
        stop = self.fmt.think_stop
        specials = [t for t in getattr(self.tok, "all_special_tokens", []) if t and t != stop]
        ids, params, idx = [], [], []
        for i, r in enumerate(requests):
            cot_tokens = len(self.encode(r["cot"])) if r["cot"] else 0
            base = {"texts": [], "closed": [], "cot_tokens": cot_tokens, "exhausted": False, "error": None}
            max_tokens = r["max_tokens"]
            if r.get("budget") is not None:
                max_tokens = min(max_tokens, r["budget"] - cot_tokens)
                if max_tokens <= 0:
                    out[i] = {**base, "exhausted": True}
                    continue
            p = self.encode(self.thinking_prompt(r["prompt"], r.get("system")) + r["cot"])  # [issue10 hook]
            err = self._fit(p, max_tokens, "ensemble propose")
            if err:
                out[i] = {**base, "exhausted": True, "error": err}
                continue
            out[i] = base
            ids.append(p)
            params.append(self._params(r["sampling"], max_tokens, stop=[stop], n=r.get("n", 1),
                                       include_stop_str_in_output=True, skip_special_tokens=False))
            idx.append(i)
        for i, o in zip(idx, self._run(ids, params) if ids else []):
            for c in o.outputs:
                text = c.text
                for s in specials:
                    text = text.replace(s, "")
                out[i]["texts"].append(text)  # type: ignore[index]
                out[i]["closed"].append(c.finish_reason == "stop")  # type: ignore[index]
        return out  # type: ignore[return-value]

    def score_texts(self, requests: list[dict], mode: str = "cached") -> list[list[dict]]:
        """Score candidate sentences after each request's CoT, one batched scoring call.

        Each request: {prompt, cot, candidates: [text], closes: [bool]}.  The
        context is this model's thinking prompt + CoT; a candidate that closes
        the thinking is scored with this model's own close tag appended.
        Returns per request, per candidate, :meth:`score`'s dict (``mean_nll``
        over the candidate's own tokens; ``seq_mean_nll`` in ``mode="paper"``),
        or {mean_nll: inf, error} when context+candidate cannot fit.
        """
        close = self.fmt.close.rstrip()
        contexts, conts, where, res = [], [], [], []
        for i, r in enumerate(requests):
            # Tokenized once here and handed to score_ids (no second encode per step).
            ctx = self.encode(self.thinking_prompt(r["prompt"], r.get("system")) + r["cot"])  # [issue10 hook]
            cands = [self.encode(t + (close if c else "")) for t, c in zip(r["candidates"], r["closes"])]
            longest = max((len(c) for c in cands), default=0)
            err = self._fit(ctx, longest + 1, "ensemble score")
            if err:
                res.append([{"mean_nll": float("inf"), "seq_mean_nll": float("inf"), "n_tokens": 0,
                             "error": err} for _ in cands])
                continue
            res.append([])
            where.append(i)
            contexts.append(ctx)
            conts.append(cands)
        scored = self.score_ids(contexts, conts, mode=mode) if contexts else []
        for i, s in zip(where, scored):
            res[i] = [{k: v for k, v in d.items() if k != "logprobs"} for d in s]
        return res
