"""The reference study's MedCalc-Bench protocol: its 100 problems and its exact messages.

* Sample — the study's ``run.py`` (``KoyenaPal/genex: MedCalc-Bench/evaluation/run.py``)
  runs ``pd.read_csv("test_data.csv").sample(n=100, random_state=42)``.  For a
  frame without weights pandas draws ``numpy.random.RandomState(42).choice(
  len, size=100, replace=False)``, which is ``RandomState(42).permutation(len)[:100]``:
  :func:`genex_sample` computes exactly that (numpy only) and keeps the
  study's order.  ``GENEX_ROW_NUMBERS`` is the same list as read from the
  study's released outputs; a test checks that both agree.
* Messages — ``zero_shot`` in the same ``run.py``: MedCalc-Bench's zero-shot
  system message and user message, verbatim (including the benchmark's typo
  "procress").  The study sent them as a system turn and a user turn;
  :func:`study_messages` returns that list.
"""

from __future__ import annotations

from typing import Sequence

SAMPLE_SIZE = 100
SAMPLE_SEED = 42

_FORMAT = (
    '{"step_by_step_thinking": str(your_step_by_step_thinking_procress_to_solve_the_question), '
    '"answer": str(short_and_direct_answer_of_the_question)}'
)
STUDY_SYSTEM = (
    "You are a helpful assistant for calculating a score for a given patient note. Please think "
    "step-by-step to solve the question and then generate the required score. Your output should "
    f"only contain a JSON dict formatted as {_FORMAT}."
)
STUDY_USER = (
    "Here is the patient note:\n{note}\n\nHere is the task:\n{question}\n\n"
    "Please directly output the JSON dict formatted as " + _FORMAT.replace("{", "{{").replace("}", "}}") + ":"
)

# Row Numbers of the study's 100 problems, in its order (from its released outputs,
# e.g. openai_gpt-oss-20b_zero_shot_original_low.jsonl).
GENEX_ROW_NUMBERS: tuple[int, ...] = (
    353,
    561,
    875,
    981,
    32,
    449,
    199,
    425,
    108,
    712,
    1021,
    993,
    159,
    378,
    766,
    790,
    615,
    366,
    784,
    933,
    245,
    844,
    389,
    825,
    452,
    60,
    291,
    71,
    345,
    185,
    142,
    979,
    491,
    661,
    102,
    747,
    550,
    307,
    585,
    322,
    855,
    908,
    679,
    651,
    77,
    193,
    87,
    458,
    1042,
    742,
    904,
    310,
    741,
    870,
    360,
    614,
    50,
    200,
    596,
    966,
    952,
    991,
    548,
    1004,
    11,
    515,
    668,
    934,
    414,
    852,
    634,
    940,
    371,
    410,
    446,
    334,
    942,
    211,
    1016,
    520,
    89,
    731,
    351,
    219,
    629,
    278,
    694,
    897,
    214,
    97,
    79,
    701,
    137,
    209,
    558,
    358,
    789,
    1017,
    261,
    1044,
)


def genex_sample(n_rows: int, n: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED) -> list[int]:
    """Positions (0-based, in the study's order) of ``DataFrame.sample(n, random_state=seed)``."""
    import numpy as np

    if n_rows < n:
        raise ValueError(f"the study samples {n} rows but the file has only {n_rows}; use the full test_data.csv")
    return [int(i) for i in np.random.RandomState(seed).permutation(n_rows)[:n]]


def select_sample(rows: Sequence[dict], sample: str | None) -> list[dict]:
    """Rows of ``sample``: ``None``/``"first"`` keeps file order, ``"genex"`` the study's 100 in its order.

    ``rows`` must be every row of the benchmark file, in file order (the
    study's positions refer to it).
    """
    if sample in (None, "first"):
        return list(rows)
    if sample == "genex":
        return [rows[i] for i in genex_sample(len(rows))]
    raise ValueError(f"dataset.options.sample={sample!r} is unknown; use first or genex")


def study_messages(note: str, question: str) -> list[dict[str, str]]:
    """The study's zero-shot messages (system + user), verbatim."""
    return [
        {"role": "system", "content": STUDY_SYSTEM},
        {"role": "user", "content": STUDY_USER.format(note=note, question=question)},
    ]
