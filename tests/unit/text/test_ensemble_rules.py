"""The study's ensemble rules as pure functions, and the stage's use of them."""

from __future__ import annotations

import math

from pipeline.text.ensemble_rules import perplexity, study_cut, study_join
from pipeline.stages.ensemble import parse_candidate


def test_study_cut_never_ends_after_a_digit_or_short_word() -> None:
    assert study_cut("The score is 5. Then we") == "The score is 5. Then we"  # "5." is no end
    assert study_cut("Add 2 points. Then check") == "Add 2 points."
    assert study_cut("Use the mg. Then") == "Use the mg. Then"  # 1-4 letter word
    assert study_cut("Compute the score. Next, i.e. the") == "Compute the score."
    assert study_cut("no end here") == "no end here"
    assert study_cut("  Done!  ") == "Done!"


def test_join_and_perplexity() -> None:
    assert study_join("So far.", "  Next step. ") == "So far. Next step."
    assert math.isclose(perplexity(math.log(7.0)), 7.0)


def test_stage_uses_the_selected_rule() -> None:
    raw = " The total is 5. So the"
    assert parse_candidate(raw, False, "</think>", "study") == ("The total is 5. So the", False)
    assert parse_candidate(raw, False, "</think>", "ours")[0] == " The total is 5."
