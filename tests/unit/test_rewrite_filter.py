"""The study's answer removal (truncate.filter=rewrite): prompt verbatim, reply parsing, stage wiring."""

from __future__ import annotations

from types import SimpleNamespace

from pipeline.rewrite_filter import REMOVE_ANSWER_PROMPT, rewrite_filter, rewrite_prompt, think_text


class _Pool:
    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def submit(self, name, method, reqs):
        self.calls.append((name, method, reqs))
        return len(self.calls) - 1

    def get(self, ref):
        return [{"answer_text": r} for r in self.replies]


def test_prompt_is_the_studys_and_replies_are_parsed() -> None:
    p = rewrite_prompt("<think>Add 2. The score is 5.</think> {json}")
    assert p.startswith("\nTask: Keep only the hints from the text and remove answer sentences.\n")
    assert p.endswith("Original text:\nAdd 2. The score is 5.\n")
    assert "5. Output only the hints." in REMOVE_ANSWER_PROMPT
    assert think_text("no tags") == "no tags"
    model = SimpleNamespace(name="M", greedy=SimpleNamespace(temperature=0.0, top_p=1.0, top_k=-1, min_p=0.0,
                                                               repetition_penalty=1.0, seed=0))
    pool = _Pool(["<think>keep hints</think>", "Add 2.", None])
    out = rewrite_filter(pool, model, ["a", "b", "c"])
    assert out == [("keep hints", "rewrite"), ("Add 2.", "rewrite"), ("", "rewrite")]
    name, method, reqs = pool.calls[0]
    assert (name, method, len(reqs)) == ("M", "generate", 3) and reqs[0]["cot"] is None
    assert "the answer" not in reqs[0]["prompt"].split("Original text:")[1]  # never told the answer


def test_truncate_stage_runs_the_rewrite_filter(tiny_cfg) -> None:
    from pipeline.artifacts import read_table
    from pipeline.dag import run
    from pipeline.engine.fake import FakePool

    cfg = tiny_cfg("truncate.filter=rewrite", "truncate.filter_model=tiny-think", "stages=[generate,truncate]")
    ctx = run(cfg, pool_factory=lambda: FakePool(cfg))
    rows = read_table(ctx.outputs["truncate"][0]).to_pylist()
    wo = [r for r in rows if r["variant"] == "without_answer"]
    assert wo and all(r["filter"] == "rewrite" for r in wo)
    # The fake engine answers the rewrite prompt with nothing: recorded as such, not as a rule-filter result.
    assert all(r["cot"] or r["error"] == "without_answer variant is empty: the rewrite model returned no text"
               for r in wo)
