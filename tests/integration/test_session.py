"""After SIGKILL of a driver, the next run reaps exactly that run's Ray leftovers (real ``ray.init``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from pipeline.engine import session

REPO = Path(__file__).resolve().parents[2]

DRIVER = """
import sys, time
from pipeline.config import RayConfig
from pipeline.engine import session
from pipeline.engine.ray_pool import init_ray
session.begin(sys.argv[1])
init_ray(RayConfig(num_cpus=1))
print("ready", flush=True)
time.sleep(600)
"""


def _session_procs(session_dir: str) -> list[int]:
    return [
        int(d.name)
        for d in Path("/proc").iterdir()
        if d.name.isdigit() and session._belongs(int(d.name), session_dir, {}) and not session._zombie(int(d.name))
    ]


def test_sigkilled_driver_leftovers_are_reaped_and_strangers_spared(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    drv = subprocess.Popen([sys.executable, "-c", DRIVER, str(run_dir)], env=env, stdout=subprocess.PIPE, text=True)
    stranger = subprocess.Popen(["sleep", "300"])  # not Ray's: must survive the reaping
    try:
        assert drv.stdout.readline().strip() == "ready"
        rec = json.loads((run_dir / session.RECORD).read_text())
        assert rec["driver_pid"] == drv.pid and rec["processes"]
        # A stale pid entry (right pid, wrong start time) must not make the stranger a victim.
        rec["processes"].append([stranger.pid, 1])
        (run_dir / session.RECORD).write_text(json.dumps(rec))

        drv.send_signal(signal.SIGKILL)
        drv.wait(timeout=30)
        time.sleep(3)  # let the raylet and GCS notice
        left = _session_procs(rec["session_dir"])
        assert left, "expected leftovers (agents) after SIGKILL; if Ray now cleans up itself, this test is moot"

        reaped = session.reap(run_dir)
        assert set(left) <= set(reaped)
        time.sleep(0.5)
        assert _session_procs(rec["session_dir"]) == []
        assert stranger.poll() is None, "an unrelated process was killed"
        assert not (run_dir / session.RECORD).exists()
    finally:
        for p in (drv, stranger):
            if p.poll() is None:
                p.kill()
        for pid in _session_procs(rec["session_dir"]) if "rec" in dir() else []:
            os.kill(pid, signal.SIGKILL)


def test_live_driver_session_is_left_alone(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    live = subprocess.Popen(["sleep", "300"])
    try:
        rec = {
            "driver_pid": live.pid,
            "driver_start": session._start_time(live.pid),
            "session_dir": str(tmp_path / "session"),
            "processes": [[live.pid, session._start_time(live.pid)]],
        }
        (run_dir / session.RECORD).write_text(json.dumps(rec))
        assert session.reap(run_dir) == [] and live.poll() is None
    finally:
        live.kill()
