"""Kill points: a real run (tiny models, real vLLM engines in Ray actors) killed at random points, then resumed.

Each kill point starts ``crosscot run`` on a small tiny-model config in its own process session,
waits until the first rows are checkpointed, then after a random delay either

* ``driver`` — SIGKILLs the driver's whole process group (the driver and its local Ray), and
  reruns the same command to completion; or
* ``engine`` — SIGKILLs one engine actor process of that run (Ray restarts the actor and retries
  its in-flight items; the run itself must finish).

The finished run's rows and tables are compared with an uninterrupted baseline run of the same
config that shares nothing: lost rows (keys in the baseline, not in the run), duplicated rows (a
key twice) and whether every table is byte-identical.  ``crosscot faults --kills N`` prints the
figures (:func:`pipeline.commands.faults.kill_point_figures`).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
KEY = ("dataset", "problem_id", "method", "source", "variant", "sample", "target")
TABLES = ("consistency_summary.csv", "accuracy.csv", "consistency_pairs.csv", "errors.csv")


def overrides(run_dir: Path) -> list[str]:
    return [
        "experiment=demo_tiny",
        "~models.c",
        f"run_dir={run_dir}",
        "dataset.size=4",
        "generate.thought_budget=24",
        "generate.answer_budget=8",
        "transfer.answer_budget=8",
        "stream.flush_rows=1",
        "stream.flush_seconds=0.2",
        "progress=false",
        "score.n_boot=50",
    ]


def _cmd(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", "run", *overrides(run_dir)]


def _env(slow: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CROSSCOT_FAULT_DELAY_S", None)
    if slow:  # test-only hook (pipeline.engine.ray_pool): every item waits first, so kills land mid-run
        env["CROSSCOT_FAULT_DELAY_S"] = "0.3"
    return env


def _engine_pids(session: int) -> list[int]:
    """Engine actor processes of the run whose process session is ``session``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "EngineActor" in cmdline and os.getsid(int(d.name)) == session:
                out.append(int(d.name))
        except (OSError, ProcessLookupError):
            continue
    return out


def _rows(run_dir: Path) -> list[tuple]:
    from pipeline.store.artifacts import read_table

    t = read_table(run_dir / "answers.arrow")
    return [tuple(r[k] for k in KEY) for r in t.select(list(KEY)).to_pylist()]


def one_kill(work: Path, i: int, kind: str, delay: float, timeout: float = 900) -> dict:
    """Run, kill (``driver`` or ``engine``) ``delay`` seconds after the first checkpoint, finish; the outcome."""
    run_dir = work / f"kill-{i}-{kind}"
    proc = subprocess.Popen(
        _cmd(run_dir),
        cwd=REPO,
        env=_env(True),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    killed, note = False, ""
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            if list((run_dir / "store").glob("*.parts/*.arrow")) if (run_dir / "store").exists() else []:
                break
            time.sleep(0.1)
        time.sleep(delay)
        if proc.poll() is None:
            if kind == "driver":
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
            else:
                pids = _engine_pids(proc.pid)
                if pids:
                    os.kill(random.Random(i).choice(pids), signal.SIGKILL)
                    killed = True
                else:
                    note = "no engine process found"
        else:
            note = "the run finished before the kill"
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    rc = proc.returncode
    if kind == "driver" or rc != 0:  # resume: the same command again
        r = subprocess.run(_cmd(run_dir), cwd=REPO, env=_env(False), capture_output=True, text=True, timeout=timeout)
        rc = r.returncode
        if rc != 0:
            note = (note + " " + r.stderr.strip().splitlines()[-1] if r.stderr.strip() else note).strip()
    return {"kind": kind, "delay": round(delay, 2), "killed": killed, "rc": rc, "run_dir": str(run_dir), "note": note}


def figures(n: int, work: Path, seed: int = 0, max_delay: float = 3.0) -> dict:
    """``n`` random kill points (driver or engine, random delay) against one uninterrupted baseline."""
    work.mkdir(parents=True, exist_ok=True)
    base = work / "baseline"
    r = subprocess.run(_cmd(base), cwd=REPO, env=_env(False), capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"baseline run failed: {r.stderr.strip()[-500:]}")
    want = _rows(base)
    rng = random.Random(seed)
    points, lost, dup, identical, survived, kills = [], 0, 0, 0, 0, 0
    for i in range(n):
        res = one_kill(work, i, rng.choice(["driver", "engine"]), rng.uniform(0.0, max_delay))
        points.append(res)
        if not res["killed"]:  # the run ended (or its engines were already stopped) first: not a kill
            continue
        kills += 1
        got_dir = Path(res["run_dir"])
        if res["rc"] == 0 and (got_dir / "answers.arrow").exists():
            survived += 1
            got = _rows(got_dir)
            res["lost_rows"] = len(set(want) - set(got))
            res["duplicated_rows"] = len(got) - len(set(got))
            res["identical_tables"] = all(
                (got_dir / "tables" / t).read_bytes() == (base / "tables" / t).read_bytes() for t in TABLES
            )
            lost += res["lost_rows"]
            dup += res["duplicated_rows"]
            identical += res["identical_tables"]
    return {
        "kills": kills,
        "attempts": n,
        "survived": survived,
        "lost_rows": lost,
        "duplicated_rows": dup,
        "identical_tables": identical / kills if kills else 1.0,
        "points": points,
    }


def main(argv: Optional[list[str]] = None) -> dict:
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m pipeline.bench.kills", description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("runs/faults/kills"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    res = figures(a.n, a.work, a.seed)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
