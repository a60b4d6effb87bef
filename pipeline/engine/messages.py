"""What a model is sent: chat messages, chat-template arguments and the placed CoT — pure functions.

The engine (:class:`pipeline.engine.vllm_engine.ModelEngine`) and ``crosscot prompts``
both build prompts here, so what ``crosscot prompts`` prints is what the
engine sends.  Per model, :class:`pipeline.config.ModelProtocol` (filled from
the run's ``protocol``, see :func:`pipeline.config.apply_protocol`) says:

* ``system_role`` — where a system message goes: a ``system`` turn; the
  gpt-oss chat template's ``model_identity`` argument (``model_identity``:
  the reference study's call in ``llm_inference.py``, which renders only the
  user turn and passes the system text as the model identity); or merged in
  front of the user turn (``merge``);
* ``chat_template_kwargs`` / ``transfer_chat_template_kwargs`` — extra chat
  template arguments for the model's own runs and for answering after
  another model's CoT (the study: gpt-oss ``reasoning_effort`` low / medium);
* ``cot_strings`` — ``format`` places a given CoT with the thinking format's
  own tags and spacing; ``study`` uses the study's literal strings
  (``generate_with_thinking``: ``<think>{cot}</think>``,
  ``<|begin_of_thought|>{cot}<|end_of_thought|><|begin_of_solution|>``,
  harmony channels), with two bug-compatibility flags:
  ``double_think_open`` keeps the study's second ``<think>`` when the chat
  template already opened one (QwQ, R1-distill templates), and
  ``harmony_channels_as_text`` writes gpt-oss's channels as the plain text
  ``assistantanalysis{cot}assistantfinal`` (the study's strings, which the
  tokenizer does not read as special tokens).
"""

from __future__ import annotations

from typing import Any, Optional

from pipeline.engine.formats import ThinkingFormat

PHASES = ("own", "transfer")


def chat_messages(user: str, system: Optional[str], model_system: Optional[str] = None) -> list[dict[str, str]]:
    """The conversation: the problem's system message (else the model's ``system_prompt``) and the user turn."""
    sys_text = system if system is not None else model_system
    msgs = [{"role": "system", "content": sys_text}] if sys_text else []
    return msgs + [{"role": "user", "content": user}]


def template_call(messages: list[dict[str, str]], proto: Any, phase: str = "own") -> tuple[list[dict], dict]:
    """(messages, keyword arguments) for ``tokenizer.apply_chat_template`` under the model's protocol."""
    if phase not in PHASES:
        raise ValueError(f"phase {phase!r}: use one of {PHASES}")
    kwargs = dict(proto.chat_template_kwargs or {})
    if phase == "transfer" and proto.transfer_chat_template_kwargs is not None:
        kwargs = dict(proto.transfer_chat_template_kwargs)
    system = [m for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    if not system or proto.system_role == "system":
        return list(messages), kwargs
    text = "\n\n".join(m["content"] for m in system)
    if proto.system_role == "model_identity":
        return rest, {**kwargs, "model_identity": text}
    if proto.system_role == "merge":
        first = {**rest[0], "content": text + "\n\n" + rest[0]["content"]}
        return [first] + rest[1:], kwargs
    raise ValueError(f"system_role {proto.system_role!r}: use system, model_identity or merge")


def render(tok: Any, messages: list[dict[str, str]], proto: Any, phase: str = "own") -> str:
    """The generation prompt text: the model's chat template applied under its protocol."""
    msgs, kwargs = template_call(messages, proto, phase)
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **kwargs)


def _study_strings(fmt: ThinkingFormat, proto: Any) -> tuple[str, str]:
    """(open, close+answer prefix) literal strings of the study's ``generate_with_thinking``."""
    if fmt.name == "think_tags":
        return "<think>", "</think>"
    if fmt.name == "openthoughts":
        return "<|begin_of_thought|>", "<|end_of_thought|><|begin_of_solution|>"
    if fmt.name == "harmony":
        if proto.harmony_channels_as_text:
            return "assistantanalysis", "assistantfinal"
        return "<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>"
    return fmt.open, fmt.close + fmt.answer_prefix


def place_cot(
    fmt: ThinkingFormat, generation_prompt: str, cot: str, proto: Any, answer_prefix: Optional[str] = None
) -> str:
    """Prompt whose continuation is the answer after ``cot`` (see module docstring for the options).

    ``answer_prefix``: the problem's forced start of the answer (the study's
    Instruction Induction " The instruction is:"), written right after the thinking.
    """
    return _place_cot(fmt, generation_prompt, cot, proto) + (answer_prefix or "")


def _place_cot(fmt: ThinkingFormat, generation_prompt: str, cot: str, proto: Any) -> str:
    if proto.cot_strings == "format":
        return fmt.place_cot(generation_prompt, cot)
    if proto.cot_strings != "study":
        raise ValueError(f"cot_strings {proto.cot_strings!r}: use format or study")
    open_, close = _study_strings(fmt, proto)
    head = generation_prompt
    if not proto.double_think_open and generation_prompt.rstrip().endswith(open_):
        head = generation_prompt.rstrip()[: -len(open_)]  # the template opened it: open once
    return head + open_ + fmt.clean(cot) + close


def thought_budget(budget: int, prompt_tokens: int, max_model_len: int, plus_prompt: bool, reserve: int = 0) -> int:
    """New-token budget of the thinking phase.

    ``plus_prompt``: the study's ``max_new_tokens=min(max_length, prompt + 4096)``
    (``llm_inference.generate``) — the budget grows with the prompt; capped
    here so prompt + budget + ``reserve`` (the answer budget that follows)
    fit the context window.
    """
    want = budget + (prompt_tokens if plus_prompt else 0)
    return max(1, min(want, max_model_len - prompt_tokens - reserve)) if plus_prompt else want
