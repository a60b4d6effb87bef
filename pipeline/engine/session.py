"""The run's local Ray session: recorded at start, shut down on exit, reaped after a SIGKILL.

A driver killed with SIGKILL runs no ``finally``: Ray's raylet and GCS follow it, but
``ray::DashboardAgent``, ``ray::RuntimeEnvAgent`` and idle workers are re-parented to init and
live on.  So when this process starts a *local* Ray (never when it joins a cluster, whose
processes are not ours), :func:`record` writes ``<run_dir>/.ray-session.json``: the driver's pid
and start time, the session folder, and every Ray process then alive with its start time.  The
next run in that folder calls :func:`begin`, which, when the recorded driver is dead, kills the
processes that really belong to that session: a recorded (pid, start time) pair, or a process
whose command line or open files name the session folder (agents and workers log there).  A
pid reused by an unrelated process matches neither and is left alone.

:func:`shutdown_ray` is the clean end (also on SIGINT/SIGTERM, which the CLI turns into
``KeyboardInterrupt``): ``ray.shutdown()`` stops the session's processes and the record is removed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Optional

from pipeline.store.atomic import write_text_atomic

log = logging.getLogger("crosscot")
RECORD = ".ray-session.json"
_run_dir: Optional[Path] = None


def _start_time(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (with the pid, a unique identity), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the "(comm)" field


def _alive(pid: int, start: Optional[int]) -> bool:
    now = _start_time(pid)
    return now is not None and (start is None or now == start)


def begin(run_dir: str | os.PathLike) -> list[int]:
    """Remember ``run_dir`` for :func:`record` and reap a dead earlier run's Ray leftovers there."""
    global _run_dir
    _run_dir = Path(run_dir)
    from pipeline.engine.served import reap as reap_served

    return reap(_run_dir) + reap_served(_run_dir)  # and managed `vllm serve` processes it left


def record() -> Optional[Path]:
    """Write the current local Ray session's record into the run folder (the hook in ``init_ray``)."""
    if _run_dir is None:
        return None
    import ray

    node = ray._private.worker._global_node  # the local node this driver started
    if node is None:
        return None
    session_dir = node.get_session_dir_path()
    pids = [p.process.pid for procs in node.all_processes.values() for p in procs]
    pids += _children(pids)
    # Only this driver's own session: a process it started (parent chain) or one naming its session
    # folder.  Another run's Ray (a second user, a parallel job) must never be recorded, or the reaper
    # would later kill it.
    mine = [pid for pid in dict.fromkeys(pids) if _owned(pid, session_dir)]
    rec = {
        "driver_pid": os.getpid(),
        "driver_start": _start_time(os.getpid()),
        "session_dir": session_dir,
        "processes": [[pid, _start_time(pid)] for pid in mine if _start_time(pid) is not None],
    }
    path = _run_dir / RECORD
    write_text_atomic(path, json.dumps(rec, indent=2) + "\n")
    return path


def _parent(pid: int) -> Optional[int]:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _descends_from(pid: int, ancestor: int) -> bool:
    """Is ``ancestor`` on ``pid``'s parent chain (``pid`` itself excluded)?"""
    seen = set()
    p = _parent(pid)
    while p is not None and p > 1 and p not in seen:
        if p == ancestor:
            return True
        seen.add(p)
        p = _parent(p)
    return False


def _owned(pid: int, session_dir: str, driver: Optional[int] = None) -> bool:
    """A process of this driver's session: started by the driver (parent chain), or naming the session folder."""
    return _descends_from(pid, driver or os.getpid()) or _belongs(pid, session_dir, {})


def _children(parents: list[int]) -> list[int]:
    """Direct children of ``parents`` (the raylet's agents and prestarted workers)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int(d.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid in parents:
                out.append(int(d.name))
    return out


def _belongs(pid: int, session_dir: str, recorded: dict[int, Optional[int]]) -> bool:
    """Is ``pid`` a process of that session?  Recorded identity, or the session folder in its cmdline/open files."""
    if pid in recorded and recorded[pid] is not None and _start_time(pid) == recorded[pid]:
        return True
    proc = Path(f"/proc/{pid}")
    try:
        if session_dir in proc.joinpath("cmdline").read_bytes().decode(errors="replace"):
            return True
        for fd in proc.joinpath("fd").iterdir():
            try:
                if os.readlink(fd).startswith(session_dir + "/"):
                    return True
            except OSError:
                continue
    except OSError:  # gone, or not ours to inspect
        return False
    return False


def reap(run_dir: str | os.PathLike, grace_s: float = 5.0) -> list[int]:
    """Kill the leftovers of the Ray session recorded in ``run_dir`` if its driver is dead; returns their pids."""
    path = Path(run_dir) / RECORD
    if not path.exists():
        return []
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return []
    if _alive(rec["driver_pid"], rec.get("driver_start")) and rec["driver_pid"] != os.getpid():
        log.warning(
            "a run is still using %s (driver pid %s): its Ray session is left alone", run_dir, rec["driver_pid"]
        )
        return []
    session_dir = rec["session_dir"]
    recorded = {int(p): s for p, s in rec.get("processes", [])}
    me = os.getpid()
    victims = [
        int(d.name)
        for d in Path("/proc").iterdir()
        if d.name.isdigit() and int(d.name) != me and _belongs(int(d.name), session_dir, recorded)
    ]
    for pid in victims:
        _signal(pid, signal.SIGTERM)
    deadline = time.time() + grace_s
    while time.time() < deadline and any(_alive(p, None) and not _zombie(p) for p in victims):
        time.sleep(0.1)
    for pid in victims:
        if _alive(pid, None) and not _zombie(pid):
            _signal(pid, signal.SIGKILL)
    if victims:
        log.warning(
            "reaped %d leftover process(es) of the killed run's Ray session %s: %s", len(victims), session_dir, victims
        )
    path.unlink(missing_ok=True)
    return victims


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return  # already gone, or not ours to signal: nothing to stop


def shutdown_ray() -> None:
    """Stop this process's Ray session (engines included) and drop its record; safe when Ray never started."""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    if _run_dir is not None:
        (_run_dir / RECORD).unlink(missing_ok=True)
