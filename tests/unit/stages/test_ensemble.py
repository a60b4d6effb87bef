"""Stage `ensemble`: per-problem streaming, selection, dedup, stopping, drop-outs and resume (FakePool); real runs.

The unit tests drive :class:`EnsembleStage` alone through the streaming runner
(:func:`pipeline.stages.runner.run_stream`) with the fake engines, logging every
per-item engine call.  The slow tests run real vLLM engines: the DAG end to end
in Ray actors (its stored scores checked against the plain-transformers
reference scorer) and the cached scorer against the reference at prefix-cache
block boundaries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest

from pipeline.config import compose
from pipeline.engine.fake import FakePool
from pipeline.engine.protocol import (
    CandidateScore,
    InfoQuery,
    Proposal,
    ProposeRequest,
    ScoreRequest,
    StatsQuery,
)
from pipeline.engine.vllm_engine import request_seed
from pipeline.schema import CANDIDATE_KEY
from pipeline.stages.context import Context
from pipeline.stages.ensemble import EnsembleStage, ensemble_source, parse_candidate
from pipeline.stages.runner import run_stream
from pipeline.store.artifacts import Store, read_provenance, read_table
from pipeline.text.sentences import cut_to_sentence, split_sentences

GENS, EVS = ["tiny-think", "tiny-thought"], ["tiny-harmony"]
SOURCE = ensemble_source(GENS, EVS)
DATA = Path(__file__).resolve().parents[3] / "../shared/data"


def _cfg(tmp: Path, *extra: str):
    return compose(["experiment=demo_ensemble", "dataset.size=4", f"run_dir={tmp}", "progress=false", *extra])


class LogPool(FakePool):
    """FakePool that logs every per-item engine call as (model, op, problem prompt, CoT so far).

    ``reqs`` holds the requests in the same order; ``events`` is the timeline of calls starting
    ("call", i) and returning ("done", i), ``i`` indexing ``log``.
    """

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        self.log: list[tuple[str, str, str, str]] = []
        self.reqs: list = []
        self.events: list[tuple[str, int]] = []

    async def op(self, name, r):
        if isinstance(r, (InfoQuery, StatsQuery)):  # engine queries, not per-item calls
            return await super().op(name, r)
        i = len(self.log)
        self.log.append((name, _method(r), r.prompt, r.cot))
        self.reqs.append(r)
        self.events.append(("call", i))
        res = await super().op(name, r)
        self.events.append(("done", i))
        return res


def _method(r) -> str:
    """The engine method a request runs (its type names it)."""
    return {ProposeRequest: "propose", ScoreRequest: "score_texts"}.get(type(r), "query")


def _ctx(tmp: Path, pool, *extra: str) -> Context:
    cfg = _cfg(tmp, *extra)
    ctx = Context(cfg=cfg, store=Store(tmp / "store"), run_dir=tmp, pool_factory=lambda: pool)
    ctx.problems  # noqa: B018 - loads (or makes) the problems artifact
    return ctx


def _run(tmp: Path, pool=None, *extra: str):
    pool = pool or LogPool(_cfg(tmp, *extra))
    ctx = _ctx(tmp, pool, *extra)
    [path] = run_stream(ctx, [EnsembleStage()])["ensemble"]
    cand = read_table(tmp / "ensemble_candidates.arrow").to_pylist()
    return pool, read_table(path).to_pylist(), cand, read_provenance(path)


def _opened(tmp: Path, *extra: str) -> EnsembleStage:
    """The stage opened on a run dir (artifact paths; its sinks read back any checkpointed shards)."""
    st = EnsembleStage()
    st.open(_ctx(tmp, None, *extra))
    return st


def _prompts(tmp: Path) -> dict[str, str]:
    """prompt -> problem_id of the run's problems artifact."""
    [p] = (tmp / "store").rglob("problems-*.arrow")
    t = read_table(p)
    return dict(zip(t.column("prompt").to_pylist(), t.column("problem_id").to_pylist()))


def _calls(pool: LogPool, prompt: str) -> list[tuple[str, str, str]]:
    """One problem's calls in order: (model, op, CoT so far)."""
    return [(m, op, cot) for m, op, p, cot in pool.log if p == prompt]


def _phases(calls: list[tuple[str, str, str]]) -> list[tuple[str, str, list[str]]]:
    """Consecutive calls with the same (op, CoT) grouped: [(op, CoT, models)]."""
    out: list[tuple[str, str, list[str]]] = []
    for m, op, cot in calls:
        if out and out[-1][0] == op and out[-1][1] == cot:
            out[-1][2].append(m)
        else:
            out.append((op, cot, [m]))
    return out


def _winners(cand: list[dict], pid: str) -> list[dict]:
    return sorted((r for r in cand if r["problem_id"] == pid and r["winner"]), key=lambda r: r["step"])


def test_each_problem_steps_on_its_own(tmp_path: Path) -> None:
    """Per problem: every step is one propose per generator, then one score per evaluator, on the CoT so far.

    The items of one phase are in flight together.  One problem is made to close at its first step: it
    makes no further calls while the others go on.
    """
    evs = ["tiny-harmony", "tiny-thought"]
    extra = f"ensemble.evaluators=[{','.join(evs)}]"
    pool = LogPool(_cfg(tmp_path, extra))
    early = None
    gen = pool.engines["tiny-think"]
    orig_propose = gen.propose

    async def close_early(r):
        out = await orig_propose(r)
        if r.prompt == early:
            out.texts[0], out.closed[0] = " Done at once.</think> tail", False
        return out

    def prefer_closing_early(orig):
        async def f(r):
            out = await orig(r)
            if r.prompt == early:
                out = [dataclasses.replace(o, mean_nll=0.0 if c else 5.0 + o.mean_nll) for o, c in zip(out, r.closes)]
            return out

        return f

    gen.propose = close_early
    for e in evs:
        pool.engines[e].score_texts = prefer_closing_early(pool.engines[e].score_texts)
    ctx = _ctx(tmp_path, pool, extra)
    early = ctx.problem_rows()[2]["prompt"]
    [path] = run_stream(ctx, [EnsembleStage()])["ensemble"]
    rows = read_table(path).to_pylist()
    cand = read_table(tmp_path / "ensemble_candidates.arrow").to_pylist()
    meta = read_provenance(path)
    pids = _prompts(tmp_path)
    pos = {ev: t for t, ev in enumerate(pool.events)}

    for prompt, pid in pids.items():
        ws = _winners(cand, pid)
        want, cot = [], ""
        for w in ws:  # the CoT each step is asked on: the previous steps' winners
            want += [("propose", cot, sorted(GENS)), ("score_texts", cot, sorted(evs))]
            cot += w["text"]
        got = [(op, c, sorted(ms)) for op, c, ms in _phases(_calls(pool, prompt))]
        if meta["stop_reasons"][pid] == "budget":  # the last step found the budget spent: nothing scored
            assert got[-1][0] == "propose" and got[-1][1] == cot
            got = got[:-1]
        assert got == want, pid
        assert meta["steps"][pid] == len(ws) == max(r["step"] for r in cand if r["problem_id"] == pid) + 1
        # Within a phase every item is sent before any comes back (the engines run concurrently), and a
        # phase starts only when the previous one is complete.
        idx = [i for i, e in enumerate(pool.log) if e[2] == prompt]
        phases: list[list[int]] = []
        for i in idx:
            if phases and pool.log[phases[-1][0]][1:] == pool.log[i][1:]:
                phases[-1].append(i)
            else:
                phases.append([i])
        for a, b in zip(phases, phases[1:]):
            assert max(pos[("done", i)] for i in a) < min(pos[("call", i)] for i in b)
        for ph in phases:
            assert max(pos[("call", i)] for i in ph) < min(pos[("done", i)] for i in ph), pid

    # The early problem: one step, closed at the tag; its calls stop there while the others go on.
    epid = pids[early]
    assert meta["steps"][epid] == 1 and meta["stop_reasons"][epid] == "closed"
    [erow] = [r for r in rows if r["problem_id"] == epid]
    assert erow["cot"] == "Done at once." and erow["cot_finish_reason"] == "stop" and not erow["forced_close"]
    assert erow["ensemble_steps"] == 1
    assert len(_calls(pool, early)) == len(GENS) + len(evs)
    last_early = max(i for i, e in enumerate(pool.log) if e[2] == early)
    assert sum(1 for e in pool.log[last_early + 1 :] if e[2] != early) > 0
    assert all(meta["steps"][p] > 1 for p in pids.values() if p != epid)
    # Output rows: one per problem, GENERATIONS-shaped, labelled like the study's settings.
    source = ensemble_source(GENS, evs)
    assert len(rows) == 4 and {r["method"] for r in rows} == {"ensemble"}
    assert {r["source"] for r in rows} == {r["target"] for r in rows} == {source}
    assert all(r["variant"] == "full" and r["sample"] == 0 and r["answer_text"] is None for r in rows)
    assert all(r["gold"] for r in rows)


def test_no_lockstep_a_stuck_problem_does_not_hold_the_others(tmp_path: Path) -> None:
    """While one problem's first scoring call is held, the other problems keep stepping."""
    cfg = _cfg(tmp_path)
    stuck = _ctx(tmp_path, None).problem_rows()[0]["prompt"]
    timed_out: list[bool] = []

    class Holding(LogPool):
        async def op(self, name, r):
            method = _method(r)
            if not hasattr(self, "ahead"):
                self.ahead = asyncio.Event()
            if method == "score_texts" and r.prompt == stuck and r.cot == "":
                try:  # released once another problem has started its third step
                    await asyncio.wait_for(self.ahead.wait(), 5)
                except TimeoutError:
                    timed_out.append(True)
            if (
                method == "propose"
                and r.prompt != stuck
                and sum(1 for m, o, p, _ in self.log if p == r.prompt and o == "propose") >= 2 * len(GENS)
            ):
                self.ahead.set()
            return await super().op(name, r)

    pool, rows, cand, meta = _run(tmp_path, Holding(cfg))
    assert not timed_out  # other problems reached step 2 while `stuck` was still at step 0
    assert len(rows) == 4 and all(r["ensemble_steps"] > 1 for r in rows)
    # The stuck problem was still finished correctly afterwards.
    assert len(_calls(pool, stuck)) >= 2 * (len(GENS) + len(EVS))


def test_min_mean_score_wins_and_scores_are_averaged(tmp_path: Path) -> None:
    extra = "ensemble.evaluators=[tiny-harmony,tiny-think]"
    pool, rows, cand, _ = _run(tmp_path, None, extra)
    by_step: dict = {}
    for r in cand:
        by_step.setdefault((r["problem_id"], r["step"]), []).append(r)
    assert len(by_step) > 4
    for group in by_step.values():
        scored = [r for r in group if r["valid"] and not r["duplicate"]]
        for r in scored:
            sc = dict(r["scores"])
            assert set(sc) == {"tiny-harmony", "tiny-think"}
            assert r["mean_score"] == pytest.approx(sum(sc.values()) / 2)
        [w] = [r for r in group if r["winner"]]
        assert w["mean_score"] == min(r["mean_score"] for r in scored)
    # Each evaluator scored every step of every problem once.
    n_steps = len(by_step)
    assert Counter(m for m, op, _, _ in pool.log if op == "score_texts") == {
        "tiny-harmony": n_steps,
        "tiny-think": n_steps,
    }
    # The CoT is exactly the winners, in step order.
    for row in rows:
        assert row["cot"] == "".join(w["text"] for w in _winners(cand, row["problem_id"])).strip()


def test_duplicates_scored_once(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    pool = LogPool(cfg)
    eng = pool.engines["tiny-thought"]
    orig = eng.propose

    async def same_three(r):  # every sample identical, and identical to nothing else
        o = await orig(r)
        o.texts = [" The same sentence." for _ in o.texts]
        o.closed = [False for _ in o.texts]
        return o

    eng.propose = same_three
    _, _, cand, _ = _run(tmp_path, pool)
    pids = _prompts(tmp_path)
    first_step = [r for r in cand if r["step"] == 0]
    thought = [r for r in first_step if r["generator"] == "tiny-thought"]
    assert sum(r["duplicate"] for r in thought) == 2 * 4  # 3 identical samples per problem -> 2 duplicates
    # Each problem's first scoring item holds each distinct candidate exactly once.
    for (m, op, prompt, cot), r in zip(pool.log, pool.reqs):
        if op == "score_texts" and cot == "":
            unique = [x for x in first_step if x["problem_id"] == pids[prompt] and x["valid"] and not x["duplicate"]]
            assert r.candidates == [x["text"] for x in unique]
            assert len(set(zip(r.candidates, r.closes))) == len(r.candidates)
    for r in (x for x in first_step if x["duplicate"]):
        rep = next(
            x
            for x in first_step
            if x["problem_id"] == r["problem_id"] and x["text"] == r["text"] and not x["duplicate"]
        )
        assert r["mean_score"] == rep["mean_score"] and r["scores"] == rep["scores"] and not r["winner"]


def test_stops_on_close_tag_and_cuts_there(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    pool = LogPool(cfg)
    ev = pool.engines["tiny-harmony"]

    async def prefer_closing(r):
        return [
            CandidateScore(mean_nll=0.5 if c else 2.0 + 0.01 * len(t), n_tokens=3)
            for t, c in zip(r.candidates, r.closes)
        ]

    ev.score_texts = prefer_closing
    _, rows, cand, meta = _run(tmp_path, pool)
    assert set(meta["stop_reasons"].values()) == {"closed"}
    pids = _prompts(tmp_path)
    for r in rows:
        assert "</think>" not in r["cot"] and "trailing" not in r["cot"] and r["cot"].endswith("tiny-think.")
        assert r["cot_finish_reason"] == "stop" and not r["forced_close"]
    # Once closed a problem takes no further part: no candidate rows or calls after its closing step.
    for prompt, pid in pids.items():
        last = max(r["step"] for r in cand if r["problem_id"] == pid)
        [w] = [r for r in cand if r["problem_id"] == pid and r["step"] == last and r["winner"]]
        assert w["closes"] and w["stop_reason"] == "closed"
        n = Counter(op for _, op, _ in _calls(pool, prompt))
        assert n == {"propose": (last + 1) * len(GENS), "score_texts": (last + 1) * len(EVS)}


def test_thought_budget_and_max_steps(tmp_path: Path) -> None:
    # Fake tokens are words; each selected sentence has 4-5 of them.
    pool, rows, cand, meta = _run(tmp_path / "b", None, "ensemble.thought_budget=9", "ensemble.max_steps=50")
    assert set(meta["stop_reasons"].values()) == {"budget"}
    for r in rows:
        assert 9 <= len(r["cot"].split()) < 9 + 6 and r["forced_close"] and r["cot_finish_reason"] == "length"
    for prompt, pid in _prompts(tmp_path / "b").items():  # the spent budget is noticed before any scoring
        assert Counter(op for _, op, _ in _calls(pool, prompt))["score_texts"] == meta["steps"][pid] * len(EVS)
    pool, rows, cand, meta = _run(tmp_path / "m", None, "ensemble.max_steps=2")
    assert set(meta["stop_reasons"].values()) == {"max_steps"} and set(meta["steps"].values()) == {2}
    for prompt in _prompts(tmp_path / "m"):
        n = Counter(op for _, op, _ in _calls(pool, prompt))
        assert n == {"propose": 2 * len(GENS), "score_texts": 2 * len(EVS)}
    assert {r["stop_reason"] for r in cand if r["winner"] and r["step"] == 1} == {"max_steps"}


def test_paper_scoring_ranks_by_whole_sequence(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "ensemble.scoring=paper")
    pool = LogPool(cfg)
    ev = pool.engines["tiny-harmony"]
    modes = []

    async def spy(r):
        modes.append(r.mode)
        return [
            CandidateScore(mean_nll=9.0 - 0.1 * k, seq_mean_nll=1.0 + 0.1 * k, n_tokens=2)
            for k, _ in enumerate(r.candidates)
        ]

    ev.score_texts = spy
    _, _, cand, _ = _run(tmp_path, pool, "ensemble.scoring=paper")
    assert modes and set(modes) == {"paper"}  # whole-sequence scoring, no prefix-cache reads
    winners = [r for r in cand if r["winner"]]
    assert winners
    for w in winners:  # the first unique candidate has the lowest seq_mean_nll
        assert w["mean_score"] == pytest.approx(1.0)


def test_dag_with_ensemble_reports_it(tmp_path: Path) -> None:
    from pipeline.stages import dag

    cfg = _cfg(tmp_path, "dataset.size=3", "generate.methods=[default]")
    dag.run(cfg, pool_factory=lambda: FakePool(cfg))
    assert f"Ensemble {SOURCE}" in (tmp_path / "tables" / "consistency_summary.csv").read_text()
    md = (tmp_path / "report.md").read_text()
    assert "## Sentence-level ensemble" in md and "selected sentences" in md
    [png] = (tmp_path / "plots").glob("ensemble_scores_*.png")
    assert f"plots/{png.name}" in md
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert any(st["stage"] == "ensemble" for st in manifest["stages"])


def test_seeds_per_problem_step_generator(tmp_path: Path) -> None:
    pool, _, cand, _ = _run(tmp_path)
    pids = _prompts(tmp_path)
    seen: list[int] = []
    step: Counter = Counter()
    for (m, op, prompt, _), r in zip(pool.log, pool.reqs):
        if op != "propose":
            continue
        k = step[(prompt, m)]
        step[(prompt, m)] += 1
        s = r.sampling
        assert s.temperature > 0 and r.n == 3 and r.max_candidate_tokens <= 15
        assert s.seed == request_seed(0, pids[prompt], k, m)  # seeded by its identity, not by arrival order
        assert r.thought_budget == (64 if m == GENS[0] else None)  # the budget is in the first generator's tokens
        seen.append(s.seed)
    assert len(seen) > 2 * 4 and len(set(seen)) == len(seen)  # distinct per (problem, step, generator)


def test_generator_overflow_drops_out_of_that_step(tmp_path: Path) -> None:
    """A second generator whose context overflows on a step is recorded there; the step goes on without it."""
    cfg = _cfg(tmp_path)
    pool = LogPool(cfg)
    eng = pool.engines["tiny-thought"]
    orig = eng.propose
    err = "ensemble propose: prompt of 999 tokens + 15 new tokens exceeds max_model_len=1000 of model 'tiny-thought'"
    calls: Counter = Counter()

    async def overflow_at_step_1(r):
        calls[r.prompt] += 1
        if calls[r.prompt] == 2:  # this problem's step 1
            return Proposal(texts=[], closed=[], cot_tokens=999, exhausted=True, error=err)
        return await orig(r)

    eng.propose = overflow_at_step_1
    _, rows, cand, meta = _run(tmp_path, pool)
    pids = _prompts(tmp_path)
    assert "context" not in meta["stop_reasons"].values()
    for prompt, pid in pids.items():
        s1 = [r for r in cand if r["problem_id"] == pid and r["step"] == 1]
        [dropped] = [r for r in s1 if r["generator"] == "tiny-thought"]
        assert dropped["generator_error"] == err and not dropped["valid"] and not dropped["winner"]
        assert dropped["text"] is None and dropped["mean_score"] is None
        think = [r for r in s1 if r["generator"] == "tiny-think"]
        assert len(think) == 3 and all(r["generator_error"] is None for r in think)
        [w] = [r for r in s1 if r["winner"]]
        assert w["generator"] == "tiny-think"
        # Only tiny-think's candidates were scored on that step.
        ws = _winners(cand, pid)
        cot1 = ws[0]["text"]
        [req] = [
            r for (m, op, p, c), r in zip(pool.log, pool.reqs) if op == "score_texts" and p == prompt and c == cot1
        ]
        assert req.candidates == [r["text"] for r in think if r["valid"] and not r["duplicate"]]
        # The generator is back on the next step, and no other step records an error.
        assert meta["steps"][pid] > 2
        assert [r for r in cand if r["problem_id"] == pid and r["step"] == 2 and r["generator"] == "tiny-thought"]
        assert all(r["generator_error"] is None for r in cand if r["problem_id"] == pid and r["step"] != 1)
        [row] = [r for r in rows if r["problem_id"] == pid]
        assert row["error"] is None and row["cot"] == "".join(w["text"] for w in ws).strip()
    # ... and the report says so, per generator and in a loud line.
    from pipeline.report.ensemble import ensemble_section

    _, md = ensemble_section(tmp_path, meta["stop_reasons"] and {SOURCE: meta["stop_reasons"]})
    assert f"**{len(pids)} generator step(s) dropped out**" in md and "max_model_len=1000" in md
    assert "| tiny-thought |" in md and md.count(f"| {len(pids)} |") >= 1


def test_killed_problem_is_redone_alone_on_rerun(tmp_path: Path) -> None:
    """An engine failure kills one problem mid-run; the others are checkpointed; a rerun redoes only it."""
    flush = "stream.flush_rows=1"  # a row reaches disk the moment its problem finishes
    pool_ref, rows_ref, cand_ref, meta_ref = _run(tmp_path / "ref")
    run = tmp_path / "run"
    bad = _ctx(run, None, flush).problem_rows()[1]
    raised: list[str] = []

    class Failing(LogPool):
        async def op(self, name, r):
            if _method(r) == "score_texts" and r.prompt == bad["prompt"] and r.cot:  # its step 1
                raised.append(r.cot)
                raise RuntimeError("engine actor died")
            return await super().op(name, r)

    with pytest.raises(RuntimeError, match="rerun the same command"):
        _run(run, Failing(_cfg(run, flush)), flush)
    assert len(raised) == 1
    st = _opened(run, flush)
    assert not st.cots.artifact.exists() and not st.cands.artifact.exists()
    others = {p for p in meta_ref["steps"] if p != bad["problem_id"]}
    # The finished problems' rows are checkpointed, one shard per finished CoT, equal to the reference rows.
    assert {r["problem_id"] for r in st.cots.rows()} == others
    assert len(list(st.cots.artifact.with_suffix(".parts").glob("*.arrow"))) == len(others)
    assert st.cands.rows() == [r for r in cand_ref if r["problem_id"] in others]
    assert st.cots.rows() == [r for r in rows_ref if r["problem_id"] in others]

    pool, rows, cand, meta = _run(run, None, flush)
    props = [p for _, op, p, _ in pool.log if op == "propose"]
    assert set(props) == {bad["prompt"]}  # only the killed problem is redone ...
    assert len(props) == sum(1 for _, op, p, _ in pool_ref.log if op == "propose" and p == bad["prompt"])
    keys = [tuple(r[k] for k in CANDIDATE_KEY) for r in cand]
    assert len(keys) == len(set(keys))
    assert rows == rows_ref and cand == cand_ref  # ... exactly as an uninterrupted run would have
    assert meta["steps"] == meta_ref["steps"] and meta["stop_reasons"] == meta_ref["stop_reasons"]
    ref = _opened(tmp_path / "ref")
    assert st.cots.artifact.name == ref.cots.artifact.name and st.cands.artifact.name == ref.cands.artifact.name
    assert not list((run / "store").rglob("*.parts"))
    pool, _, _, _ = _run(run, None, flush)  # a finished stage reruns without engine work
    assert pool.log == []


def test_artifact_names_hash_result_fields_only(tmp_path: Path) -> None:
    def paths(*extra):
        st = _opened(tmp_path, *extra)
        return st.cots.artifact, st.cands.artifact

    base = paths()
    assert base[0].name.startswith("ensemble-") and base[1].name.startswith("ensemble_candidates-")
    # placement / UI / checkpointing: same artifact
    assert paths("models.a.max_num_seqs=8", "progress=true", "stream.flush_rows=1", "stream.max_pending=2") == base
    assert paths("ensemble.candidates=2") != base
    assert paths("ensemble.scoring=paper") != base
    assert paths("ensemble.seed=1") != base
    assert paths("models.c.tiny.seed=9") != base  # the evaluator's weights


def test_parse_candidate() -> None:
    assert parse_candidate(" First we add. Then we mul", False, "</think>") == (" First we add.", False)
    assert parse_candidate(" no end at all", False, "</think>") == (" no end at all", False)
    assert parse_candidate(" So 7.</think>\n\nAnswer: 7", False, "</think>") == (" So 7.", True)
    assert parse_candidate(" Done", True, "</think>") == (" Done", True)  # EOS: closes, kept whole
    assert parse_candidate(" a<|channel|>b. Cd", False, "</think>") == (" ab.", False)


def _raw_thinking(per_file: int = 10) -> list[str]:
    root = DATA / "genex-medcalc-outputs"
    if not root.is_dir():  # a data test fails when the data is missing (team rule): never a silent skip
        pytest.fail(f"reference outputs not found at {root.resolve()}; mount the shared data at ../shared/data")
    out = []
    for f in sorted(root.glob("*.jsonl"))[:4]:
        with open(f) as fh:
            for line, _ in zip(fh, range(per_file)):
                t = json.loads(line).get("LLM Raw Thinking")
                if t:
                    out.append(t)
    if not out:
        pytest.fail(f"no `LLM Raw Thinking` text in the reference outputs under {root.resolve()}")
    return out


def test_sentence_splitting_on_real_cot() -> None:
    texts = _raw_thinking()
    abbrev = re.compile(r"(?:\be\.g\.|\bi\.e\.|\bDr\.|\bvs\.|\bapprox\.|\bmg\.)\s*$", re.I)
    for t in texts:
        parts = split_sentences(t)
        assert "".join(parts) == t  # every character kept, in order
        words = len(t.split())
        assert 1 <= len(parts) <= max(1, words // 2)  # sane: no word-level fragmentation
        assert sum(len(p.split()) for p in parts) / len(parts) >= 3
        for a, b in zip(parts, parts[1:]):
            assert not abbrev.search(a), a[-30:]  # abbreviations never end a sentence
        # Decimals survive: every decimal number of the text appears inside one piece.
        for m in re.finditer(r"\d+\.\d+", t):
            assert any(m.group(0) in p for p in parts)
        # Cutting a prefix at a sentence end gives a prefix of the text ending where a sentence ends.
        for k in (len(t) // 3, len(t) // 2):
            c = cut_to_sentence(t[:k])
            assert t.startswith(c)
            assert c == t[:k] or "".join(split_sentences(t[:k])[: len(split_sentences(c))]) == c


# --------------------------------------------------------------------------- real engines


@pytest.mark.slow
def test_end_to_end_ensemble_in_ray_matches_reference(tmp_path: Path, monkeypatch) -> None:
    """The DAG with the ensemble on real tiny engines in Ray actors; stored scores = torch reference."""
    from pipeline.stages import dag

    # Our own local Ray instance, even when a `ray start` cluster runs on this machine.
    monkeypatch.setenv("RAY_ADDRESS", "local")
    from reference.ensemble_ref import ReferenceScorer

    run = tmp_path / "run"
    cfg = compose(
        [
            "experiment=demo_ensemble",
            "dataset.size=3",
            f"run_dir={run}",
            "progress=false",
            "generate.methods=[default]",
            "generate.thought_budget=24",
            "generate.answer_budget=8",
            "transfer.answer_budget=8",
            "transfer.variants=[full]",
            "ensemble.thought_budget=48",
            "ensemble.max_steps=3",
            "ensemble.candidates=2",
            "ray.num_cpus=2",
        ]
    )
    dag.run(cfg)
    summary = (run / "tables" / "consistency_summary.csv").read_text()
    assert f"Ensemble {SOURCE}" in summary
    assert "Sentence-level ensemble" in (run / "report.md").read_text()
    assert list((run / "plots").glob("ensemble_scores_*.png"))
    cand = read_table(run / "ensemble_candidates.arrow").to_pylist()
    assert cand and any(r["winner"] for r in cand)
    # Scores of the first two steps recomputed from scratch with transformers + the kernel dispatcher:
    # context = the evaluator's thinking prompt + CoT so far; a closing candidate gets its close tag.
    prompts = dict(
        zip(
            *(
                read_table(next((run / "store").rglob("problems-*.arrow"))).column(c).to_pylist()
                for c in ("problem_id", "prompt")
            )
        )
    )
    ref = ReferenceScorer(cfg.model("tiny-harmony"))
    close = ref.fmt.close.rstrip()
    checked = 0
    for pid in sorted({r["problem_id"] for r in cand}):
        cot = ""
        for step in range(2):
            rows = [
                r for r in cand if r["problem_id"] == pid and r["step"] == step and r["valid"] and not r["duplicate"]
            ]
            if not rows:
                break
            [got] = ref.score(
                [ref.thinking_prompt(prompts[pid]) + cot], [[r["text"] + (close if r["closes"] else "") for r in rows]]
            )
            for r, g in zip(rows, got):
                assert dict(r["scores"])["tiny-harmony"] == pytest.approx(g["mean_nll"], abs=2e-3, rel=1e-4)
                checked += 1
            cot += next(r["text"] for r in rows if r["winner"])
    assert checked >= 4


@pytest.mark.slow
def test_cached_scores_equal_reference_at_block_boundaries() -> None:
    """In-process engine (no Ray): cached == naive == transformers reference, incl. block-aligned contexts."""
    import dataclasses

    from reference.ensemble_ref import ReferenceScorer

    from pipeline.engine.vllm_engine import ModelEngine

    m = compose(["experiment=demo_tiny", "run_dir=runs/test"]).model("tiny-think")
    m = dataclasses.replace(m, block_size=32, max_model_len=1024)
    eng = ModelEngine(m)
    ref = ReferenceScorer(m)
    # Contexts (prefixes of one growing CoT) whose lengths sit around multiples of the 32-token
    # block: a block-aligned context must still get its candidates' first log-prob.
    words = "let me think step by step first we add then multiply so the total equals 42 check again".split()
    text, contexts = eng.thinking_prompt("What is 12 + 30?"), []
    for i in range(200):
        text += " " + words[i % len(words)]
        if len(eng.encode(text)) % 32 in (31, 0, 1) and len(contexts) < 6:
            contexts.append(text)
    conts = [[" so the total equals 42.", " wait", "\n</think>"] for _ in contexts]
    # Count cache reads of the *scoring* requests only (prompt log-probs): the warm-up requests (each
    # context but its last token) read the cache too, as the contexts share prefixes, and must not count.
    calls = []
    real_run = eng.run

    async def spy(ids, params):
        o = await real_run(ids, params)
        calls.append((tuple(ids), o.num_cached_tokens or 0, params.prompt_logprobs is not None))
        return o

    eng.run = spy
    cached = eng.run_batch([eng.score(c, k, "cached") for c, k in zip(contexts, conts)])
    eng.run = real_run
    # The warm-up cached each context but its last token, in whole 32-token blocks: every scoring request
    # (context + candidate, identified by its exact token ids) must read at least those blocks back.
    want = {}
    for c, ks in zip(contexts, conts):
        cids = eng.encode(c)
        for k in ks:
            want[tuple(cids + eng.encode(k))] = (len(cids) - 1) // 32 * 32
    scoring: dict = {}  # first scoring request per (context + candidate); a request whose cache reached
    for ids, hit, is_lp in calls:  # the context's last token is recomputed without the cache (a second one)
        if is_lp:
            scoring.setdefault(ids, hit)
    assert set(scoring) == set(want), "every candidate of every context was scored"
    assert sum(want.values()) > 0 and all(hit >= want[ids] for ids, hit in scoring.items()), scoring
    assert any(not is_lp for _, _, is_lp in calls), "warm-up requests ran first"
    naive = eng.run_batch([eng.score(c, k, "naive") for c, k in zip(contexts, conts)])
    want = ref.score(contexts, conts)
    paper = eng.run_batch([eng.score(c, k, "paper") for c, k in zip(contexts, conts)])
    want_paper = ref.score(contexts, conts, mode="paper")
    for a, b, c, p, q in zip(cached, naive, want, paper, want_paper):
        for x, y, z, u, v in zip(a, b, c, p, q):
            assert x["n_tokens"] == z["n_tokens"] > 0
            assert x["mean_nll"] == pytest.approx(z["mean_nll"], abs=1e-4)
            assert y["mean_nll"] == pytest.approx(z["mean_nll"], abs=1e-4)
            assert u["seq_mean_nll"] == pytest.approx(v["seq_mean_nll"], abs=1e-4)
            assert all(math.isfinite(t) for t in x["logprobs"])
    assert Counter(len(eng.encode(c)) % 32 for c in contexts)[0] >= 1  # a block-aligned context was covered
