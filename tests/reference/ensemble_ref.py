"""Reference scorer for the ensemble: plain torch/transformers, no vLLM, no cache.

Loads the same model the engine serves with ``transformers``, runs one full
forward pass over ``context + candidate`` per candidate (tokenized exactly as
the engine does: context and candidate encoded separately and concatenated),
and turns the logits into the candidate's mean NLL with the project's kernel
dispatcher :func:`kernels.mean_nll_per_sequence` (Triton on GPU, chunked torch
on CPU): all sequences of a call are packed into one ``[N, V]`` logits matrix,
context positions get ``ignore_index`` so only the candidate's own tokens count.
``mode="paper"`` also gives the whole-sequence mean NLL (every position after
the first), the reference study's perplexity choice.

It mirrors :meth:`pipeline.engine.vllm_engine.ModelEngine.score`
(prompt construction is shared verbatim), so tests can check the engine's
cached scores against it.
"""

from __future__ import annotations

from typing import Optional

from pipeline.engine.formats import get_format
from pipeline.engine.vllm_engine import ModelEngine

IGNORE = -100


class ReferenceScorer:
    """Whole-sequence transformers forward passes -> candidate mean NLL."""

    # Prompt construction and the batch API are the engine's own code.
    generation_prompt = ModelEngine.generation_prompt
    thinking_prompt = ModelEngine.thinking_prompt
    encode = ModelEngine.encode
    _fit = ModelEngine._fit

    def __init__(self, model_cfg, device: Optional[str] = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from pipeline.provision.models import ensure_model

        self.cfg = model_cfg
        self.fmt = get_format(model_cfg.thinking_format)
        path = ensure_model(model_cfg)
        self.tok = AutoTokenizer.from_pretrained(model_cfg.tokenizer or path)
        if model_cfg.chat_template:
            self.tok.chat_template = model_cfg.chat_template
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(self.device).eval()

    def score(self, contexts: list[str], continuations: list[list[str]], mode: str = "cached") -> list[list[dict]]:
        """Same contract as ModelEngine.score (``mode`` only matters for ``"paper"``)."""
        return self.score_ids(
            [self.encode(c) for c in contexts], [[self.encode(k) for k in conts] for conts in continuations], mode
        )

    def score_ids(
        self, ctx_ids: list[list[int]], cont_ids: list[list[list[int]]], mode: str = "cached"
    ) -> list[list[dict]]:
        """Same contract as ModelEngine.score_ids."""
        import torch

        from kernels import mean_nll_per_sequence, token_logprobs

        logits_rows, cand_targets, all_targets, meta = [], [], [], []
        for ci, (cids, conts) in enumerate(zip(ctx_ids, cont_ids)):
            for ki, kids in enumerate(conts):
                ids = cids + kids
                with torch.no_grad():
                    out = self.model(torch.tensor([ids], device=self.device)).logits[0, :-1].float()
                tgt = torch.tensor(ids[1:], device=self.device)
                cand = tgt.clone()
                cand[: max(0, len(cids) - 1)] = IGNORE  # position p predicts token p+1
                logits_rows.append(out)
                cand_targets.append(cand)
                all_targets.append(tgt)
                meta.append((ci, ki, len(kids)))
        res: list[list[dict]] = [[{} for _ in conts] for conts in cont_ids]
        if not meta:
            return res
        logits = torch.cat(logits_rows)
        lengths = [r.shape[0] for r in logits_rows]
        cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0).tolist()), dtype=torch.int64)
        cand_t = torch.cat(cand_targets)
        nll = mean_nll_per_sequence(logits, cand_t, cu, ignore_index=IGNORE)
        seq = mean_nll_per_sequence(logits, torch.cat(all_targets), cu) if mode == "paper" else None
        lp = token_logprobs(logits, torch.cat(all_targets))
        for j, (ci, ki, nk) in enumerate(meta):
            b = int(cu[j + 1])
            d = {
                "logprobs": lp[b - nk : b].tolist() if nk else [],
                "n_tokens": nk,
                "mean_nll": float(nll[j]) if nk else float("inf"),
            }
            if seq is not None:
                d["seq_mean_nll"] = float(seq[j])
            res[ci][ki] = d
        return res
