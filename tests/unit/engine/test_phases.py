"""The answer's prompt after a CoT, by token ids (a character-level stand-in tokenizer)."""

from __future__ import annotations

from pipeline.engine.phases import Thought, answer_ids, cacheable_tokens, computed_before
from pipeline.engine.protocol import ThinkResult


def _r(cot: str) -> ThinkResult:
    return ThinkResult(cot=cot, cot_tokens=0, finish_reason="stop", forced_close=False)


def enc(s: str) -> list[int]:
    return [ord(c) for c in s]


def dec(ids: list[int]) -> str:
    return "".join(chr(i) for i in ids)


HEAD = "<p>Q<think>\n"
CLOSE = "\n</think>\n\n"


def test_forced_close_appends_close_tag_after_every_generated_id():
    gen = enc("abc  d ")  # budget hit: no close; the cleaned CoT collapsed spaces and stripped
    t = Thought(_r("abc d"), enc(HEAD), gen, closed=False, text="abc  d ")
    text_prompt = HEAD + "abc d" + CLOSE
    ids = answer_ids(t, text_prompt, HEAD + "abc d", "</think>", enc, dec, None)
    assert ids == enc(HEAD) + gen + enc(CLOSE)  # the generated ids verbatim, never re-tokenized
    assert ids[: len(computed_before(t))] == computed_before(t)


def test_model_closed_keeps_its_tag_tokens_and_end_of_turn_is_dropped():
    tag_id = 9000
    t = Thought(_r("xy"), enc(HEAD), enc("xy\n") + [tag_id], closed=True, text="xy\n", stopped=True)
    ids = answer_ids(t, HEAD + "xy" + CLOSE + "A:", HEAD + "xy", "</think>", enc, dec, tag_id)
    assert ids == enc(HEAD) + enc("xy\n") + [tag_id] + enc("\n\nA:")
    eot = Thought(_r("xy"), enc(HEAD), enc("xy") + [2], closed=False, text="xy", stopped=True)
    assert answer_ids(eot, HEAD + "xy" + CLOSE, HEAD + "xy", "</think>", enc, dec, tag_id) == enc(HEAD) + enc(
        "xy"
    ) + enc(CLOSE)


def test_text_path_where_ids_would_lie():
    t = Thought(_r("xy"), enc(HEAD), enc("xy"), closed=False, text="xy")
    # The study's literal strings place the CoT differently from how the model thought.
    assert answer_ids(t, "<p>Q<think><think>xy</think>", HEAD + "xy", "</think>", enc, dec, None) is None
    # A multi-token stop string whose last token ran past the tag.
    over = Thought(_r("xy"), enc(HEAD), enc("xy</think>!"), closed=True, text="xy")
    assert answer_ids(over, HEAD + "xy" + CLOSE, HEAD + "xy", "</think>", enc, dec, None) is None
    exact = Thought(_r("xy"), enc(HEAD), enc("xy</think>"), closed=True, text="xy")
    assert answer_ids(exact, HEAD + "xy" + CLOSE, HEAD + "xy", "</think>", enc, dec, None) == enc(HEAD) + enc(
        "xy</think>"
    ) + enc("\n\n")


def test_cacheable_is_what_the_thinking_request_computed():
    assert cacheable_tokens(list(range(70)), 32) == 64
    assert cacheable_tokens(list(range(31)), 32) == 0
