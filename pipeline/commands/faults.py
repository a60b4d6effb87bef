"""``crosscot faults``: fault figures.  Runs the corpus of bad inputs (``tests/data/bad_inputs/``)
through the real CLI, one subprocess each, and counts those answered the way every user error must
be: exit 2, the *whole* stderr one line ``crosscot: error: <what>; <fix>`` holding the message the
case expects, no traceback, and every pre-existing file the case names unchanged (byte for byte).

A case (``cases.json``) is ``{"name", "category", "argv", "expect"}`` plus optional ``setup``:
``copy`` (corpus file -> temp path), ``files`` (path -> text), ``dirs``, ``before`` (commands that
must succeed first, e.g. an import that makes the run a later command must not replace),
``then_copy`` (copies after ``before``), ``truncate`` (path -> bytes kept), ``env``; and ``checksum`` (paths under the temp folder whose
bytes must survive the command).  Results are reported per category.

The other half of the figures, kills at random points of real runs (driver and engines: kills
survived, lost rows, duplicated rows, identical-table rate), plugs in at :func:`kill_point_figures`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

HELP = "fault figures: run the bad-input corpus through the CLI (and, when plugged in, kill points)"
REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "bad_inputs"
RUN = ["run", "experiment=demo_tiny", "run_dir={tmp}/run", "progress=false"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="folder with cases.json (default: %(default)s)")
    parser.add_argument("--engines", action="store_true", help="also run the cases that start real engines")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--only", default=None, help="run only cases whose name contains this")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the per-case results here")
    parser.add_argument("--force", action="store_true", help="replace the --json file if it exists (else an error)")
    parser.add_argument(
        "--kills",
        type=int,
        default=0,
        metavar="N",
        help="also N random kill points (driver or engine, real engines; about a minute each)",
    )
    parser.add_argument(
        "--kills-dir", type=Path, default=Path("runs/faults/kills"), help="work folder of the kill points"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points' kinds and delays")


def load_cases(corpus: Path) -> list[dict]:
    return json.loads((corpus / "cases.json").read_text())["cases"]


def _expand(argv: list[str], corpus: Path, tmp: Path) -> list[str]:
    out: list[str] = []
    for a in argv:
        out += RUN if a == "RUN" else [a]
    return [a.replace("{dir}", str(corpus)).replace("{tmp}", str(tmp)) for a in out]


def _checksums(tmp: Path, paths: list[str]) -> dict[str, str]:
    import hashlib

    out = {}
    for rel in paths:
        for p in sorted(tmp.glob(rel)) if any(c in rel for c in "*?[") else [tmp / rel]:
            out[str(p.relative_to(tmp))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "absent"
    return out


def _setup(case: dict, corpus: Path, tmp: Path, env: dict, timeout_s: float) -> None:
    """Build the case's starting point in ``tmp`` (see the module docstring)."""
    setup = case.get("setup") or {}
    for d in setup.get("dirs", []):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    for src, dst in {**(case.get("copy") or {}), **(setup.get("copy") or {})}.items():
        (tmp / dst).parent.mkdir(parents=True, exist_ok=True)
        if (corpus / src).is_dir():
            shutil.copytree(corpus / src, tmp / dst)
        else:
            shutil.copyfile(corpus / src, tmp / dst)
    for rel, text in (setup.get("files") or {}).items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    for argv in setup.get("before", []):
        r = subprocess.run(
            [sys.executable, "-m", "pipeline", *_expand(argv, corpus, tmp)],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if r.returncode != 0:
            raise RuntimeError(f"setup command {argv} failed: {r.stderr.strip()[-300:]}")
    for src, dst in (setup.get("then_copy") or {}).items():  # over what the `before` commands made
        shutil.copyfile(corpus / src, tmp / dst)
    for rel, keep in (setup.get("truncate") or {}).items():
        for p in sorted(tmp.glob(rel)):
            data = p.read_bytes()
            p.write_bytes(data[:keep] if keep >= 0 else data[: len(data) // 2])


def run_case(case: dict, corpus: Path, timeout_s: float = 300) -> dict:
    """Run one bad input through ``python -m pipeline``; classify the answer.

    A case with ``server`` (FaultServer keywords) runs against a fault-injecting OpenAI-compatible
    server on a free local port, named ``{server}`` in its argv; ``expected`` is a substring its
    error line must contain."""
    if case.get("server") is not None:
        from pipeline.engine.fault_server import FaultServer

        with FaultServer(**case["server"]) as srv:
            argv = [a.replace("{server}", srv.base_url) for a in case["argv"]]
            return _expect(_run_case({**case, "argv": argv}, corpus, timeout_s), case)
    return _expect(_run_case(case, corpus, timeout_s), case)


def _expect(res: dict, case: dict) -> dict:
    want = case.get("expected")
    if want and want not in res["message"]:
        res = {**res, "clear": False, "problems": [*res["problems"], f"message lacks {want!r}"]}
    return res


def _run_case(case: dict, corpus: Path, timeout_s: float) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="crosscot-fault-"))
    try:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "RAY_USAGE_STATS_ENABLED": "0",
            "CROSSCOT_CACHE": str(tmp / "cache"),
            "CROSSCOT_RAY_CONNECT_TIMEOUT_S": "5",
        }
        env.pop("HYDRA_FULL_ERROR", None)
        env.pop("RAY_ADDRESS", None)
        env.update({k: v.replace("{tmp}", str(tmp)) for k, v in (case.get("env") or {}).items()})
        try:
            _setup(case, corpus, tmp, env, timeout_s)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:  # a broken case, not a clear answer
            return {
                "name": case["name"],
                "category": case.get("category", "other"),
                "argv": case["argv"],
                "seconds": 0.0,
                "checksummed": 0,
                "rc": -1,
                "message": "",
                "clear": False,
                "problems": [f"case setup failed: {' '.join(str(e).split())[:300]}"],
            }
        argv = _expand(case["argv"], corpus, tmp)
        if argv[0] == "run" and "-m" in argv:
            argv += [f"hydra.sweep.dir={tmp}/sweep"]
        before = _checksums(tmp, case.get("checksum") or [])
        t0 = time.time()
        r = subprocess.run(
            [sys.executable, "-m", "pipeline", *argv],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        after = _checksums(tmp, case.get("checksum") or [])
        changed = sorted(k for k in before if before[k] != after.get(k))
        res = classify(r.returncode, r.stderr, case.get("expect"), one_line=not case.get("engines"))
        if changed:
            res["problems"].append(f"pre-existing file(s) changed: {changed}")
            res["clear"] = False
        return {
            "name": case["name"],
            "category": case.get("category", "other"),
            "argv": argv,
            "seconds": round(time.time() - t0, 1),
            "checksummed": len(before),
            **res,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def classify(rc: int, stderr: str, expect: Optional[str] = None, one_line: bool = True) -> dict:
    """Was this answered with a clear error?  Exit 2; the whole stderr one line ``crosscot: error: <what>;
    <fix>`` (engine cases: the last line, their engines log) holding ``expect``; no traceback."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    problems = []
    if rc != 2:
        problems.append(f"exit {rc}, not 2")
    if one_line and len(lines) != 1:
        problems.append(f"stderr has {len(lines)} lines, not one")
    if not last.startswith("crosscot: error: ") or "; " not in last:
        problems.append("last stderr line is not `crosscot: error: <what>; <fix>`")
    if expect is not None and expect.lower() not in last.lower():
        problems.append(f"message lacks {expect!r}")
    if "Traceback" in stderr:
        problems.append("traceback printed")
    return {"rc": rc, "message": last[:300], "clear": not problems, "problems": problems}


def category_table(results: list[dict]) -> str:
    """Per category: cases, clear, unclear, and how many pre-existing files were checksummed."""
    cats: dict[str, list[dict]] = {}
    for r in results:
        cats.setdefault(r["category"], []).append(r)
    rows = [("category", "cases", "clear", "unclear", "files checksummed")]
    for cat in sorted(cats):
        rs = cats[cat]
        n = sum(r["clear"] for r in rs)
        rows.append((cat, str(len(rs)), str(n), str(len(rs) - n), str(sum(r.get("checksummed", 0) for r in rs))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows)


def kill_point_figures(args: argparse.Namespace) -> Optional[dict]:
    """``--kills N`` random kill points across the streaming stages with real engines
    (:mod:`pipeline.bench.kills`); None when not asked for.

    ``{"kills": N, "survived": n, "lost_rows": x, "duplicated_rows": y, "identical_tables": share, ...}``"""
    if not getattr(args, "kills", 0):
        return None
    from pipeline.bench.kills import figures

    return figures(int(args.kills), Path(args.kills_dir), int(getattr(args, "seed", 0)))


def run(args: argparse.Namespace) -> int:
    from pipeline.errors import UserError

    corpus = Path(args.corpus)
    if not (corpus / "cases.json").is_file():
        raise UserError(f"faults: no cases.json in {corpus}; give --corpus a folder holding one")
    if args.json:
        from pipeline.store.overwrite import guard_outputs

        guard_outputs([args.json], force=bool(getattr(args, "force", False)), command="faults", out_flag="--json")
    all_cases = load_cases(corpus)
    cases = [c for c in all_cases if not args.only or args.only in c["name"] or args.only == c.get("category")]
    if not cases:
        from pipeline.errors import did_you_mean

        raise UserError(
            f"faults: no case matches --only {args.only!r}{did_you_mean(args.only, [c['name'] for c in all_cases])}; "
            f"give part of a case name or a category ({', '.join(sorted({c.get('category', 'other') for c in all_cases}))})"
        )
    runnable = [c for c in cases if args.engines or not c.get("engines")]
    with ThreadPoolExecutor(max(1, args.jobs)) as ex:
        results = list(ex.map(lambda c: run_case(c, corpus), runnable))
    for r in results:
        mark = "ok  " if r["clear"] else "FAIL"
        print(
            f"{mark} [{r['category']}] {r['name']:<40} rc={r['rc']} {r['seconds']:5.1f}s {r['message'][:120]}"
            + ("" if r["clear"] else f"   <- {'; '.join(r['problems'])}")
        )
    print(category_table(results))
    n_clear = sum(r["clear"] for r in results)
    print(
        f"bad inputs answered with a clear error: {n_clear}/{len(results)}"
        + (f" ({len(cases) - len(runnable)} case(s) need engines: --engines)" if len(runnable) < len(cases) else "")
    )
    kills = kill_point_figures(args)
    if kills is None:
        print("kill points: none asked for (--kills N)")
    else:
        print(
            f"kills survived: {kills['survived']}/{kills['kills']} (of {kills['attempts']} attempts; the others "
            f"came after the engine stages); lost rows: {kills['lost_rows']}; "
            f"duplicated rows: {kills['duplicated_rows']}; identical tables: {kills['identical_tables']:.0%}"
        )
    if args.json:
        from pipeline.store.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps({"bad_inputs": results, "kills": kills}, indent=2))
    return 0 if n_clear == len(results) else 1
