"""Stage `ensemble`: lockstep batching, selection, dedup, stopping and resume (FakePool); one real run.

The unit tests drive :class:`EnsembleStage` with the fake engines.  The slow
tests run real vLLM engines: the DAG end to end in Ray actors (its stored
scores checked against the plain-transformers reference scorer) and the cached
scorer against the reference at prefix-cache block boundaries.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest

from pipeline.config import compose
from pipeline.engine.fake import FakePool
from pipeline.stages.context import Context
from pipeline.stages.ensemble import EnsembleStage, ensemble_source, parse_candidate
from pipeline.store.artifacts import Store, read_provenance, read_table
from pipeline.text.sentences import cut_to_sentence, split_sentences

GENS, EVS = ["tiny-think", "tiny-thought"], ["tiny-harmony"]
SOURCE = ensemble_source(GENS, EVS)
DATA = Path(__file__).resolve().parents[3] / "../shared/data"


def _cfg(tmp: Path, *extra: str):
    return compose(["experiment=demo_ensemble", "dataset.size=4", f"run_dir={tmp}", "progress=false", *extra])


class LogPool(FakePool):
    """FakePool that records every submitted batch: (model, method, n_requests)."""

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        self.log: list[tuple[str, str, int]] = []

    def submit(self, name, method, *args, **kwargs):
        self.log.append((name, method, len(args[0])))
        return super().submit(name, method, *args, **kwargs)


def _run(tmp: Path, pool=None, *extra: str):
    cfg = _cfg(tmp, *extra)
    pool = pool or LogPool(cfg)
    ctx = Context(cfg=cfg, store=Store(tmp / "store"), run_dir=tmp, pool_factory=lambda: pool)
    [path] = EnsembleStage().run(ctx)
    cand = read_table(tmp / "ensemble_candidates.arrow").to_pylist()
    return pool, read_table(path).to_pylist(), cand, read_provenance(path)


def _steps(log):
    """Split the call log into steps: gens' propose calls then evaluators' score_texts calls."""
    steps, cur = [], []
    for entry in log:
        if entry[1] == "propose" and cur and cur[-1][1] == "score_texts":
            steps.append(cur)
            cur = []
        cur.append(entry)
    return steps + ([cur] if cur else [])


def test_lockstep_one_batched_call_per_model_per_step(tmp_path: Path) -> None:
    pool, rows, cand, meta = _run(tmp_path)
    steps = _steps(pool.log)
    assert len(steps) == max(r["step"] for r in cand) + 1
    active_before = 4
    for k, st in enumerate(steps):
        props = [e for e in st if e[1] == "propose"]
        scores = [e for e in st if e[1] == "score_texts"]
        assert [e[0] for e in props] == GENS  # one call per generator, all problems of the step in it
        assert [e[0] for e in scores] == EVS  # one call per evaluator
        n_active = len({r["problem_id"] for r in cand if r["step"] == k})
        assert {e[2] for e in props} == {n_active} and n_active <= active_before
        active_before = n_active
    # Output rows: one per problem, GENERATIONS-shaped, labelled like the study's settings.
    assert len(rows) == 4 and {r["method"] for r in rows} == {"ensemble"}
    assert {r["source"] for r in rows} == {r["target"] for r in rows} == {SOURCE}
    assert all(r["variant"] == "full" and r["sample"] == 0 and r["answer_text"] is None for r in rows)
    assert all(r["gold"] for r in rows)


def test_min_mean_score_wins_and_scores_are_averaged(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "ensemble.evaluators=[tiny-harmony,tiny-think]")
    pool = LogPool(cfg)
    _, rows, cand, _ = _run(tmp_path, pool, "ensemble.evaluators=[tiny-harmony,tiny-think]")
    by_step: dict = {}
    for r in cand:
        by_step.setdefault((r["problem_id"], r["step"]), []).append(r)
    for group in by_step.values():
        scored = [r for r in group if r["valid"] and not r["duplicate"]]
        for r in scored:
            sc = dict(r["scores"])
            assert set(sc) == {"tiny-harmony", "tiny-think"}
            assert r["mean_score"] == pytest.approx(sum(sc.values()) / 2)
        [w] = [r for r in group if r["winner"]]
        assert w["mean_score"] == min(r["mean_score"] for r in scored)
    # The CoT is exactly the winners, in step order.
    for row in rows:
        ws = sorted((r for r in cand if r["problem_id"] == row["problem_id"] and r["winner"]), key=lambda r: r["step"])
        assert row["cot"] == "".join(w["text"] for w in ws).strip()


def test_duplicates_scored_once(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    pool = LogPool(cfg)
    eng = pool.engines["tiny-thought"]
    orig = eng.propose

    def same_three(requests):  # every sample identical, and identical to nothing else
        out = orig(requests)
        for o in out:
            o["texts"] = [" The same sentence." for _ in o["texts"]]
            o["closed"] = [False for _ in o["texts"]]
        return out

    eng.propose = same_three
    _, _, cand, _ = _run(tmp_path, pool)
    first_step = [r for r in cand if r["step"] == 0]
    thought = [r for r in first_step if r["generator"] == "tiny-thought"]
    assert sum(r["duplicate"] for r in thought) == 2 * 4  # 3 identical samples per problem -> 2 duplicates
    unique_first = sum(1 for r in first_step if r["valid"] and not r["duplicate"])
    first_score_call = next(n for m, n in pool.engines["tiny-harmony"].calls if m == "score_texts")
    assert first_score_call == unique_first  # each distinct candidate scored exactly once
    for r in (x for x in first_step if x["duplicate"]):
        rep = next(x for x in first_step if x["problem_id"] == r["problem_id"] and x["text"] == r["text"]
                   and not x["duplicate"])
        assert r["mean_score"] == rep["mean_score"] and r["scores"] == rep["scores"] and not r["winner"]


def test_stops_on_close_tag_and_cuts_there(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    pool = LogPool(cfg)
    ev = pool.engines["tiny-harmony"]

    def prefer_closing(requests, mode="cached"):
        return [[{"mean_nll": 0.5 if c else 2.0 + 0.01 * len(t), "n_tokens": 3}
                 for t, c in zip(r["candidates"], r["closes"])] for r in requests]

    ev.score_texts = prefer_closing
    _, rows, cand, meta = _run(tmp_path, pool)
    assert set(meta["stop_reasons"].values()) == {"closed"}
    for r in rows:
        assert "</think>" not in r["cot"] and "trailing" not in r["cot"] and r["cot"].endswith("tiny-think.")
    # Once closed a problem takes no further part: no candidate rows after its closing step.
    for pid in {r["problem_id"] for r in cand}:
        last = max(r["step"] for r in cand if r["problem_id"] == pid)
        [w] = [r for r in cand if r["problem_id"] == pid and r["step"] == last and r["winner"]]
        assert w["closes"] and w["stop_reason"] == "closed"


def test_thought_budget_and_max_steps(tmp_path: Path) -> None:
    # Fake tokens are words; each selected sentence has 4-5 of them.
    _, rows, cand, meta = _run(tmp_path / "b", None, "ensemble.thought_budget=9", "ensemble.max_steps=50")
    assert set(meta["stop_reasons"].values()) == {"budget"}
    for r in rows:
        assert 9 <= len(r["cot"].split()) < 9 + 6 and r["forced_close"] and r["cot_finish_reason"] == "length"
    pool, rows, cand, meta = _run(tmp_path / "m", None, "ensemble.max_steps=2")
    assert set(meta["stop_reasons"].values()) == {"max_steps"}
    assert len(_steps(pool.log)) == 2 and set(meta["steps"].values()) == {2}


def test_paper_scoring_ranks_by_whole_sequence(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "ensemble.scoring=paper")
    pool = LogPool(cfg)
    ev = pool.engines["tiny-harmony"]
    modes = []

    def spy(requests, mode="cached"):
        modes.append(mode)
        return [[{"mean_nll": 9.0 - 0.1 * k, "seq_mean_nll": 1.0 + 0.1 * k, "n_tokens": 2}
                 for k, _ in enumerate(r["candidates"])] for r in requests]

    ev.score_texts = spy
    _, _, cand, _ = _run(tmp_path, pool, "ensemble.scoring=paper")
    assert set(modes) == {"paper"}  # whole-sequence scoring, no prefix-cache reads
    for w in (r for r in cand if r["winner"]):  # the first unique candidate has the lowest seq_mean_nll
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
    cfg = _cfg(tmp_path)
    pool = LogPool(cfg)
    seen = []
    eng = pool.engines["tiny-think"]
    orig = eng.propose

    def spy(requests):
        seen.extend(r["sampling"].seed for r in requests)
        assert all(r["sampling"].temperature > 0 and r["n"] == 3 and r["max_tokens"] <= 15 for r in requests)
        return orig(requests)

    eng.propose = spy
    _run(tmp_path, pool)
    assert len(set(seen)) == len(seen)  # distinct per (problem, step)


def test_resume_after_kill_no_duplicates(tmp_path: Path) -> None:
    pool_ref, rows_ref, cand_ref, _ = _run(tmp_path / "ref")

    class Killing(LogPool):
        def submit(self, name, method, *args, **kwargs):
            if method == "score_texts" and sum(e[1] == "score_texts" for e in self.log) == 2:
                raise KeyboardInterrupt("killed during step 2")
            return super().submit(name, method, *args, **kwargs)

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(run, Killing(_cfg(run)))
    assert len(list((run / "store").glob("ensemble-*.parts/step-*.json"))) == 2  # steps 0 and 1 committed
    pool, rows, cand, _ = _run(run)
    assert len(_steps(pool.log)) == len(_steps(pool_ref.log)) - 2  # resumed at step 2
    keys = [(r["problem_id"], r["step"], r["generator"], r["candidate"]) for r in cand]
    assert len(keys) == len(set(keys))
    assert rows == rows_ref and cand == cand_ref
    assert not list((run / "store").glob("*.parts"))
    pool, _, _, _ = _run(run)  # a finished stage reruns without engine work
    assert pool.log == []


def test_artifact_names_hash_result_fields_only(tmp_path: Path) -> None:
    st = EnsembleStage()

    def paths(*extra):
        cfg = _cfg(tmp_path, *extra)
        ctx = Context(cfg=cfg, store=Store(tmp_path / "store"), run_dir=tmp_path, pool_factory=lambda: None)
        ctx.problems  # noqa: B018
        return st.paths(ctx)[:2]

    base = paths()
    assert paths("models.a.max_num_seqs=8", "progress=true") == base  # placement / UI: same artifact
    assert paths("ensemble.candidates=2") != base
    assert paths("ensemble.scoring=paper") != base
    assert paths("models.c.tiny.seed=9") != base  # the evaluator's weights


def test_parse_candidate() -> None:
    assert parse_candidate(" First we add. Then we mul", False, "</think>") == (" First we add.", False)
    assert parse_candidate(" no end at all", False, "</think>") == (" no end at all", False)
    assert parse_candidate(" So 7.</think>\n\nAnswer: 7", False, "</think>") == (" So 7.", True)
    assert parse_candidate(" Done", True, "</think>") == (" Done", True)  # EOS: closes, kept whole
    assert parse_candidate(" a<|channel|>b. Cd", False, "</think>") == (" ab.", False)


def _raw_thinking(per_file: int = 10) -> list[str]:
    root = DATA / "genex-medcalc-outputs"
    if not root.is_dir():
        pytest.fail(f"reference outputs not found at {root.resolve()} (shared data not mounted)")
    out = []
    for f in sorted(root.glob("*.jsonl"))[:4]:
        with open(f) as fh:
            for line, _ in zip(fh, range(per_file)):
                t = json.loads(line).get("LLM Raw Thinking")
                if t:
                    out.append(t)
    if not out:
        pytest.fail("no `LLM Raw Thinking` text in the reference outputs")
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
            assert c == t[:k] or "".join(split_sentences(t[:k])[:len(split_sentences(c))]) == c


# --------------------------------------------------------------------------- real engines


@pytest.mark.slow
def test_end_to_end_ensemble_in_ray_matches_reference(tmp_path: Path, monkeypatch) -> None:
    """The DAG with the ensemble on real tiny engines in Ray actors; stored scores = torch reference."""
    from pipeline.stages import dag

    # Our own local Ray instance, even when a `ray start` cluster runs on this machine.
    monkeypatch.setenv("RAY_ADDRESS", "local")
    from reference.ensemble_ref import ReferenceScorer

    run = tmp_path / "run"
    cfg = compose(["experiment=demo_ensemble", "dataset.size=3", f"run_dir={run}", "progress=false",
                   "generate.methods=[default]", "generate.thought_budget=24", "generate.answer_budget=8",
                   "transfer.answer_budget=8", "transfer.variants=[full]", "ensemble.thought_budget=48",
                   "ensemble.max_steps=3", "ensemble.candidates=2", "ray.num_cpus=2"])
    dag.run(cfg)
    summary = (run / "tables" / "consistency_summary.csv").read_text()
    assert f"Ensemble {SOURCE}" in summary
    assert "Sentence-level ensemble" in (run / "report.md").read_text()
    assert list((run / "plots").glob("ensemble_scores_*.png"))
    cand = read_table(run / "ensemble_candidates.arrow").to_pylist()
    assert cand and any(r["winner"] for r in cand)
    # Scores of the first two steps recomputed from scratch with transformers + the kernel dispatcher.
    prompts = dict(zip(*(read_table(next((run / "store").glob("problems-*.arrow"))).column(c).to_pylist()
                         for c in ("problem_id", "prompt"))))
    ref = ReferenceScorer(cfg.model("tiny-harmony"))
    checked = 0
    for pid in sorted({r["problem_id"] for r in cand}):
        cot = ""
        for step in range(2):
            rows = [r for r in cand
                    if r["problem_id"] == pid and r["step"] == step and r["valid"] and not r["duplicate"]]
            if not rows:
                break
            [got] = ref.score_texts([{"prompt": prompts[pid], "cot": cot, "candidates": [r["text"] for r in rows],
                                      "closes": [r["closes"] for r in rows]}])
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
    # Count cache reads of the *scoring* requests only: the warm-up requests (each context but its
    # last token) read the cache too, as the contexts share prefixes, and must not count as hits.
    calls = []
    real_run = eng._run

    def spy(prompts, params):
        outs = real_run(prompts, params)
        calls.append([(len(p), o.num_cached_tokens or 0) for p, o in zip(prompts, outs)])
        return outs

    eng._run = spy
    cached = eng.score(contexts, conts, mode="cached")
    eng._run = real_run
    n_scoring = sum(len(c) for c in conts)
    scoring = [c for c in calls if len(c) == n_scoring]
    assert len(calls) >= 2 and len(calls[0]) == len(contexts), "a warm-up call, then the scoring call"
    assert scoring, "the scoring call (one request per context x candidate) was not seen"
    hits = [cached_n for _, cached_n in scoring[0]]
    # The warm-up cached each context but its last token, in whole 32-token blocks: every scoring request
    # must read at least those blocks back (requests are ordered context by context).
    want_min = [(len(eng.encode(c)) - 1) // 32 * 32 for c, ks in zip(contexts, conts) for _ in ks]
    assert sum(want_min) > 0 and all(h >= w for h, w in zip(hits, want_min)), (hits, want_min)
    naive = eng.score(contexts, conts, mode="naive")
    want = ref.score(contexts, conts)
    paper, want_paper = eng.score(contexts, conts, mode="paper"), ref.score(contexts, conts, mode="paper")
    for a, b, c, p, q in zip(cached, naive, want, paper, want_paper):
        for x, y, z, u, v in zip(a, b, c, p, q):
            assert x["n_tokens"] == z["n_tokens"] > 0
            assert x["mean_nll"] == pytest.approx(z["mean_nll"], abs=1e-4)
            assert y["mean_nll"] == pytest.approx(z["mean_nll"], abs=1e-4)
            assert u["seq_mean_nll"] == pytest.approx(v["seq_mean_nll"], abs=1e-4)
            assert all(math.isfinite(t) for t in x["logprobs"])
    assert Counter(len(eng.encode(c)) % 32 for c in contexts)[0] >= 1  # a block-aligned context was covered
