"""Stage `ensemble`: sentence-level ensemble CoT (generators propose, evaluators pick the least surprising).

The reference study builds one chain of thought from several models: at each
step every *generator* proposes candidate next sentences, every *evaluator*
scores them, and the candidate with the lowest mean score is appended to the
CoT that every model sees; this repeats until a selected candidate closes the
thinking.  Their code re-scores the whole sequence for every candidate and
steps one problem at a time.  Ours, per step, for **all active problems in
lockstep**:

1. one batched ``propose`` call per generator (all generators submitted at
   once, so their engines run concurrently): ``candidates`` samples of at most
   ``max_candidate_tokens`` tokens after *that model's* thinking prompt + CoT
   so far, seeded per (seed, problem, step, generator).  Each fragment is cut
   back to its last sentence end (kept whole when it has none; trailing
   whitespace is left to the next sentence); a fragment
   holding the generator's close tag (or ending its turn) *closes* the
   thinking: it is cut at the tag;
2. duplicate candidates of a problem (same text, same closing) are scored once;
3. one batched ``score_texts`` call per evaluator (all at once): the mean NLL
   of each candidate's own tokens after the evaluator's thinking prompt + CoT
   in the evaluator's own format and tokenizer (a closing candidate is scored
   with the evaluator's own close tag appended), computed with vLLM's prefix
   cache (:meth:`pipeline.engine.core.ModelEngine.score`, ``mode="cached"``):
   the context is prefilled once per evaluator and step and only the
   candidates' tokens are computed per candidate.  ``scoring: paper`` instead
   ranks by the reference study's whole-sequence perplexity (mean NLL over
   prompt + CoT + candidate, computed without the cache) — its exact choice;
4. scores are averaged over evaluators; the minimum wins (ties: first
   generator, first sample).  A problem stops when its winner closes the
   thinking (``closed``), when the CoT reaches ``thought_budget`` tokens of the
   first generator's tokenizer (``budget``, checked when the next step starts),
   after ``max_steps`` steps (``max_steps``), or when nothing usable was
   proposed / fits the context (``no_candidate`` / ``context``).

Outputs: ``ensemble-<G1+G2/E>-<hash>.arrow`` (GENERATIONS rows, method
``ensemble``, the final CoT; truncate and transfer treat it like any other CoT)
and ``ensemble_candidates-<...>-<hash>.arrow`` (one row per problem, step and
candidate: generator, text, per-evaluator scores, mean, winner flag), also
copied to ``<run_dir>/ensemble_candidates.arrow`` for the report.

Resume: the state is checkpointed after every step (``<artifact>.parts/
step-NNNN.arrow`` with that step's candidate rows, then ``step-NNNN.json`` with
every problem's CoT and status; a step counts only once its JSON exists).  A
killed run restarts at the first uncommitted step and rewrites that step's
shard under the same name, so no row is duplicated or lost; the final
artifacts are written atomically and the shards removed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.artifacts import read_table, write_table, write_text_atomic
from pipeline.config import hash_fields
from pipeline.engine.core import Sampling, request_seed
from pipeline.formats import ALL_MARKERS, get_format
from pipeline.schema import GENERATIONS, from_rows
from pipeline.stages.base import Context, stage_meta, timed
from pipeline.text import cut_to_sentence

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
    ]
)


def ensemble_source(generators: list[str], evaluators: list[str]) -> str:
    return "+".join(generators) + "/" + "+".join(evaluators)


def parse_candidate(raw: str, closed: bool, close_tag: str, rule: str = "ours") -> tuple[str, bool]:
    """(text, closes): cut at the generator's close tag, else back to the last sentence end.

    ``rule="study"``: the study's sentence end (pipeline.ensemble_rules.study_cut).
    """
    closes = closed
    text = raw
    if close_tag and close_tag in text:
        text = text[: text.index(close_tag)]
        closes = True
    for m in ALL_MARKERS:  # foreign tags must never enter the shared CoT
        text = text.replace(m, "")
    if not closes:
        if rule == "study":  # [issue10 hook]
            from pipeline.ensemble_rules import study_cut

            text = study_cut(text)
        else:
            text = cut_to_sentence(text)
    # Trailing whitespace goes to the next sentence: a BPE model writes " Then", not "Then" after
    # a context ending in a space, and the score should not include the whitespace.
    return text.rstrip(), closes


class EnsembleStage:
    name = "ensemble"
    requires: tuple[str, ...] = ()
    version = "1"

    # ------------------------------------------------------------------ names
    def paths(self, ctx: Context) -> tuple[Path, Path, dict]:
        ec = ctx.cfg.ensemble
        gens, evs = list(ec.generators), list(ec.evaluators)
        source = ensemble_source(gens, evs)
        # Exactly the fields that change results: not `enabled` (always true here).
        args = {"ensemble": {k: v for k, v in hash_fields(ec).items() if k != "enabled"},
                "models": {n: hash_fields(ctx.cfg.model(n)) for n in dict.fromkeys(gens + evs)},
                "problems": ctx.artifact_hash(ctx.problems_path), "v": self.version}
        return (ctx.store.path("ensemble", source, args), ctx.store.path("ensemble_candidates", source, args), args)

    def run(self, ctx: Context) -> list[Path]:
        with timed(ctx, self.name):
            ctx.problems  # noqa: B018 - load (and hash) the problems first
            cots_path, cand_path, args = self.paths(ctx)
            if not (cots_path.exists() and cand_path.exists()):
                self._run(ctx, cots_path, cand_path, args)
            dest = ctx.run_dir / "ensemble_candidates.arrow"
            tmp = dest.with_name(f".{dest.name}.tmp")
            shutil.copyfile(cand_path, tmp)
            os.replace(tmp, dest)
            return [cots_path]

    # ------------------------------------------------------------------ loop
    def _run(self, ctx: Context, cots_path: Path, cand_path: Path, args: dict) -> None:
        from tqdm.auto import tqdm

        ec = ctx.cfg.ensemble
        problems = ctx.problems.to_pylist()
        parts = cots_path.with_suffix(".parts")
        start, state = self._resume(parts, problems)
        if start < ec.max_steps and not all(s["done"] for s in state.values()):
            # Load every engine of the ensemble at once (a lazy submit would load them one by one).
            # `ensure` (when the pool has it) also stops idle engines that would not fit beside them.
            pool = ctx.pool
            getattr(pool, "ensure", pool.start)(list(dict.fromkeys(list(ec.generators) + list(ec.evaluators))))
        bar = tqdm(total=ec.max_steps, initial=start, desc="ensemble", unit="step",
                   disable=not ctx.cfg.progress, leave=False)
        for step in range(start, ec.max_steps):
            active = [p for p in problems if not state[p["problem_id"]]["done"]]
            if not active:
                break
            rows = self.step(ctx, step, active, state)
            parts.mkdir(parents=True, exist_ok=True)
            write_table(parts / f"step-{step:04d}.arrow", from_rows(rows, CANDIDATES))
            write_text_atomic(parts / f"step-{step:04d}.json", json.dumps({"step": step, "state": state}))
            bar.update(1)
            bar.set_postfix(active=sum(not s["done"] for s in state.values()))
        bar.close()
        for s in state.values():
            if not s["done"]:
                s.update(done=True, reason="max_steps")
        self._finish(ctx, parts, problems, state, cots_path, cand_path, args)

    @staticmethod
    def _resume(parts: Path, problems: list[dict]) -> tuple[int, dict]:
        state = {p["problem_id"]: {"cot": "", "done": False, "reason": None, "steps": 0} for p in problems}
        start = 0
        if parts.exists():
            committed = sorted(int(p.stem.split("-")[1]) for p in parts.glob("step-*.json"))
            for k in committed:
                if k == start and (parts / f"step-{k:04d}.arrow").exists():
                    start = k + 1
            if start:
                saved = json.loads((parts / f"step-{start - 1:04d}.json").read_text())["state"]
                state.update({k: v for k, v in saved.items() if k in state})
            for p in parts.glob("step-*"):  # uncommitted or stale steps are redone
                if int(p.stem.split("-")[1].split(".")[0]) >= start:
                    p.unlink()
        return start, state

    def step(self, ctx: Context, step: int, active: list[dict], state: dict) -> list[dict]:
        """One lockstep ensemble step over ``active`` problems; updates ``state``, returns candidate rows."""
        ec = ctx.cfg.ensemble
        gens, evs = list(ec.generators), list(ec.evaluators)
        source = ensemble_source(gens, evs)
        pool = ctx.pool
        if hasattr(pool, "ensure"):
            # the whole ensemble group resident together (no reloads between steps in waves)
            pool.ensure(list(dict.fromkeys(gens + evs)))
        # 1. one propose call per generator, all submitted before any is awaited
        refs = {}
        for g in gens:
            m = ctx.cfg.model(g)
            reqs = [{"prompt": p["prompt"], "system": p.get("system"),  # [issue10 hook]
                     "cot": state[p["problem_id"]]["cot"], "n": ec.candidates,
                     "max_tokens": ec.max_candidate_tokens,
                     "sampling": _proposal_sampling(m, ec, p["problem_id"], step, g),  # [issue10 hook]
                     "budget": ec.thought_budget if g == gens[0] else None} for p in active]
            refs[g] = pool.submit(g, "propose", reqs)
        props = {g: pool.get(refs[g]) for g in gens}

        # 2. parse, cut and deduplicate candidates per problem
        cands: list[list[dict]] = []  # per active problem: every candidate (row-shaped)
        uniq: list[list[int]] = []  # per active problem: indices into cands of unique valid ones
        for i, p in enumerate(active):
            first = props[gens[0]][i]
            rows: list[dict] = []
            u: list[int] = []
            if first["exhausted"]:
                cands.append(rows)
                uniq.append(u)
                continue
            seen: dict[tuple[str, bool], int] = {}
            for g in gens:
                tag = get_format(ctx.cfg.model(g).thinking_format).think_stop
                res = props[g][i]
                for k, (raw, closed) in enumerate(zip(res["texts"], res["closed"])):
                    text, closes = parse_candidate(raw, closed, tag, ec.sentence_rule)  # [issue10 hook]
                    valid = closes or bool(text.strip())
                    key = (text, closes)
                    dup = valid and key in seen
                    row = {"dataset": p["dataset"], "problem_id": p["problem_id"], "source": source, "step": step,
                           "generator": g, "candidate": k, "raw_text": raw, "text": text, "closes": closes,
                           "valid": valid, "duplicate": dup, "winner": False, "_rep": seen.get(key)}
                    if valid and not dup:
                        seen[key] = len(rows)
                        row["_rep"] = len(rows)
                        u.append(len(rows))
                    rows.append(row)
            cands.append(rows)
            uniq.append(u)

        # 3. one scoring call per evaluator, all submitted before any is awaited
        scored = [i for i in range(len(active)) if uniq[i]]
        mode = "paper" if ec.scoring == "paper" else "cached"
        key = "seq_mean_nll" if ec.scoring == "paper" else "mean_nll"
        reqs = [{"prompt": active[i]["prompt"], "system": active[i].get("system"),  # [issue10 hook]
                 "cot": state[active[i]["problem_id"]]["cot"],
                 "candidates": [cands[i][j]["text"] for j in uniq[i]],
                 "closes": [cands[i][j]["closes"] for j in uniq[i]]} for i in scored]
        srefs = {e: pool.submit(e, "score_texts", reqs, mode) for e in evs} if reqs else {}
        scores = {e: pool.get(r) for e, r in srefs.items()}

        # 4. average over evaluators, pick the minimum, advance the state
        out: list[dict] = []
        for n, i in enumerate(scored):
            rows = cands[i]
            for jj, j in enumerate(uniq[i]):
                per = {e: _finite(scores[e][n][jj].get(key)) for e in evs}
                rows[j]["scores"] = per
                rows[j]["mean_score"] = sum(per.values()) / len(per)
        for i, p in enumerate(active):
            st = state[p["problem_id"]]
            rows = cands[i]
            for r in rows:  # duplicates share their representative's scores
                rep = r.pop("_rep")
                if r["duplicate"] and rep is not None:
                    r["scores"], r["mean_score"] = rows[rep].get("scores"), rows[rep].get("mean_score")
            res0 = props[gens[0]][i]
            if res0["exhausted"]:
                st.update(done=True, reason="context" if res0.get("error") else "budget")
                continue
            best = None
            for j in uniq[i]:
                s = rows[j]["mean_score"]
                if math.isfinite(s) and (best is None or s < rows[best]["mean_score"]):
                    best = j
            if best is None:
                st.update(done=True, reason="context" if uniq[i] else "no_candidate")
                out.extend(rows)
                continue
            w = rows[best]
            w["winner"] = True
            if ec.join == "space":  # [issue10 hook] the study's join
                from pipeline.ensemble_rules import study_join

                st["cot"] = study_join(st["cot"], w["text"])
            else:
                st["cot"] += w["text"]
            st["steps"] += 1
            if w["closes"]:
                st.update(done=True, reason="closed")
            elif step + 1 >= ec.max_steps:
                st.update(done=True, reason="max_steps")
            if st["done"]:
                w["stop_reason"] = st["reason"]
            out.extend(rows)
        return out

    # ---------------------------------------------------------------- finish
    def _finish(self, ctx: Context, parts: Path, problems: list[dict], state: dict, cots_path: Path,
                cand_path: Path, args: dict) -> None:
        ec = ctx.cfg.ensemble
        gens, evs = list(ec.generators), list(ec.evaluators)
        source = ensemble_source(gens, evs)
        shards = sorted(parts.glob("step-*.arrow")) if parts.exists() else []
        tables = [read_table(p).cast(CANDIDATES) for p in shards]
        cand = pa.concat_tables(tables) if tables else CANDIDATES.empty_table()
        meta = stage_meta(ctx, "ensemble", args, {"problems": str(ctx.problems_path)}, list(dict.fromkeys(gens + evs)))
        write_table(cand_path, cand, {**meta, "scoring": ec.scoring})
        rows = []
        for p in problems:
            st = state[p["problem_id"]]
            closed = st["reason"] == "closed"
            rows.append({
                "dataset": p["dataset"], "problem_id": p["problem_id"], "method": "ensemble", "source": source,
                "variant": "full", "sample": 0, "target": source, "cot": st["cot"].strip(), "answer_text": None,
                "gold": p["gold"], "cot_finish_reason": "stop" if closed else "length", "forced_close": not closed,
                "error": ("ensemble: the CoT no longer fits an engine's max_model_len; raise it or lower "
                          "ensemble.thought_budget") if st["reason"] == "context" and not st["cot"].strip() else None,
            })
        write_table(cots_path, from_rows(rows, GENERATIONS),
                    {**meta, "candidates": str(cand_path), "steps": {k: v["steps"] for k, v in state.items()},
                     "stop_reasons": {k: v["reason"] for k, v in state.items()}})
        shutil.rmtree(parts, ignore_errors=True)


def _proposal_sampling(m: Any, ec: Any, problem_id: str, step: int, g: str) -> Sampling:
    """[issue10 hook] a generator's proposal sampling; the study's top_k and per-step reseeding when set."""
    seed = ec.seed if ec.reseed_each_step else request_seed(ec.seed, problem_id, step, g)
    s = Sampling.from_config(m.sampled, seed)
    if ec.top_k is not None:
        s.top_k = int(ec.top_k)
    return s


def _finite(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.inf
    return v if math.isfinite(v) else math.inf


__all__ = ["EnsembleStage", "CANDIDATES", "parse_candidate", "ensemble_source"]
