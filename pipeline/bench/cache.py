"""``crosscot bench cache``: prefix-cache hits of answer requests and of CoT variants across replicas.

Two figures, each measured on the product path and on the path it replaced, in one run, on real
vLLM engines (in-process, so the bench needs no Ray; routing uses the pool's own
:func:`pipeline.engine.routing.pick_replica`):

* **answer_hit** — the answer request after a CoT the engine just wrote (``generate``): cached
  tokens / cacheable tokens, where cacheable is the part of the answer's prompt the engine already
  computed (the thinking prompt and the CoT but its last token), in whole KV blocks.  Product:
  the answer's prompt by token ids (:meth:`ModelEngine._answer_after`); old: the CoT
  detokenized, cleaned and re-tokenized.
* **variant_hit** — the second and later variants of one CoT (full, without answer, prefixes) on a
  target served by 2 replicas: cached tokens / the block-aligned prefix they share with an earlier
  variant.  Product: prefix-affinity routing; old: least loaded.

The last line is exactly ``cache: answer_hit=X.XX variant_hit=Y.YY replicas=2`` (product path).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
from pathlib import Path
from typing import Any

from pipeline.engine.routing import affinity_key, pick_replica

REPLICAS = 2


def problems(n: int, seed: int) -> list[str]:
    """Short arithmetic word problems (distinct per seed, so two sets never share a prompt)."""
    rng = random.Random(seed)
    names = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal"]
    out = []
    for i in range(n):
        a, b, c = rng.randint(10, 99), rng.randint(2, 9), rng.randint(10, 99)
        out.append(
            f"Problem {seed}-{i}: {rng.choice(names)} has {a} apples, buys {b} bags of {c} apples "
            f"each and gives away {rng.randint(1, 9)}. How many apples are left? Think step by step."
        )
    return out


def _lcp(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _counters(e) -> dict:
    return {
        k: e.stats[k]
        for k in (
            "answer_cacheable_tokens",
            "answer_cached_of_cacheable",
            "answer_requests",
            "answer_text_path",
            "answer_cached_tokens",
            "answer_prompt_tokens",
        )
    }


async def _generate(engine, prompts: list[str], m, think: int, answer: int, answer_by: str) -> list[dict]:
    from pipeline.engine.protocol import GenerateRequest, Sampling

    reqs = [
        GenerateRequest(
            prompt=p,
            sampling=Sampling.from_config(m.greedy, 0),
            thought_budget=think,
            answer_budget=answer,
            answer_by=answer_by,
        )
        for p in prompts
    ]
    return [o.row() for o in await asyncio.gather(*(engine.generate(r) for r in reqs))]


def answer_hit(engine, m, n: int, think: int, answer: int) -> dict:
    """Both answer paths on one engine, each on its own problems (no shared prompts)."""
    res: dict[str, Any] = {}
    cots: dict[str, list[tuple[str, str]]] = {}
    for path, seed in (("ids", 1), ("text", 2)):
        before = _counters(engine)
        ps = problems(n, seed)
        outs = asyncio.run(_generate(engine, ps, m, think, answer, path))
        after = _counters(engine)
        d = {k: after[k] - before[k] for k in after}
        res[path] = {**d, "hit": d["answer_cached_of_cacheable"] / max(1, d["answer_cacheable_tokens"])}
        cots[path] = [(p, o["cot"]) for p, o in zip(ps, outs) if o.get("cot")]
    res["cots"] = cots
    return res


def variants(cot: str) -> list[tuple[str, str]]:
    """The CoT's variants as truncate writes them: full, without answer, prefixes."""
    from pipeline.text.answers import remove_answer_statements
    from pipeline.text.sentences import keep_prefix

    out = [("full", cot), ("without_answer", remove_answer_statements(cot, None).strip() or cot)]
    out += [(f"prefix_{f:g}", keep_prefix(cot, f).strip()) for f in (0.25, 0.5, 0.75)]
    return out


def variant_hit(engines: list, m, cots: list[tuple[str, str]], answer: int, routing: str, source: str) -> dict:
    """Every variant of every CoT to a target with ``len(engines)`` replicas, routed by ``routing``."""
    from pipeline.engine.protocol import AnswerRequest, Sampling

    load = [0] * len(engines)
    block = engines[0].block_size
    # Routing as the pool does it when a CoT's variants arrive together (nothing finished yet); each
    # replica then runs its share.  The replicas live in this process, so they run one after the
    # other: two in-process engines stepping at once on the same cores only contend (and, measured,
    # stall); cache hits do not depend on it.
    plan: list[tuple[int, int, str, str, str, AnswerRequest]] = []
    for i, (prompt, cot) in enumerate(cots):
        for var, c in variants(cot):
            if not c:
                continue
            r = AnswerRequest(
                prompt=prompt,
                cot=c,
                sampling=Sampling.from_config(m.greedy, 0),
                answer_budget=answer,
                phase="transfer",
                affinity=(f"p{i}", source, 0),
            )
            k = pick_replica(load, affinity_key(m.name, r) if routing == "affinity" else None, m.max_num_seqs)
            load[k] += 1
            plan.append((k, i, var, prompt, c, r))
    rows: list[tuple[int, str, list[int], int, int]] = [None] * len(plan)  # type: ignore[list-item]
    for k, eng in enumerate(engines):
        mine = [j for j, p in enumerate(plan) if p[0] == k]

        async def go(mine: list[int] = mine, eng: Any = eng) -> list:
            return list(await asyncio.gather(*(eng.answer(plan[j][5]) for j in mine)))

        for j, out in zip(mine, asyncio.run(go())):
            _, i, var, prompt, c, _r = plan[j]
            ids = eng.encode(eng.answer_prompt(prompt, c, None, "transfer"))
            rows[j] = (i, var, ids, int(out.cached_tokens or 0), k)
        print(f"cache bench: {routing}: replica {k} ran {len(mine)} answers", flush=True)
    seen: dict[int, list[list[int]]] = {}
    cacheable = cached = later = 0
    for i, var, ids, hit, _k in rows:  # gather keeps submission order: full first
        prev = seen.setdefault(i, [])
        if prev:
            share = max(_lcp(ids, p) for p in prev)
            c = min(share, len(ids) - 1) // block * block
            cacheable += c
            cached += min(c, hit)
            later += 1
        prev.append(ids)
    return {
        "routing": routing,
        "requests": len(rows),
        "later_variants": later,
        "cacheable_tokens": cacheable,
        "cached_tokens": cached,
        "hit": cached / max(1, cacheable),
        "per_replica": [sum(1 for r in rows if r[4] == k) for k in range(len(engines))],
    }


def run(model_key: str = "smollm2", n: int = 12, think: int = 96, answer: int = 16, block: int | None = 32) -> dict:
    from pipeline.config import compose
    from pipeline.engine.vllm_engine import ModelEngine

    m = None
    for exp in ("demo", "demo_tiny"):  # the real small models, then the tiny random ones
        cfg = compose([f"experiment={exp}", "progress=false"])
        m = next((mc for k, mc in cfg.models.items() if model_key in (k, mc.name, mc.name.replace("-", "_"))), None)
        if m is not None:
            break
    if m is None:
        raise SystemExit(
            f"crosscot: error: no model {model_key!r} in experiment=demo or demo_tiny; "
            "pass --model smollm2, gemma3 or tiny_think"
        )
    if block:
        # GPU engines use 16-token blocks; the CPU build wants multiples of 32 (its default is 128,
        # which hides every difference inside one block of these short prompts).
        m.block_size = block
    print(f"cache bench: loading {m.name} (answer phase)", flush=True)
    e = ModelEngine(m, seed=0)
    block = e.block_size
    a = answer_hit(e, m, n, think, answer)
    cots = a.pop("cots")
    e.loop.close()
    del e
    gc.collect()
    print(
        f"cache bench: answer_hit ids={a['ids']['hit']:.2f} text={a['text']['hit']:.2f}; loading {REPLICAS} replicas",
        flush=True,
    )
    engines = [ModelEngine(m, seed=0) for _ in range(REPLICAS)]
    # Each routing on its own CoTs (and so its own prompts): neither reads the other's cache.
    v_aff = variant_hit(engines, m, cots["ids"], answer, "affinity", m.name)
    v_ll = variant_hit(engines, m, cots["text"], answer, "least_loaded", m.name)
    for x in engines:
        x.loop.close()
    return {
        "model": m.name,
        "n": n,
        "think_tokens": think,
        "answer_tokens": answer,
        "block_size": block,
        "answer": a,
        "variants": {"affinity": v_aff, "least_loaded": v_ll},
        "replicas": REPLICAS,
        "answer_hit": a["ids"]["hit"],
        "answer_hit_old": a["text"]["hit"],
        "variant_hit": v_aff["hit"],
        "variant_hit_old": v_ll["hit"],
    }


def markdown(res: dict) -> str:
    a, v = res["answer"], res["variants"]
    lines = [
        "# Prefix-cache hits: answer after a CoT, and CoT variants across replicas",
        "",
        f"Model {res['model']}, {res['n']} problems per path, thinking budget {res['think_tokens']} tokens, "
        f"KV block {res['block_size']} tokens; {res['replicas']} replicas for the variants. "
        "Hit = cached / cacheable (block-aligned) prompt tokens.",
        "",
        "| figure | path | requests | cacheable tokens | cached | hit |",
        "|---|---|---:|---:|---:|---:|",
        f"| answer after CoT | token ids (product) | {a['ids']['answer_requests']} | "
        f"{a['ids']['answer_cacheable_tokens']} | {a['ids']['answer_cached_of_cacheable']} | {a['ids']['hit']:.2f} |",
        f"| answer after CoT | re-tokenized text (old) | {a['text']['answer_requests']} | "
        f"{a['text']['answer_cacheable_tokens']} | {a['text']['answer_cached_of_cacheable']} | {a['text']['hit']:.2f} |",
    ]
    for name, label in (("affinity", "prefix affinity (product)"), ("least_loaded", "least loaded (old)")):
        r = v[name]
        lines.append(
            f"| later variants | {label}, per replica {r['per_replica']} | {r['later_variants']} | "
            f"{r['cacheable_tokens']} | {r['cached_tokens']} | {r['hit']:.2f} |"
        )
    lines += [
        "",
        f"ids-path answers that fell back to text: {a['ids']['answer_text_path']}",
        "",
        f"cache: answer_hit={res['answer_hit']:.2f} variant_hit={res['variant_hit']:.2f} replicas={res['replicas']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="crosscot bench cache", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="sized from this machine's calibrated speed (at most 12 problems per path), 128-token CoTs",
    )
    ap.add_argument("--model", default="smollm2", help="model config key (conf/model) or short name")
    ap.add_argument("-n", type=int, default=None, help="problems per path (default: sized by --quick, else 32)")
    ap.add_argument("--think", type=int, default=None, help="thinking budget (default 128 quick, 256 full)")
    ap.add_argument("--block", type=int, default=32, help="KV block size in tokens (0 = the engine's default)")
    ap.add_argument("--out", type=Path, default=None, help="write cache.md and cache.json here")
    a = ap.parse_args(argv)
    n, think = a.n or 32, a.think or 256
    if a.quick:
        from pipeline.bench.replay import demo_model_name, quick_size

        think = a.think or 128
        name = demo_model_name(a.model)
        # Four passes over the problems (two answer paths, two routings), three engines start.
        q = quick_size(name, think + 16, shard=6, round_cost=4.0, min_n=6, max_n=12, engines=3, rounds_options=(1,))
        n = a.n or q.n
        print(
            f"cache --quick: {n} problems per path, {think}-token CoTs, {q.sized()}",
            flush=True,
        )
    res = run(a.model, n, think, block=a.block or None)
    md = markdown(res)
    if a.out:
        from pipeline.store.atomic import write_text_atomic

        write_text_atomic(Path(a.out) / "cache.md", md + "\n")
        write_text_atomic(Path(a.out) / "cache.json", json.dumps(res, indent=2))
    print(md)
    return md


if __name__ == "__main__":
    main()
