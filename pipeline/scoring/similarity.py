"""Continuous consistency: similarity of two target models' free-text answers, item by item.

The reference study's Instruction Induction consistency is not "same answer or
both correct" but the BERTScore F1 between the two models' normalized answers
(pipeline.datasets.ii_study), averaged over items and then over the C(5, 2) =
10 model pairs.  Two consistency metrics (registered in
:data:`pipeline.scoring.consistency.METRICS`, so the tables carry them like
``paper`` and ``strict``):

* ``bertscore`` — the study's: F1 of the ``bert-score`` library (no idf, no
  baseline rescaling) with the scorer model the user gives as
  ``dataset.options.bertscore_model`` (the study: ``microsoft/deberta-xlarge-mnli``
  at the library's default layer; a local folder needs ``bertscore_layer``).
  ``bert-score`` comes with the engine extras (``make setup``); elsewhere ``pip install bert-score``.
* ``embedding`` — offline default: cosine of the all-MiniLM-L6-v2 sentence
  embeddings the dataset plug-in already uses (pipeline.datasets.instruction_induction.embed).

A pair with an answer under 3 characters (a missing answer included) scores 0,
as in the study.  Only items of plug-ins with free-text answers
(:class:`pipeline.datasets.protocol.FreeTextAnswers`) count; on other datasets
the metrics have no valid items (NaN), so one metric list serves every dataset.
The answers compared are the ``answer`` column: the study's normalized form
under ``protocol: study`` (see ``InstructionInduction.judge``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Optional, Sequence

import numpy as np

from pipeline.datasets.ii_study import too_short

INSTALL = "pip install bert-score"
STUDY_BERTSCORE_MODEL = "microsoft/deberta-xlarge-mnli"


class SimilarityError(ValueError):
    """A user-fixable problem with a similarity metric (one line: what is wrong; how to fix it)."""


def _free_text(dataset: str) -> bool:
    from pipeline.datasets import shared_dataset
    from pipeline.datasets.protocol import FreeTextAnswers

    return isinstance(shared_dataset(dataset), FreeTextAnswers)


def embedding_scores(a: Sequence[str], b: Sequence[str], model_path: Optional[str] = None) -> np.ndarray:
    """Cosine of MiniLM sentence embeddings of ``a[i]`` and ``b[i]``."""
    from pipeline.datasets.instruction_induction import embed

    if not len(a):
        return np.zeros(0)
    uniq = sorted(set(a) | set(b))
    e = embed(uniq, model_path).numpy()
    ix = {t: i for i, t in enumerate(uniq)}
    return np.einsum("ij,ij->i", e[[ix[t] for t in a]], e[[ix[t] for t in b]])


@lru_cache(maxsize=2)
def _bertscorer(model: str, layer: Optional[int]) -> Any:
    try:
        from bert_score import BERTScorer
    except ImportError:
        raise SimilarityError(
            f"the bertscore metric needs the bert-score package; {INSTALL} (or use the offline embedding metric)"
        ) from None
    try:
        return BERTScorer(model_type=model, num_layers=layer, idf=False, rescale_with_baseline=False)
    except KeyError:
        raise SimilarityError(
            f"bertscore: the bert-score library has no default layer for {model!r}; set "
            "dataset.options.bertscore_layer (a hidden-layer number)"
        ) from None
    except OSError as e:
        raise SimilarityError(
            f"bertscore: cannot load scorer model {model!r} ({str(e).splitlines()[0]}); set "
            f"dataset.options.bertscore_model to a local folder or a downloadable name "
            f"(the study: {STUDY_BERTSCORE_MODEL})"
        ) from None


def bertscore_scores(
    a: Sequence[str], b: Sequence[str], model: Optional[str], layer: Optional[int] = None
) -> np.ndarray:
    """BERTScore F1 of ``a[i]`` against ``b[i]`` (bert-score library, no idf, no rescaling)."""
    if not model:
        raise SimilarityError(
            "the bertscore metric needs a scorer model; set dataset.options.bertscore_model "
            f"(the study: {STUDY_BERTSCORE_MODEL}) or use the embedding metric"
        )
    if not len(a):
        return np.zeros(0)
    _, _, f1 = _bertscorer(model, layer).score(list(a), list(b), batch_size=64)
    return f1.numpy().astype(float)


def _pair_metric(score: Callable[[Sequence[str], Sequence[str], dict], np.ndarray]):
    def metric(m: Any, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        ok = np.fromiter((_free_text(d) for d in m.datasets), dtype=bool, count=len(m.items))
        valid = m.present[:, a] & m.present[:, b] & ok
        xa, xb = m.answer[:, a], m.answer[:, b]
        sim = np.zeros(len(m.items))
        todo = [i for i in np.flatnonzero(valid) if not too_short(xa[i], xb[i])]
        if todo:
            sim[todo] = score([xa[i] for i in todo], [xb[i] for i in todo], m.gold[todo[0]])
        return sim * valid, valid

    return metric


embedding_metric = _pair_metric(lambda a, b, g: embedding_scores(a, b, g.get("embedding_model")))
bertscore_metric = _pair_metric(
    lambda a, b, g: bertscore_scores(a, b, g.get("bertscore_model"), g.get("bertscore_layer"))
)


def check_metrics(metrics: Sequence[str], dataset_options: Optional[dict]) -> None:
    """Raise :class:`SimilarityError` before any engine starts when ``bertscore`` cannot run."""
    if "bertscore" not in metrics:
        return
    try:
        import bert_score  # noqa: F401
    except ImportError:
        raise SimilarityError(
            f"score.metrics has bertscore, which needs the bert-score package; {INSTALL} "
            "(or use the offline embedding metric)"
        ) from None
    if not (dataset_options or {}).get("bertscore_model"):
        raise SimilarityError(
            "score.metrics has bertscore but no scorer model; set dataset.options.bertscore_model"
            f"={STUDY_BERTSCORE_MODEL} (the study's) or a local folder"
        )
