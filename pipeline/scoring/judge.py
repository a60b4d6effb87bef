"""Judge answers: fill ``extracted``/``correct``/``judge`` to turn ``answers`` into ``scored``.

Two judges:

* ``ours`` — the dataset plug-in extracts the answer (from ``answer`` when the
  file already held an extracted answer, else from ``answer_text``) and checks
  it against the row's gold;
* ``stored`` — the judgment that came with imported data (``stored_correct``).
  A row with no stored judgment counts as wrong only if it carries an
  ``error`` (a failed generation); otherwise the stored judge cannot be used
  and we say so.

``judge_agreement`` compares the two on the same rows; on the reference
study's files it is the evidence that our checker reproduces theirs.

``checker`` picks among a plug-in's checkers (MedCalc: ``lenient`` or
``official``, :class:`pipeline.datasets.protocol.CheckerJudge`); ``None`` is
the plug-in's default.  For such plug-ins a live row's ``answer`` (null
until scoring) is filled with the checker's comparison form — the study's
stored string for ``official``, the normalized answer for ``lenient`` — so
the paper metric compares extracted, normalized answers, never raw text.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import pyarrow as pa

from pipeline.datasets import shared_dataset
from pipeline.schema import SCORED, conform

JUDGES = ("ours", "stored")


@lru_cache(maxsize=200_000)
def _gold(text: str) -> dict[str, Any]:
    return json.loads(text)


def _our_judgments(
    answers: pa.Table, checker: str | None = None
) -> tuple[list[str | None], list[bool], list[str | None]]:
    """(extracted, correct, comparison form of the answer) per row."""
    from pipeline.datasets.protocol import CheckerJudge

    ds = answers.column("dataset").to_pylist()
    ans = answers.column("answer").to_pylist()
    txt = answers.column("answer_text").to_pylist()
    gold = answers.column("gold").to_pylist()
    extracted: list[str | None] = []
    correct: list[bool] = []
    form: list[str | None] = []
    for i, (d, a, t, g) in enumerate(zip(ds, ans, txt, gold)):
        p = shared_dataset(d)
        try:
            gd = _gold(g)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"answers row {i} ({d}): gold is not valid JSON ({err}); re-import or regenerate it"
            ) from err
        if isinstance(p, CheckerJudge):
            if checker is not None and checker not in p.checkers:
                raise ValueError(f"dataset {d!r} has no checker {checker!r}; use one of {list(p.checkers)}")
            j = p.judge(t, a, gd, checker or p.default_checker)
            e, c, f = j.extracted, j.correct, j.answer
        else:
            e = p.extract(a if a is not None else t)
            c = bool(p.check(e, gd)) if e is not None else False
            f = a if a is not None else e
        extracted.append(e)
        correct.append(c)
        form.append(f)
    return extracted, correct, form


def score_answers(answers: pa.Table, judge: str = "ours", checker: str | None = None) -> pa.Table:
    """``answers`` → ``scored``: extracted answer, correctness and which judge decided it.

    ``answer`` is filled with the extracted answer where it was null (the
    schema's contract), so downstream metrics read one column.
    """
    if judge not in JUDGES:
        raise ValueError(f"unknown judge {judge!r}; use one of {JUDGES}")
    extracted, ours, form = _our_judgments(answers, checker)
    if judge == "ours":
        correct = ours
    else:
        stored = answers.column("stored_correct").to_pylist()
        errors = answers.column("error").to_pylist()
        missing = [i for i, (s, e) in enumerate(zip(stored, errors)) if s is None and e is None]
        if missing:
            raise ValueError(
                f"judge 'stored' needs stored_correct on every row, but {len(missing)} row(s) lack it "
                f"(first: row {missing[0]}, problem {answers.column('problem_id')[missing[0]].as_py()}). "
                "Use --judge ours for the pipeline's own generations."
            )
        # A failed generation (error set, no stored judgment) is wrong, as the study counts it.
        correct = [bool(s) if s is not None else False for s in stored]
    answer = [a if a is not None else f for a, f in zip(answers.column("answer").to_pylist(), form)]
    t = answers.set_column(answers.schema.get_field_index("answer"), "answer", pa.array(answer, pa.string()))
    t = t.append_column("extracted", pa.array(extracted, pa.string()))
    t = t.append_column("correct", pa.array(correct, pa.bool_()))
    t = t.append_column("judge", pa.array([judge] * t.num_rows, pa.string()))
    return conform(t, SCORED)


def judge_agreement(answers: pa.Table, checker: str | None = None) -> dict[str, Any]:
    """Agreement of our judge with the stored one on rows that have a stored judgment.

    Returns ``{"agreement", "n", "disagreements"}``; each disagreement is a dict
    with the row key, the answer, our extraction, both judgments and the gold.
    """
    extracted, ours, _ = _our_judgments(answers, checker)
    stored = answers.column("stored_correct").to_pylist()
    cols = {
        c: answers.column(c).to_pylist()
        for c in ("dataset", "problem_id", "method", "source", "variant", "target", "answer", "gold")
    }
    n = 0
    dis: list[dict[str, Any]] = []
    for i, s in enumerate(stored):
        if s is None:
            continue
        n += 1
        if bool(s) != ours[i]:
            dis.append(
                {**{c: v[i] for c, v in cols.items()}, "extracted": extracted[i], "ours": ours[i], "stored": bool(s)}
            )
    return {"agreement": (1 - len(dis) / n) if n else float("nan"), "n": n, "disagreements": dis}
