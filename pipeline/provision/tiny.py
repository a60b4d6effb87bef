"""Build tiny random-weight models locally (no hub): config, weights and a tokenizer trained on the spot.

They are real transformers checkpoints (Llama or Qwen2 architecture, safetensors)
that the real vLLM engine loads, with a chat template matching their thinking
format, so the whole pipeline runs end to end on a CPU in seconds.  Their
outputs are noise: they exercise the machinery, not the science.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.engine.formats import FORMATS

# Chat templates per thinking format, written in the families' own styles.
_TEMPLATES = {
    # Qwen/QwQ style: the template itself opens <think> (tests no-doubling).
    "think_tags": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
    ),
    "openthoughts": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "harmony": (
        "{% for m in messages %}<|start|>{{ m['role'] }}<|message|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|start|>assistant{% endif %}"
    ),
    "plain": (
        "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}Assistant: {% endif %}"
    ),
}
_CHAT_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|start|>",
    "<|message|>",
    "<|channel|>",
    "<|end|>",
    "<|return|>",
]
_CORPUS_WORDS = (
    "what is the answer let me think step by step first we add then multiply subtract result "
    "so the total equals final number patient score calculate value because therefore check "
    "again wait okay hmm plus minus times answer: Answer: reasoning analysis final solution"
).split()

BUILD_VERSION = "1"  # bump when the recipe changes, so cached models rebuild


def _corpus(seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    lines = []
    for _ in range(400):
        words = [rng.choice(_CORPUS_WORDS) for _ in range(rng.randint(4, 14))]
        nums = [str(rng.randint(0, 400)) for _ in range(rng.randint(1, 3))]
        lines.append(" ".join(words + nums) + rng.choice([".", "?", "!", ":"]))
    lines += [f"What is {a} + {b}? Answer: {a + b}" for a in range(0, 60, 7) for b in range(0, 60, 5)]
    return lines


def recipe_hash(spec, thinking_format: str) -> str:
    data = dict(vars(spec)) if not isinstance(spec, dict) else dict(spec)
    data.update(fmt=thinking_format, v=BUILD_VERSION)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def build_tiny(spec, thinking_format: str, dest: str | os.PathLike) -> Path:
    """Build (or reuse) a tiny random model at ``dest``; atomic and idempotent."""
    dest = Path(dest)
    marker = dest / ".crosscot-tiny"
    want = recipe_hash(spec, thinking_format)
    if marker.exists() and marker.read_text().strip() == want:
        return dest
    if thinking_format not in _TEMPLATES:
        raise ValueError(f"no tiny chat template for thinking format {thinking_format!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        _build_into(spec, thinking_format, tmp)
        (tmp / ".crosscot-tiny").write_text(want)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _build_into(spec, thinking_format: str, out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    g = lambda k, d=None: getattr(spec, k, d) if not isinstance(spec, dict) else spec.get(k, d)  # noqa: E731
    specials = list(
        dict.fromkeys(
            _CHAT_SPECIALS + [m for f in FORMATS.names() for m in FORMATS.get(f).markers] + ["<think>", "</think>"]
        )
    )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=int(g("vocab_size", 512)),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(int(g("seed", 0))), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[s for s in specials if s != "<|endoftext|>"],
    )
    fast.chat_template = _TEMPLATES[thinking_format]
    fast.save_pretrained(out)

    family = g("family", "llama")
    common = dict(
        vocab_size=len(fast),
        hidden_size=int(g("hidden_size", 128)),
        intermediate_size=int(g("intermediate_size", 256)),
        num_hidden_layers=int(g("num_layers", 2)),
        num_attention_heads=int(g("num_heads", 2)),
        num_key_value_heads=int(g("num_heads", 2)),
        # Benches may ask for longer contexts (a dict recipe's "max_position"); the configs' recipes keep 4096.
        max_position_embeddings=int(g("max_position", 4096)),
        tie_word_embeddings=True,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.eos_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(int(g("seed", 0)))
    if family == "qwen2":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        model = Qwen2ForCausalLM(Qwen2Config(**common))
    elif family == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        raise ValueError(f"tiny.family={family!r}: use 'llama' or 'qwen2'")
    # Larger-than-default init so random models are not uniform noise: greedy
    # and sampled decoding then differ and CoTs differ between seeds.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.08)
    model.save_pretrained(out, safe_serialization=True)
    from transformers import GenerationConfig

    GenerationConfig(eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id).save_pretrained(out)
