"""``crosscot faults``: fault figures.  Runs the corpus of bad inputs (``tests/data/bad_inputs/``)
through the real CLI, one subprocess each, and counts those answered the way every user error must
be: exit 2, the last stderr line ``crosscot: error: <what>; <fix>``, no traceback.

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
    parser.add_argument("--kills", type=int, default=0, metavar="N",
                        help="also N random kill points (driver or engine, real engines; about a minute each)")
    parser.add_argument("--kills-dir", type=Path, default=Path("runs/faults/kills"), help="work folder of the kill points")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points' kinds and delays")


def load_cases(corpus: Path) -> list[dict]:
    return json.loads((corpus / "cases.json").read_text())["cases"]


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
        for src, dst in (case.get("copy") or {}).items():
            shutil.copyfile(corpus / src, tmp / dst)
        argv: list[str] = []
        for a in case["argv"]:
            argv += RUN if a == "RUN" else [a]
        argv = [a.replace("{dir}", str(corpus)).replace("{tmp}", str(tmp)) for a in argv]
        if argv[0] == "run" and "-m" in argv:
            argv += [f"hydra.sweep.dir={tmp}/sweep"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "RAY_USAGE_STATS_ENABLED": "0", "CROSSCOT_CACHE": str(tmp / "cache")}
        env.pop("HYDRA_FULL_ERROR", None)
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "pipeline", *argv], cwd=tmp, env=env, capture_output=True,
                           text=True, timeout=timeout_s)
        return {"name": case["name"], "argv": argv, "seconds": round(time.time() - t0, 1), **classify(r.returncode, r.stderr)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def classify(rc: int, stderr: str) -> dict:
    """Was this answered with a clear error?  Exit 2, last line names what and the fix, no traceback."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    problems = []
    if rc != 2:
        problems.append(f"exit {rc}, not 2")
    if not last.startswith("crosscot: error: ") or "; " not in last:
        problems.append("last stderr line is not `crosscot: error: <what>; <fix>`")
    if "Traceback" in stderr:
        problems.append("traceback printed")
    return {"rc": rc, "message": last[:300], "clear": not problems, "problems": problems}


def kill_point_figures(args: argparse.Namespace) -> Optional[dict]:
    """``--kills N`` random kill points across the streaming stages with real engines
    (:mod:`pipeline.bench.kills`); None when not asked for.

    ``{"kills": N, "survived": n, "lost_rows": x, "duplicated_rows": y, "identical_tables": share, ...}``"""
    if not getattr(args, "kills", 0):
        return None
    from pipeline.bench.kills import figures

    return figures(int(args.kills), Path(args.kills_dir), int(getattr(args, "seed", 0)))


def run(args: argparse.Namespace) -> int:
    corpus = Path(args.corpus)
    cases = [c for c in load_cases(corpus) if not args.only or args.only in c["name"]]
    runnable = [c for c in cases if args.engines or not c.get("engines")]
    with ThreadPoolExecutor(max(1, args.jobs)) as ex:
        results = list(ex.map(lambda c: run_case(c, corpus), runnable))
    for r in results:
        mark = "ok  " if r["clear"] else "FAIL"
        print(f"{mark} {r['name']:<32} rc={r['rc']} {r['message'][:140]}" +
              ("" if r["clear"] else f"   <- {'; '.join(r['problems'])}"))
    n_clear = sum(r["clear"] for r in results)
    print(f"bad inputs answered with a clear error: {n_clear}/{len(results)}"
          + (f" ({len(cases) - len(runnable)} case(s) need engines: --engines)" if len(runnable) < len(cases) else ""))
    kills = kill_point_figures(args)
    if kills is None:
        print("kill points: none asked for (--kills N)")
    else:
        print(f"kills survived: {kills['survived']}/{kills['kills']} (of {kills['attempts']} attempts; the others "
              f"came after the engine stages); lost rows: {kills['lost_rows']}; "
              f"duplicated rows: {kills['duplicated_rows']}; identical tables: {kills['identical_tables']:.0%}")
    if args.json:
        from pipeline.store.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps({"bad_inputs": results, "kills": kills}, indent=2))
    return 0 if n_clear == len(results) else 1
