"""The Ray session record holds only this driver's own processes, never another run's (which the
reaper would later kill)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.engine import session


@dataclass
class _Proc:
    pid: int


@dataclass
class _Info:
    process: _Proc


class _Node:
    """Stands in for Ray's local node object: what ``record`` reads from it."""

    def __init__(self, pids: list[int], session_dir: str):
        self.all_processes = {"raylet": [_Info(_Proc(p)) for p in pids]}
        self._dir = session_dir

    def get_session_dir_path(self) -> str:
        return self._dir


def _orphan_sleep() -> int:
    """A process NOT started by this driver: ``sh`` starts it in the background and exits, so its parent
    chain no longer reaches us (as with another user's Ray on the same machine)."""
    out = subprocess.run(
        ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def test_record_keeps_own_processes_and_drops_another_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ray_worker = pytest.importorskip("ray._private.worker")
    own = subprocess.Popen(["sleep", "300"])  # started by this driver: ours
    foreign = _orphan_sleep()  # alive, but another run's
    try:
        session_dir = str(tmp_path / "session_2026_mine")
        monkeypatch.setattr(ray_worker, "_global_node", _Node([own.pid, foreign], session_dir), raising=False)
        monkeypatch.setattr(session, "_run_dir", tmp_path)
        path = session.record()
        rec = json.loads(Path(path).read_text())
        pids = [p for p, _ in rec["processes"]]
        assert own.pid in pids
        assert foreign not in pids, "another run's Ray process was recorded (the reaper would kill it)"
        assert rec["session_dir"] == session_dir and rec["driver_pid"] == os.getpid()
    finally:
        own.kill()
        own.wait()
        os.kill(foreign, signal.SIGKILL)


def test_a_process_naming_the_session_folder_counts_as_ours(tmp_path: Path) -> None:
    """Agents and workers re-parented away from the driver still log into its session folder."""
    session_dir = tmp_path / "session_2026_x"
    session_dir.mkdir()
    p = subprocess.run(
        [
            "sh",
            "-c",
            f"{sys.executable} -c 'import time; time.sleep(300)' {session_dir}/logs >/dev/null 2>&1 & echo $!",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(p.stdout.strip())
    try:
        assert session._owned(pid, str(session_dir))
        assert not session._owned(pid, str(tmp_path / "session_2026_other"))
    finally:
        os.kill(pid, signal.SIGKILL)
