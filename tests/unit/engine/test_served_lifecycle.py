"""The managed server's guardian and reaping, with a stand-in server process (a sleeping Python):
the server never outlives its owner, its guardian, or a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.engine.served import _flags, reap
from pipeline.engine.session import _start_time

SLEEPER = [sys.executable, "-c", "import time, sys; sys.argv.append('vllm'); time.sleep(300)", "vllm-stand-in"]


def _alive(pid: int) -> bool:
    st = Path(f"/proc/{pid}/stat")
    return st.exists() and st.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, s: float = 10.0) -> bool:
    end = time.time() + s
    while time.time() < end:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int(d.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, ValueError):
                pass
    return out


def _guardian(owner: int) -> tuple[subprocess.Popen, int]:
    g = subprocess.Popen(
        [sys.executable, "-m", "pipeline.engine.served", "--owner", str(owner), "--", *SLEEPER], start_new_session=True
    )
    return g, _server_of(g.pid)


def _server_of(gpid: int) -> int:
    """The guardian's child once it runs the stand-in (not merely forked)."""
    end = time.time() + 10
    while time.time() < end:
        for k in _children(gpid):
            try:
                if b"vllm-stand-in" in Path(f"/proc/{k}/cmdline").read_bytes():
                    return k
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError("the guardian did not start its server")


def test_server_stops_when_its_owner_dies():
    # The owner is an intermediate process that starts the guardian and is then SIGKILLed.
    script = (
        "import subprocess, sys, time\n"
        f"g = subprocess.Popen([sys.executable, '-m', 'pipeline.engine.served', '--owner', "
        f"str(__import__('os').getpid()), '--', *{SLEEPER!r}], start_new_session=True)\n"
        "print(g.pid, flush=True); time.sleep(300)"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    gpid = int(owner.stdout.readline())
    server = _server_of(gpid)
    owner.kill()
    owner.wait()
    assert _wait_gone(server), "the server outlived its owner"
    assert _wait_gone(gpid)


def test_server_gets_sigterm_when_its_guardian_is_sigkilled():
    g, server = _guardian(os.getpid())
    os.kill(g.pid, signal.SIGKILL)
    g.wait()
    assert _wait_gone(server), "the server outlived its SIGKILLed guardian (PR_SET_PDEATHSIG)"


def test_guardian_sigterm_stops_the_server():
    g, server = _guardian(os.getpid())
    g.send_signal(signal.SIGTERM)
    g.wait(timeout=20)
    assert _wait_gone(server)


def test_reap_kills_a_dead_owners_server(tmp_path):
    g, server = _guardian(os.getpid())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rec = {"owner_pid": dead.pid, "owner_start": 1, "guardian_pid": g.pid, "guardian_start": _start_time(g.pid)}
    (tmp_path / ".served-m.json").write_text(json.dumps(rec))
    # A record whose owner is alive (another run) is left alone.
    g2, server2 = _guardian(os.getpid())
    (tmp_path / ".served-live.json").write_text(
        json.dumps(
            {
                "owner_pid": os.getpid(),
                "owner_start": _start_time(os.getpid()),
                "guardian_pid": g2.pid,
                "guardian_start": _start_time(g2.pid),
            }
        )
    )
    try:
        assert reap(tmp_path) == [g.pid]
        g.wait(timeout=20)
        assert _wait_gone(server) and not (tmp_path / ".served-m.json").exists()
        assert _alive(server2) and (tmp_path / ".served-live.json").exists()
    finally:
        g2.send_signal(signal.SIGTERM)
        g2.wait(timeout=20)


def test_engine_args_become_serve_flags():
    assert _flags(
        {
            "model": "/m",
            "dtype": "float32",
            "enable_chunked_prefill": False,
            "enforce_eager": True,
            "block_size": None,
            "max_num_batched_tokens": 2048,
        }
    ) == ["--dtype", "float32", "--no-enable-chunked-prefill", "--enforce-eager", "--max-num-batched-tokens", "2048"]
