"""Engines: the protocols (:mod:`.protocol`), the vLLM engine (:mod:`.vllm_engine`), the Ray actor pool
(:mod:`.ray_pool`), the in-process pool (:mod:`.local`), the fake engine for unit tests (:mod:`.fake`) and the
thinking formats (:mod:`.formats`)."""
