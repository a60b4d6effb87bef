"""``crosscot prompts``: print exactly what a model would be sent, one JSON line per request.

    crosscot prompts experiment=reference_paper --model oss --method default --limit 3

Composes the run config from Hydra overrides, loads the dataset's problems
with its plug-in and builds each request with the functions the engine uses
(:mod:`pipeline.engine.messages`).  No engine starts.  Each line:

* ``problem_id``, ``method``, ``phase`` (``own`` or ``transfer``);
* ``messages`` — the conversation (``[{role, content}]``);
* ``chat_template_kwargs`` — extra chat-template arguments (gpt-oss
  ``reasoning_effort``, ``model_identity``), when there are any;
* ``rendered`` — the prompt text after the model's chat template and
  thinking format, when its tokenizer is on this machine (a transferred CoT
  appears as ``<<COT>>``);
* ``think_budget`` / ``answer_budget`` — the token budgets of the request;
* ``answer_prefix`` — the text forced at the start of the answer, after the
  thinking (e.g. the study's Instruction Induction " The instruction is:"),
  when the problem has one; ``rendered`` of answer requests ends with it;
* ``sampling`` — the decoding of the request (temperature, ``greedy``,
  top_p, top_k, min_p, repetition penalty, seed policy, gpt-oss reasoning
  effort where it applies; :mod:`pipeline.config.study_sampling`), so
  protocols can be compared without an engine; ``answer_sampling`` when the
  answer phase decodes differently.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

HELP = "print the requests (messages, rendered prompt) a model would be sent; no engine starts"
METHODS = ("empty", "default", "sampled", "transfer")
COT_PLACEHOLDER = "<<COT>>"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=reference_paper")
    parser.add_argument("--model", required=True, help="a model's config key (qwq) or short name (QwQ)")
    parser.add_argument("--method", required=True, choices=METHODS, help="which requests")
    parser.add_argument("--limit", type=int, default=None, help="first N problems only")


def fail(msg: str) -> int:
    print(f"crosscot: error: {msg}", file=sys.stderr)
    return 2


def find_model(cfg: Any, key: str) -> Any:
    """The model config with config key or short name ``key`` (case-insensitive)."""
    for k, m in cfg.models.items():
        if key.lower() in (str(k).lower(), m.name.lower()):
            return m
    known = ", ".join(f"{k} ({m.name})" for k, m in cfg.models.items())
    raise LookupError(f"--model {key!r} is not configured; known: {known}")


def load_tokenizer(model: Any) -> Optional[Any]:
    """The model's tokenizer if it is on this machine (never downloads), else None."""
    path = model.tokenizer or model.path
    try:
        from transformers import AutoTokenizer

        rev = None if model.tokenizer else model.revision
        tok = AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=model.trust_remote_code, revision=rev
        )
    except Exception:  # noqa: BLE001 - absent or unreadable: print messages without `rendered`
        return None
    if model.chat_template:
        tok.chat_template = model.chat_template
    return tok


def requests(cfg: Any, model: Any, method: str, problems: list[dict], tok: Optional[Any]) -> list[dict]:
    """One dict per request (see module docstring)."""
    from pipeline.engine.messages import chat_messages, place_cot, render, template_call
    from pipeline.engine.formats import get_format

    fmt = get_format(model.thinking_format)
    phase = "transfer" if method == "transfer" else "own"
    out = []
    for p in problems:
        msgs = chat_messages(p["prompt"], p.get("system"), model.system_prompt)
        _, kwargs = template_call(msgs, model.protocol, phase)
        row: dict[str, Any] = {"problem_id": p["problem_id"], "method": method, "phase": phase, "messages": msgs}
        if kwargs:
            row["chat_template_kwargs"] = kwargs
        if method in ("default", "sampled"):
            row["think_budget"] = cfg.generate.thought_budget
            row["think_budget_plus_prompt"] = model.protocol.thought_budget_plus_prompt
        row["answer_budget"] = cfg.transfer.answer_budget if method == "transfer" else cfg.generate.answer_budget
        if tok is not None:
            gen = render(tok, msgs, model.protocol, phase)
            if method in ("default", "sampled"):
                row["rendered"] = fmt.open_thinking(gen)
            else:
                row["rendered"] = place_cot(
                    fmt, gen, COT_PLACEHOLDER if method == "transfer" else "", model.protocol, p.get("answer_prefix")
                )
        if p.get("answer_prefix"):
            row["answer_prefix"] = p["answer_prefix"]
        row.update(sampling_fields(model, method, kwargs))
        out.append(row)
    return out


GREEDY_SEEDS = "none (greedy)"
SAMPLED_SEEDS = (
    "per request: sha256 of (sampled.seed, problem_id, sample) (the study: one torch stream seeded 42 per process)"
)


def sampling_fields(model: Any, method: str, kwargs: dict) -> dict:
    """``sampling`` (and ``answer_sampling`` when the answer decodes otherwise) of a request."""
    from pipeline.config.study_sampling import sampling_record

    effort = kwargs.get("reasoning_effort")
    if method == "sampled":
        rec = sampling_record(model.sampled, seeds=SAMPLED_SEEDS, reasoning_effort=effort)
        # The own Sampled CoT's answer phase uses the same sampling (one request, both phases).
        return {"sampling": rec, "answer_sampling": rec}
    return {"sampling": sampling_record(model.greedy, seeds=GREEDY_SEEDS, reasoning_effort=effort)}


def run(args: argparse.Namespace) -> int:
    from pipeline.config import ConfigError, compose
    from pipeline.datasets import get_dataset

    try:
        cfg = compose(list(args.overrides))
        model = find_model(cfg, args.model)
    except (ConfigError, LookupError) as e:
        return fail(f"{e}; see `crosscot prompts --help`")
    except Exception as e:  # noqa: BLE001 - Hydra's override/compose errors
        return fail(f"{type(e).__name__}: {str(e).splitlines()[0]}; check the overrides")
    if args.limit is not None and args.limit <= 0:
        return fail(f"--limit {args.limit}: give a positive number of problems")
    if args.method == "sampled" and "sampled" not in cfg.generate.methods:
        return fail("--method sampled: this experiment's generate.methods has no sampled run")
    try:
        problems = get_dataset(cfg.dataset.name).load(cfg.dataset).to_pylist()
    except (ValueError, OSError) as e:
        return fail(f"loading dataset {cfg.dataset.name!r}: {e}")
    problems = problems[: args.limit] if args.limit else problems
    tok = load_tokenizer(model)
    for row in requests(cfg, model, args.method, problems, tok):
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0
