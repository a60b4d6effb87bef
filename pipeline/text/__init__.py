"""Text: sentence splitting (:mod:`.sentences`), the rule-based answer filter (:mod:`.answers`), the
LLM answer filter (:mod:`.llm_filter`), the reference study's answer-removal rewrite (:mod:`.rewrite_filter`)
and its ensemble sentence rules (:mod:`.ensemble_rules`)."""
