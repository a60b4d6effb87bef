"""Text: sentence splitting (:mod:`.sentences`), the rule-based answer filter (:mod:`.answers`) and the
LLM answer filter (:mod:`.llm_filter`)."""
