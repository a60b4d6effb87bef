"""Stage `ensemble`: sentence-level ensemble CoT (generators propose, evaluators pick the least surprising).

The reference study builds one chain of thought from several models: at each
step every *generator* proposes candidate next sentences, every *evaluator*
scores them, and the candidate with the lowest mean score is appended to the
CoT that every model sees; this repeats until a selected candidate closes the
thinking.  Their code re-scores the whole sequence for every candidate and
steps one problem at a time.  Ours runs **every problem independently**: a
problem's next step goes out the moment its last step is scored (no lockstep,
so a problem with short sentences never waits for one with long ones), with
many problems in flight per engine.  One step of one problem:

1. one ``propose`` item per generator (all at once, so their engines run
   concurrently): ``candidates`` samples of at most ``max_candidate_tokens``
   tokens after *that model's* thinking prompt + CoT so far, seeded per (seed,
   problem, step, generator).  Each fragment is cut back to its last sentence
   end (kept whole when it has none; trailing whitespace is left to the next
   sentence); a fragment holding the generator's close tag (or ending its turn)
   *closes* the thinking: it is cut at the tag;
2. duplicate candidates (same text, same closing) are scored once;
3. one ``score_texts`` item per evaluator (all at once): the mean NLL of each
   candidate's own tokens after the evaluator's thinking prompt + CoT in the
   evaluator's own format and tokenizer (a closing candidate is scored with the
   evaluator's own close tag appended), with vLLM's prefix cache
   (:meth:`pipeline.engine.vllm_engine.ModelEngine.score_ids`, ``mode="cached"``).
   ``scoring: paper`` instead ranks by the reference study's whole-sequence
   perplexity (mean NLL over prompt + CoT + candidate, without the cache);
4. scores are averaged over evaluators; the minimum wins (ties: first
   generator, first sample).  A problem stops when its winner closes the
   thinking (``closed``), when the CoT reaches ``thought_budget`` tokens of the
   first generator's tokenizer (``budget``), after ``max_steps`` steps
   (``max_steps``), or when nothing usable was proposed / fits the context
   (``no_candidate`` / ``context``).  A generator whose context overflows on a
   step *drops out of that step*: recorded per step (``dropped`` on its
   candidate rows: ``generator_error``) and counted in the report.

Outputs: ``ensemble-<G1+G2/E>-<hash>.arrow`` (GENERATIONS rows, method
``ensemble``, the final CoT; truncate and transfer consume each one as soon as
its problem finishes) and ``ensemble_candidates-<...>-<hash>.arrow`` (one row
per problem, step and candidate: generator, text, per-evaluator scores, mean,
winner flag), also copied to ``<run_dir>/ensemble_candidates.arrow`` for the
report.  Resume is per problem: a problem's rows are written when it finishes,
so a killed run redoes only the problems in flight (deterministically: every
request is seeded by its identity).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.config import hash_fields
from pipeline.engine.formats import ALL_MARKERS, get_format
from pipeline.engine.protocol import InfoQuery, ProposeRequest, Sampling, ScoreRequest
from pipeline.engine.vllm_engine import request_seed
from pipeline.schema import CANDIDATE_KEY, ENSEMBLE_KEY, GENERATIONS
from pipeline.stages.context import Context, stage_meta
from pipeline.stages.kv_admission import KVAdmission, engine_kv_tokens, step_reserve
from pipeline.stages.runner import Flow
from pipeline.store.atomic import copy_atomic
from pipeline.store.sink import RowSink
from pipeline.text.ensemble_rules import study_cut, study_join
from pipeline.text.sentences import cut_to_sentence

log = logging.getLogger("crosscot")

# KV admission (pipeline.stages.kv_admission): tokens allowed for a problem's prompt on top of its
# thought budget.
PROMPT_ALLOWANCE = 1024

CANDIDATES = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("problem_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # "G1+G2/E"
        pa.field("step", pa.int32(), nullable=False),
        pa.field("generator", pa.string(), nullable=False),
        pa.field("candidate", pa.int32(), nullable=False),  # sample index within the generator
        pa.field("raw_text", pa.string()),  # what the generator wrote (special tokens removed)
        pa.field("text", pa.string()),  # cut to the last sentence end / at the close tag
        pa.field("closes", pa.bool_()),
        pa.field("valid", pa.bool_()),  # false: empty after cutting, never scored
        pa.field("duplicate", pa.bool_()),  # same text as an earlier candidate: scored once, shares its scores
        pa.field("scores", pa.map_(pa.string(), pa.float64())),  # evaluator -> score
        pa.field("mean_score", pa.float64()),
        pa.field("winner", pa.bool_()),
        pa.field("stop_reason", pa.string()),  # on the winner row of a problem's last step
        pa.field("generator_error", pa.string()),  # the generator dropped out of this step (why)
    ]
)


def ensemble_source(generators: list[str], evaluators: list[str]) -> str:
    return "+".join(generators) + "/" + "+".join(evaluators)


def parse_candidate(raw: str, closed: bool, close_tag: str, rule: str = "ours") -> tuple[str, bool]:
    """(text, closes): cut at the generator's close tag, else back to the last sentence end.

    ``rule="study"``: the study's sentence end (pipeline.text.ensemble_rules.study_cut).
    """
    closes = closed
    text = raw
    if close_tag and close_tag in text:
        text = text[: text.index(close_tag)]
        closes = True
    for m in ALL_MARKERS:  # foreign tags must never enter the shared CoT
        text = text.replace(m, "")
    if not closes:
        text = study_cut(text) if rule == "study" else cut_to_sentence(text)  # ensemble.sentence_rule
    # Trailing whitespace goes to the next sentence: a BPE model writes " Then", not "Then" after
    # a context ending in a space, and the score should not include the whitespace.
    return text.rstrip(), closes


class EnsembleStage:
    name = "ensemble"
    requires: tuple[str, ...] = ()
    version = "2"  # 2: problems advance independently; generator drop-outs recorded
    consumes: tuple[str, ...] = ()

    # ------------------------------------------------------------------ names
    def open(self, ctx: Context) -> None:
        ec = ctx.cfg.ensemble
        self.gens, self.evs = list(ec.generators), list(ec.evaluators)
        self.source_name = ensemble_source(self.gens, self.evs)
        self.admission: KVAdmission | None = None  # this pass's (set when its problems start: _feed)
        self.admission_waits = 0  # admissions that waited for KV room, over every pass
        # Exactly the fields that change results: not `enabled` (always true here).
        args = {
            "ensemble": {k: v for k, v in hash_fields(ec).items() if k != "enabled"},
            "models": {n: ctx.model_key(n) for n in dict.fromkeys(self.gens + self.evs)},
            "problems": ctx.artifact_hash(ctx.problems_path),
            "v": self.version,
        }
        self.cots = ctx.sink(ctx.store.path("ensemble", self.source_name, args), GENERATIONS, ENSEMBLE_KEY)
        self.cands = ctx.sink(ctx.store.path("ensemble_candidates", self.source_name, args), CANDIDATES, CANDIDATE_KEY)
        self._meta = stage_meta(
            ctx, self.name, args, {"problems": str(ctx.problems_path)}, list(dict.fromkeys(self.gens + self.evs))
        )
        self._closers = {g: get_format(ctx.cfg.model(g).thinking_format).think_stop for g in self.gens}
        ctx.artifacts["ensemble"] = [self.cots.artifact]

    def sinks(self) -> list[RowSink]:
        return [self.cots, self.cands]

    def models(self, ctx: Context) -> list[str]:
        return [] if (self.cots.complete and self.cands.complete) else list(dict.fromkeys(self.gens + self.evs))

    def on_event(self, flow: Flow, kind: str, row: dict) -> None:  # consumes nothing
        return None

    # ------------------------------------------------------------------ flow
    async def source(self, flow: Flow) -> None:
        models = list(dict.fromkeys(self.gens + self.evs))
        todo = [p for p in flow.ctx.problem_rows() if not self.cots.done(self.cots.key(self._row_key(p)))]
        runnable = all(m in flow.resident for m in models)
        if todo and runnable:
            flow.bar(self.name, more=len(todo))
        flow.spawn("ensemble", self._feed(flow, models))

    def _row_key(self, p: dict) -> dict:
        return {
            "dataset": p["dataset"],
            "problem_id": p["problem_id"],
            "method": "ensemble",
            "source": self.source_name,
            "variant": "full",
            "sample": 0,
            "target": self.source_name,
        }

    async def _feed(self, flow: Flow, models: list[str]) -> None:
        async def handle(p: dict) -> None:
            async def work() -> list[dict]:
                return [await self.problem(flow, p)]

            job = flow.submit(self.name, self.cots, [self.cots.key(self._row_key(p))], models, work, emit="generation")
            if job is not None:
                await job

        limit = flow.stream.max_pending or max(1, flow.max_in_flight(self.gens[0]) // max(1, len(self.gens)))
        self.admission = adm = await self._admission(flow, models, limit)
        await flow.bounded(
            "ensemble", limit, flow.ctx.problem_rows(), handle, gate=adm, item_key=lambda p: p["problem_id"]
        )
        self.admission_waits += adm.waits  # every problem is admitted by now (some still running)

    async def _admission(self, flow: Flow, models: list[str], limit: int) -> KVAdmission:
        """Problems in flight bounded by count and by the smallest KV cache (pipeline.stages.kv_admission)."""
        ec = flow.ctx.cfg.ensemble
        caps = []
        for m in models:
            if m not in flow.resident:
                continue
            info = await flow.ctx.pool.op(m, InfoQuery())
            caps.append(engine_kv_tokens(info, flow.ctx.cfg.model(m).replicas or 1))
        known = [c for c in caps if c is not None]
        max_len = min(flow.ctx.cfg.model(m).max_model_len for m in models)
        # The prompt is not tokenized here: allow as much again as the CoT's candidates may add.
        ceiling = min(max_len, ec.thought_budget + PROMPT_ALLOWANCE)
        reserve = step_reserve(ec.candidates * len(self.gens), ec.max_candidate_tokens)
        adm = KVAdmission(capacity=min(known) if known else None, limit=limit, ceiling=ceiling, reserve=reserve)
        if adm.capacity is not None and adm.projected(0) * limit > adm.capacity:
            log.info(
                "ensemble: at most %d problem(s) of ~%d tokens fit the smallest KV cache (%d tokens) at first; "
                "problems in flight are bounded by it (count bound %d)",
                max(1, adm.capacity // adm.projected(0)),
                adm.projected(0),
                adm.capacity,
                limit,
            )
        return adm

    async def problem(self, flow: Flow, p: dict) -> dict:
        """Run one problem's ensemble to its end; write its candidate rows; its CoT row (added by the flow)."""
        ec = flow.ctx.cfg.ensemble
        st: dict[str, Any] = {"cot": "", "reason": None, "steps": 0, "context_tokens": None}
        pid = p["problem_id"]
        rows: list[dict] = []
        for step in range(ec.max_steps):  # step() returns "max_steps" on the last one
            step_rows, reason = await self.step(flow, p, step, st)
            if self.admission is not None:
                self.admission.update(pid, st["context_tokens"])
            rows += step_rows
            if reason:
                st["reason"] = reason
                break
        for r in rows:
            self.cands.add(r)
        closed = st["reason"] == "closed"
        out = {
            **self._row_key(p),
            "cot": st["cot"].strip(),
            "answer_text": None,
            "gold": p["gold"],
            "cot_finish_reason": "stop" if closed else "length",
            "forced_close": not closed,
            "ensemble_steps": st["steps"],
            "ensemble_stop": st["reason"],
            "error": (
                "ensemble: the CoT no longer fits an engine's max_model_len; raise it or lower ensemble.thought_budget"
            )
            if st["reason"] == "context" and not st["cot"].strip()
            else None,
        }
        return out

    async def step(self, flow: Flow, p: dict, step: int, st: dict) -> tuple[list[dict], str | None]:
        """One step of one problem: (candidate rows, stop reason or None)."""
        ec = flow.ctx.cfg.ensemble
        gens, evs = self.gens, self.evs
        pid = p["problem_id"]

        # 1. one propose item per generator, all in flight together
        def preq(g: str) -> ProposeRequest:
            m = flow.ctx.cfg.model(g)
            return ProposeRequest(
                prompt=p["prompt"],
                cot=st["cot"],
                n=ec.candidates,
                max_candidate_tokens=ec.max_candidate_tokens,
                sampling=_proposal_sampling(m, ec, pid, step, g),
                system=p.get("system"),
                thought_budget=ec.thought_budget if g == gens[0] else None,
            )

        props = dict(zip(gens, await asyncio.gather(*(flow.call(self.name, g, preq(g)) for g in gens))))
        first = props[gens[0]]
        st["context_tokens"] = first.context_tokens
        if first.exhausted:
            return [], ("context" if first.error else "budget")

        # 2. parse, cut and deduplicate
        rows: list[dict] = []
        uniq: list[int] = []
        seen: dict[tuple[str, bool], int] = {}
        for g in gens:
            res = props[g]
            if res.error:  # this generator's context overflowed: it drops out of this step, recorded
                rows.append(
                    {
                        **self._cand_base(p, step, g, -1),
                        "raw_text": None,
                        "text": None,
                        "closes": False,
                        "valid": False,
                        "duplicate": False,
                        "winner": False,
                        "generator_error": res.error,
                        "_rep": None,
                    }
                )
                continue
            for k, (raw, closed) in enumerate(zip(res.texts, res.closed)):
                text, closes = parse_candidate(raw, closed, self._closers[g], ec.sentence_rule)
                valid = closes or bool(text.strip())
                key = (text, closes)
                dup = valid and key in seen
                row = {
                    **self._cand_base(p, step, g, k),
                    "raw_text": raw,
                    "text": text,
                    "closes": closes,
                    "valid": valid,
                    "duplicate": dup,
                    "winner": False,
                    "_rep": seen.get(key),
                }
                if valid and not dup:
                    seen[key] = len(rows)
                    row["_rep"] = len(rows)
                    uniq.append(len(rows))
                rows.append(row)
        if not uniq:
            return self._clean(rows), "no_candidate"

        # 3. one scoring item per evaluator, all in flight together
        paper = ec.scoring == "paper"
        sreq = ScoreRequest(
            prompt=p["prompt"],
            cot=st["cot"],
            candidates=[rows[j]["text"] for j in uniq],
            closes=[rows[j]["closes"] for j in uniq],
            system=p.get("system"),
            mode="paper" if paper else "cached",
        )
        scores = await asyncio.gather(*(flow.call(self.name, e, sreq) for e in evs))

        # 4. average over evaluators, pick the minimum, advance the state
        for jj, j in enumerate(uniq):
            per = {
                e: _finite(scores[n][jj].seq_mean_nll if paper else scores[n][jj].mean_nll) for n, e in enumerate(evs)
            }
            rows[j]["scores"] = per
            rows[j]["mean_score"] = sum(per.values()) / len(per)
        for r in rows:  # duplicates share their representative's scores
            rep = r.get("_rep")
            if r["duplicate"] and rep is not None:
                r["scores"], r["mean_score"] = rows[rep].get("scores"), rows[rep].get("mean_score")
        best = None
        for j in uniq:
            s = rows[j]["mean_score"]
            if math.isfinite(s) and (best is None or s < rows[best]["mean_score"]):
                best = j
        if best is None:
            return self._clean(rows), "context"
        w = rows[best]
        w["winner"] = True
        # ensemble.join: the candidate as cut (ours) or the study's space join
        st["cot"] = study_join(st["cot"], w["text"]) if ec.join == "space" else st["cot"] + w["text"]
        st["steps"] += 1
        reason = "closed" if w["closes"] else ("max_steps" if step + 1 >= ec.max_steps else None)
        if reason:
            w["stop_reason"] = reason
        return self._clean(rows), reason

    def _cand_base(self, p: dict, step: int, g: str, k: int) -> dict:
        return {
            "dataset": p["dataset"],
            "problem_id": p["problem_id"],
            "source": self.source_name,
            "step": step,
            "generator": g,
            "candidate": k,
            "stop_reason": None,
            "generator_error": None,
        }

    @staticmethod
    def _clean(rows: list[dict]) -> list[dict]:
        for r in rows:
            r.pop("_rep", None)
        return rows

    # ---------------------------------------------------------------- finish
    def finish(self, ctx: Context) -> list[Path]:
        ec = ctx.cfg.ensemble
        cand = self.cands.finish({**self._meta, "scoring": ec.scoring})
        steps = {r["problem_id"]: r.get("ensemble_steps") for r in self.cots.rows()}
        reasons = {r["problem_id"]: r.get("ensemble_stop") for r in self.cots.rows()}
        cots = self.cots.finish({**self._meta, "candidates": str(cand), "steps": steps, "stop_reasons": reasons})
        copy_atomic(cand, ctx.run_dir / "ensemble_candidates.arrow")
        return [cots]


def _proposal_sampling(m: Any, ec: Any, problem_id: str, step: int, g: str) -> Sampling:
    """A generator's proposal sampling; the study's top_k and per-step reseeding when set."""
    seed = ec.seed if ec.reseed_each_step else request_seed(ec.seed, problem_id, step, g)
    if ec.proposal_sampling == "generation_config":
        from pipeline.config.study_sampling import generation_config

        s = Sampling.from_config(generation_config(m), seed)
    else:
        s = Sampling.from_config(m.sampled, seed)
    if ec.top_k is not None:
        s = dataclasses.replace(s, top_k=int(ec.top_k))
    return s


def _finite(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.inf
    return v if math.isfinite(v) else math.inf


__all__ = ["EnsembleStage", "CANDIDATES", "parse_candidate", "ensemble_source"]
