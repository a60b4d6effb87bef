"""Reference transcription of the study's evaluation notebooks, over its raw JSONL files.

The study's notebooks (``MedCalc-Bench/evaluation/notebooks/`` of its code release)
read the released files directly. This module restates their loops as
literally as possible (field names, ``dict.get`` defaults, ``zip`` by position,
the four error phrases, ``np.std`` population std), with one change: folders
are listed in sorted file-name order instead of ``os.listdir`` order, so the
"first file" rules are deterministic. Tests compare ``pipeline.analyses``
(which works on an imported run) against these functions and the figures
the study printed.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np

LRMS = {
    "openai_gpt-oss-20b": "OSS",
    "BytedTsinghua-SIA_DAPO-Qwen-32B": "DAPO",
    "Qwen_QwQ-32B": "QwQ",
    "open-thoughts_OpenThinker-7B": "OpenT",
    "nvidia_Nemotron-Research-Reasoning-Qwen-1.5B": "NRR",
}
INVALID = ["not defined", "N/A", "does not match", "are not permitted"]
_TR = re.compile(r"(.+)_thoughts_to_(.+)_zero_shot")


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open() if line.strip()]


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).glob("*.jsonl"))


def _lrm_only(name: str) -> bool:
    m = _TR.match(name)
    if m:
        return m[1] in LRMS and m[2] in LRMS
    return any(k in name for k in LRMS)


def _check(dp1: dict, dp2: dict, thoughts_to: bool) -> int | None:
    f = ("Target Answer", "Target Result") if thoughts_to else ("LLM Answer", "Result")
    a1, r1, a2, r2 = dp1.get(f[0], ""), dp1.get(f[1], ""), dp2.get(f[0], ""), dp2.get(f[1], "")
    if any(p in a1 or p in a2 for p in INVALID):
        return None
    return 1 if a1 == a2 or (r1 == "Correct" and r2 == "Correct") else 0


# --- consistency-transfer-thoughts.ipynb (post-training source agreement)
def post_training_agreement(folder: Path) -> dict[str, float]:
    data: dict[tuple[str, str], list[dict]] = {}
    for f in _files(folder):
        m = _TR.match(f)
        if m and "without_answer" not in f:
            data[(m[1], m[2])] = _load(Path(folder) / f)
    groups: dict[str, list[float]] = {"base": [], "post": []}
    for s in sorted({s for s, _ in data}):
        targets = [t for (ss, t) in data if ss == s]
        src = data[(s, targets[0])]
        for t in targets:
            tgt = data[(s, t)]
            c = n = 0
            for i in range(min(len(src), len(tgt))):
                r = _check(
                    {"Target Answer": src[i].get("LLM Answer", ""), "Target Result": src[i].get("Result", "")},
                    tgt[i],
                    True,
                )
                if r is not None:
                    n, c = n + 1, c + r
            groups["post" if "grpo" in s.lower() else "base"].append(c / n)
    return {g: float(np.mean(v)) for g, v in groups.items()}


# --- self-consistency.ipynb
def _is_correct(dp: dict, prefix: str = "") -> bool | None:
    result = dp.get(f"{prefix}Result", "")
    answer = dp.get(f"{prefix}Answer" if prefix else "LLM Answer", "")
    return None if any(m in str(answer) for m in INVALID) else result == "Correct"


def self_consistency(folder: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for key, short in LRMS.items():
        d = Path(folder) / f"{key}_thoughts_to_{key}_zero_shot_full.jsonl"
        s = Path(folder) / f"{key}_zero_shot_with_sampling.jsonl"
        match = total = 0
        for a, b in zip(_load(d), _load(s)):
            ca, cb = _is_correct(a, "Target "), _is_correct(b)
            if ca is None or cb is None:
                continue
            total += 1
            if (ca and cb) or (not ca and not cb and a.get("Target Answer", "") == b.get("LLM Answer", "")):
                match += 1
        out[short] = (match, total)
    return out


# --- rebuttal-ablation.ipynb
CLASSES = ("wrong_to_correct", "correct_to_wrong", "correct_to_correct", "wrong_to_wrong_same", "wrong_to_wrong_diff")


def _settings_of(name: str) -> list[str]:
    m = _TR.match(name)
    if m:
        s = f"Transfer {LRMS[m[1]]}"
        return ["Default", s] if m[1] == m[2] else [s]
    g = re.search(r"_gen_(.+)_eval_(.+)\.json", name)
    if g:
        return [f"Ensemble {g[1]}/{g[2]}"]
    if "_with_sampling" in name:
        return ["Sampled"]
    return []


def _target_of(name: str) -> str:
    m = _TR.match(name)
    return m[2] if m else next(k for k in LRMS if k in name)


def cot_effect(folder: Path) -> dict[str, dict[str, int]]:
    folder = Path(folder)
    out: dict[str, dict[str, int]] = {}
    for f in _files(folder):
        if "without_answer" in f or not _lrm_only(f):
            continue
        base = f"{_target_of(f)}_zero_shot_empty.jsonl"
        for setting in _settings_of(f):
            c = out.setdefault(setting, {k: 0 for k in (*CLASSES, "n")})
            for e, d in zip(_load(folder / base), _load(folder / f)):
                has = "Target Result" in d
                ce, cd = _is_correct(e), _is_correct(d, "Target " if has else "")
                if ce is None or cd is None:
                    continue
                ae, ad = e.get("LLM Answer", ""), d.get("Target Answer" if has else "LLM Answer", "")
                c["n"] += 1
                k = (
                    "wrong_to_correct"
                    if not ce and cd
                    else "correct_to_wrong"
                    if ce and not cd
                    else "correct_to_correct"
                    if ce and cd
                    else "wrong_to_wrong_same"
                    if ae == ad
                    else "wrong_to_wrong_diff"
                )
                c[k] += 1
    return out


# --- consistency_all.ipynb (cell "detailed": consistent wrong)
def _variation(name: str) -> str | None:
    suffix = "without_answer" if "without_answer" in name else "full"
    if name.endswith("_zero_shot_empty.jsonl"):
        return "Empty/full"
    if name.endswith(("_zero_shot_original.jsonl", "_zero_shot_original_low.jsonl")):
        return f"Default/{suffix}"
    if "_with_sampling" in name:
        return f"Sampled/{suffix}"
    m = _TR.match(name)
    if m:
        if m[1] == m[2] and suffix == "without_answer":
            return None  # also "Default/without_answer"; handled below
        return f"Transfer {LRMS[m[1]]}/{suffix}"
    g = re.search(r"_gen_(.+)_eval_(.+)\.json", name)
    return f"Ensemble {g[1]}/{g[2]}/{suffix}" if g else None


def agreement_breakdown(folder: Path) -> dict[str, dict[str, tuple[float, float, int]]]:
    folder = Path(folder)
    groups: dict[str, list[str]] = {}
    for f in _files(folder):
        if not _lrm_only(f):
            continue
        v = _variation(f)
        m = _TR.match(f)
        vs = [v] if v else []
        if m and m[1] == m[2] and "without_answer" in f:
            vs = ["Default/without_answer", f"Transfer {LRMS[m[1]]}/without_answer"]
        for x in vs:
            groups.setdefault(x, []).append(f)
    out = {}
    for g, files in groups.items():
        tt = "_thoughts_to_" in files[0]
        f0 = ("Target Answer", "Target Result") if tt else ("LLM Answer", "Result")
        shares: dict[str, list[float]] = {}
        for a, b in itertools.combinations(files, 2):
            counts: dict[str, int] = {}
            total = 0
            for d1, d2 in zip(_load(folder / a), _load(folder / b)):
                a1, r1, a2, r2 = d1.get(f0[0], ""), d1.get(f0[1], ""), d2.get(f0[0], ""), d2.get(f0[1], "")
                if any(p in a1 or p in a2 for p in INVALID):
                    continue
                bc, bi, same = r1 == "Correct" and r2 == "Correct", r1 == "Incorrect" and r2 == "Incorrect", a1 == a2
                k = (
                    "consistent_correct"
                    if same and bc
                    else "consistent_wrong"
                    if same and bi
                    else "consistent_mixed"
                    if same
                    else "inconsistent"
                )
                total += 1
                counts[k] = counts.get(k, 0) + 1
            for k, c in counts.items():
                shares.setdefault(k, []).append(c / total)
        out[g] = {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in shares.items()}
    return out


# --- model_involvement.ipynb (transfer part)
def creator_involvement(
    folder: Path, missing_as_disagreement: bool = True
) -> dict[str, tuple[float, float, int, float, float, int]]:
    """As released, the notebook scores a row whose Target fields are missing as 0 before its drop rule
    (``missing_as_disagreement``); False reads them with ``.get(..., "")`` as the other notebooks do."""
    folder = Path(folder)
    info = {}
    for f in _files(folder):
        m = _TR.match(f)
        if m and m[1] in LRMS and m[2] in LRMS:
            info[f] = (m[1], m[2], "without_answer" if "without_answer" in f else "full")
    res: dict[str, list[tuple[bool, float]]] = {}
    for f1, f2 in itertools.combinations(info, 2):
        s1, t1, v1 = info[f1]
        s2, t2, v2 = info[f2]
        if v1 != v2 or s1 != s2:
            continue
        c = n = 0
        for d1, d2 in zip(_load(folder / f1), _load(folder / f2)):
            if missing_as_disagreement and any(
                k not in d for d in (d1, d2) for k in ("Target Answer", "Target Result")
            ):
                r: int | None = 0
            else:
                r = _check(d1, d2, True)
            if r is not None:
                n, c = n + 1, c + r
        res.setdefault(v1, []).append((t1 == s1 or t2 == s1, c / n))
    out = {}
    for v, rows in res.items():
        inv = [x for i, x in rows if i]
        notinv = [x for i, x in rows if not i]
        out[v] = (
            float(np.mean(inv)),
            float(np.std(inv) / np.sqrt(len(inv))),
            len(inv),
            float(np.mean(notinv)),
            float(np.std(notinv) / np.sqrt(len(notinv))),
            len(notinv),
        )
    return out


# --- figure_1.ipynb
def pooled_consistency(folder: Path) -> dict[str, tuple[float, float, int]]:
    folder = Path(folder)
    groups: dict[str, list[str]] = {}
    for f in _files(folder):
        if not _lrm_only(f):
            continue
        m = _TR.match(f)
        if f.endswith("_zero_shot_empty.jsonl"):
            vs = ["Empty"]
        elif "_with_sampling" in f:
            vs = ["Sampled"]
        elif m:
            vs = (
                ["Default", f"Transfer {LRMS[m[1]]}"]
                if m[1] == m[2] and "without_answer" in f
                else [f"Transfer {LRMS[m[1]]}"]
            )
        else:
            g = re.search(r"_gen_(.+)_eval_(.+)\.json", f)
            vs = [f"Ensemble {g[1]}/{g[2]}"] if g else []
        for x in vs:
            groups.setdefault(x, []).append(f)
    pooled: dict[str, list[float]] = {}
    for g, files in groups.items():
        if len(files) < 2:
            continue
        tt = "_thoughts_to_" in files[0]
        rates = []
        for a, b in itertools.combinations(files, 2):
            c = n = 0
            for d1, d2 in zip(_load(folder / a), _load(folder / b)):
                r = _check(d1, d2, tt)
                if r is not None:
                    n, c = n + 1, c + r
            rates.append(c / n)
        key = "Transfer" if g.startswith("Transfer") else "Ensemble" if g.startswith("Ensemble") else g
        pooled.setdefault(key, []).extend(rates)
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in pooled.items()}
