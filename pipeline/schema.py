"""Arrow schemas shared by every stage, importer and scorer.

Three tables carry the whole study:

* ``problems`` — one row per benchmark item (what a dataset plug-in loads);
* ``cots`` — one row per chain of thought (generated, truncated, imported);
* ``answers`` — one row per (CoT, target model) answer.  The pipeline's own
  generations and the reference study's imported JSONL files both land here,
  so one scoring and report code path serves both.

``scored`` is ``answers`` plus the extracted answer and its correctness.

Keys: a row of ``answers`` is identified by
``(dataset, problem_id, method, source, variant, sample, target)``.
``setting_name`` maps ``(method, source)`` to the label used in every table
("Empty", "Default", "Sampled", "Transfer QwQ", "Ensemble QwQ+DAPO/OSS").
"""

from __future__ import annotations

import pyarrow as pa

# Methods of producing the CoT a target answers after.
METHODS = ("empty", "default", "sampled", "transfer", "ensemble")
# Variants of a CoT: as generated, or with answer statements removed.
# Partial CoTs use "prefix_<fraction>" (e.g. "prefix_0.5").
VARIANTS = ("full", "without_answer")

PROBLEMS = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("problem_id", pa.string(), nullable=False),
        # The user message shown to every model (instructions included).
        pa.field("prompt", pa.string(), nullable=False),
        # A system message sent before it (null: none); e.g. the study's MedCalc zero-shot system turn.
        pa.field("system", pa.string()),
        # Text forced at the start of the answer, after the thinking (null: none); e.g. the study's
        # Instruction Induction " The instruction is:".  The answer_text is its continuation.
        pa.field("answer_prefix", pa.string()),
        # Dataset-specific gold answer, JSON-encoded (see each dataset plug-in).
        pa.field("gold", pa.string(), nullable=False),
        # Free-form extra fields, JSON-encoded (calculator name, task name, ...).
        pa.field("meta", pa.string()),
    ]
)

# The columns that identify a CoT (and, with its target, an answer): the head of both schemas.
_COT_ID = [
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("problem_id", pa.string(), nullable=False),
    pa.field("method", pa.string(), nullable=False),
    # Model (short name) that wrote the CoT; "G1+G2/E" for ensembles.
    pa.field("source", pa.string(), nullable=False),
    pa.field("variant", pa.string(), nullable=False),
    pa.field("sample", pa.int32(), nullable=False),
]

COTS = pa.schema(
    _COT_ID
    + [
        pa.field("cot", pa.string(), nullable=False),
        pa.field("cot_tokens", pa.int32()),
        # "stop": the model closed its thinking; "length": budget hit, closed by us.
        pa.field("finish_reason", pa.string()),
        pa.field("forced_close", pa.bool_()),
        # Truncation audit: the source's final answer still appears in the CoT.
        pa.field("leak", pa.bool_()),
        # Non-null when the row could not be produced; the reason and the fix.
        pa.field("error", pa.string()),
        # without_answer rows: the answer filter used, "rule" | "llm" | "llm->rule" (LLM with
        # rule fallback for at least one window); null for other variants.
        pa.field("filter", pa.string()),
    ]
)

ANSWERS = pa.schema(
    _COT_ID
    + [
        # Model (short name) that answered after the CoT.
        pa.field("target", pa.string(), nullable=False),
        pa.field("cot", pa.string()),
        # Raw text the target produced after its thinking.
        pa.field("answer_text", pa.string()),
        # Extracted answer when known up front (imported files); else filled by scoring.
        pa.field("answer", pa.string()),
        pa.field("prompt_tokens", pa.int32()),
        pa.field("answer_tokens", pa.int32()),
        pa.field("finish_reason", pa.string()),
        pa.field("gold", pa.string(), nullable=False),
        # Stored judgment from an imported study (Result / Target Result); null otherwise.
        pa.field("stored_correct", pa.bool_()),
        pa.field("error", pa.string()),
    ]
)

SCORED = pa.schema(
    list(ANSWERS)
    + [
        pa.field("extracted", pa.string()),
        pa.field("correct", pa.bool_()),
        # Which judge produced `correct`: "ours" or "stored".
        pa.field("judge", pa.string()),
    ]
)

# Output of `generate`: a model's own answers plus how its own CoT was produced.
GENERATIONS = pa.schema(
    list(ANSWERS)
    + [
        pa.field("cot_tokens", pa.int32()),
        pa.field("cot_finish_reason", pa.string()),
        pa.field("forced_close", pa.bool_()),
        # Ensemble CoTs only: steps taken and why the problem stopped (closed, budget, max_steps, ...).
        pa.field("ensemble_steps", pa.int32()),
        pa.field("ensemble_stop", pa.string()),
    ]
)

# What `generate` writes: generations plus each row's engine telemetry (prompt tokens of the thinking
# request and prefix-cache hits of both requests; `prompt_tokens` is the answer request's).
GENERATE_ROWS = pa.schema(
    list(GENERATIONS)
    + [
        pa.field("think_prompt_tokens", pa.int32()),
        pa.field("think_cached_tokens", pa.int32()),
        pa.field("cached_tokens", pa.int32()),
    ]
)

# Columns that record how the engine ran a row (prefix-cache hits depend on what ran before it), not
# what it produced: the only columns allowed to differ between two runs of the same config.
TELEMETRY_COLUMNS = ("think_cached_tokens", "cached_tokens")

# Row keys, one per artifact kind: the columns that identify a row (shards are cut and deduplicated on them).
COT_KEY = tuple(f.name for f in _COT_ID)
ANSWER_KEY = COT_KEY + ("target",)
GENERATION_KEY = ANSWER_KEY  # a generation is a model's answer after its own CoT
ENSEMBLE_KEY = GENERATION_KEY  # an ensemble CoT is a generation row of method "ensemble"
CANDIDATE_KEY = ("dataset", "problem_id", "source", "step", "generator", "candidate")


def pick(result: dict, schema: pa.Schema) -> dict:
    """The entries of an engine result that are columns of ``schema`` (the rest is dropped)."""
    names = set(schema.names)
    return {k: v for k, v in result.items() if k in names}


def setting_name(method: str, source: str) -> str:
    """Label of a (method, source) setting as it appears in tables and plots."""
    if method == "transfer":
        return f"Transfer {source}"
    if method == "ensemble":
        return f"Ensemble {source}"
    if method in ("empty", "default", "sampled"):
        return method.capitalize()
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast/reorder ``table`` to ``schema``; missing nullable columns become nulls.

    Raises a ValueError naming the missing non-nullable column.
    """
    cols = []
    for field in schema:
        if field.name in table.column_names:
            cols.append(table.column(field.name).cast(field.type))
        elif field.nullable:
            cols.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"table lacks required column {field.name!r} (have {table.column_names})")
    return pa.Table.from_arrays(cols, schema=schema)


def from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Build a table of ``schema`` from dicts; absent nullable keys become nulls."""
    if not rows:
        return schema.empty_table()
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(cols, schema=schema)
