"""Thinking formats: how each model family opens and closes its chain of thought.

A format knows how to (1) open the thinking after the chat template's
generation prompt, (2) close it, and (3) place a *given* CoT — the model's own
or another model's — so that the model answers right after it.  Prompts always
start from the model's own chat template; the opening tag is not doubled when
the template already ends with it (QwQ's and DeepSeek-R1-style templates add
``<think>\\n`` themselves).

Registered formats:

* ``think_tags`` — ``<think> … </think>`` (R1, QwQ, DAPO, Nemotron-Research-Reasoning);
* ``openthoughts`` — ``<|begin_of_thought|> … <|end_of_thought|>`` then
  ``<|begin_of_solution|>`` (OpenThinker);
* ``harmony`` — gpt-oss: ``<|channel|>analysis<|message|> … <|end|>`` then
  ``<|start|>assistant<|channel|>final<|message|>``;
* ``plain`` — models without thinking tags: a "Reasoning:" block then "Final answer:".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.registry import Registry


@dataclass(frozen=True)
class ThinkingFormat:
    name: str
    open: str  # appended after the generation prompt to start thinking
    close: str  # appended after the CoT to end thinking
    answer_prefix: str = ""  # appended after `close`, before the answer
    answer_stop: tuple[str, ...] = ()  # extra stop strings for the answer phase
    # Markers that must never survive inside a CoT we place (they would close it early).
    markers: tuple[str, ...] = field(default=())

    @property
    def think_stop(self) -> str:
        """Stop string that ends the thinking phase."""
        return self.close.strip()

    def open_thinking(self, generation_prompt: str) -> str:
        """The prompt with the thinking opened, without doubling an opening tag."""
        tag = self.open.strip()
        if tag and generation_prompt.rstrip().endswith(tag):
            return generation_prompt.rstrip() + self.open[self.open.index(tag) + len(tag) :]
        return generation_prompt + self.open

    def place_cot(self, generation_prompt: str, cot: str) -> str:
        """Prompt whose continuation is the answer that follows ``cot``."""
        return self.open_thinking(generation_prompt) + self.clean(cot) + self.close + self.answer_prefix

    def clean(self, cot: str) -> str:
        """Strip another format's tags (and ours) from a CoT before placing it."""
        text = cot
        for m in ALL_MARKERS:
            text = text.replace(m, " ")
        return re.sub(r"[ \t]{2,}", " ", text).strip()


FORMATS: Registry[ThinkingFormat] = Registry("thinking format")


def _reg(fmt: ThinkingFormat) -> None:
    FORMATS.register(fmt.name, fmt)


_reg(ThinkingFormat("think_tags", open="<think>\n", close="\n</think>\n\n", markers=("<think>", "</think>")))
_reg(
    ThinkingFormat(
        "openthoughts",
        open="<|begin_of_thought|>\n\n",
        close="\n\n<|end_of_thought|>\n\n",
        answer_prefix="<|begin_of_solution|>\n\n",
        answer_stop=("<|end_of_solution|>",),
        markers=("<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>", "<|end_of_solution|>"),
    )
)
_reg(
    ThinkingFormat(
        "harmony",
        open="<|channel|>analysis<|message|>",
        close="<|end|>",
        answer_prefix="<|start|>assistant<|channel|>final<|message|>",
        answer_stop=("<|return|>", "<|end|>"),
        markers=("<|channel|>", "<|message|>", "<|end|>", "<|start|>", "<|return|>"),
    )
)
_reg(
    ThinkingFormat(
        "plain",
        open="Reasoning:\n",
        close="\n\nFinal answer:",
        answer_prefix=" ",
        # Models without a turn-end habit after "Final answer:" tend to start a new
        # "Reasoning:" block; the answer is the paragraph right after the marker.
        answer_stop=("\n\n",),
        # No markers: "Final answer:" is ordinary text that a CoT may legitimately contain.
    )
)

ALL_MARKERS: tuple[str, ...] = tuple(
    sorted({m for n in FORMATS.names() for m in FORMATS.get(n).markers}, key=len, reverse=True)
)

# Special tokens a tokenizer needs so these formats tokenize as single symbols.
SPECIAL_TOKENS: dict[str, tuple[str, ...]] = {n: FORMATS.get(n).markers for n in FORMATS.names()}


def get_format(name: str) -> ThinkingFormat:
    return FORMATS.get(name)
