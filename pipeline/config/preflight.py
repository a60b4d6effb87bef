"""Everything about a run that can be checked before Ray starts, checked before Ray starts.

``validate()`` (schemas) checks values one by one; :func:`check_run` checks what needs the file
system, the network or several fields at once, so that a run fails in the first second with one
line instead of minutes later inside an engine (or never, in a hang):

* work exists: a run that selects no generation method, no stage, no variant is an error;
* the run folder: not an empty name; writable (a file in the way, no permission); an existing run
  of *another* configuration there is never replaced without ``force=true`` (the same
  configuration resumes: :func:`run_key` names it);
* each model: weights present or provisionable (else "run `crosscot models prepare X`"), its
  Jinja chat template compiles, its token budgets fit ``max_model_len``;
* user-supplied regular expressions compile (``dataset.options.answer_regex``);
* the dataset loads: readable UTF-8, some problems after every filter, unique ids;
* ``ray.address``: a cluster address answers within ``CROSSCOT_RAY_CONNECT_TIMEOUT_S`` (default 30 s).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

from pipeline.config.schemas import ConfigError, RunConfig

RUN_KEY = "run-key.json"
# Fields that never change what a run folder holds (where it is, how it is shown or scheduled,
# which stages of the same run were asked for this time).
_NOT_RUN_IDENTITY = ("run_dir", "store_dir", "progress", "stages", "force", "error_budget", "ray", "stream")


def _identity(obj: Any, top: bool = False) -> Any:
    if dataclasses.is_dataclass(obj):
        return {
            f.name: _identity(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.metadata.get("hash", True) and not (top and f.name in _NOT_RUN_IDENTITY)
        }
    if isinstance(obj, dict):
        return {str(k): _identity(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_identity(v) for v in obj]
    return obj


def run_key(cfg: RunConfig) -> str:
    """The identity of what a run folder holds: the result-changing configuration (no weights read)."""
    from pipeline.store.artifacts import content_hash

    return content_hash(_identity(cfg, top=True), 32)


def write_run_key(cfg: RunConfig) -> None:
    """Record the run folder's identity (called when a run starts writing into it)."""
    from pipeline.store.atomic import write_text_atomic

    write_text_atomic(Path(cfg.run_dir) / RUN_KEY, json.dumps({"key": run_key(cfg)}) + "\n")


def check_run_dir(cfg: RunConfig, force: bool = False) -> None:
    """Not empty, writable, and not another configuration's run (unless ``force``)."""
    from pipeline.store.overwrite import check_writable_folder

    if not str(cfg.run_dir).strip():
        raise ConfigError("run_dir is empty; give the run a folder, e.g. run_dir=runs/my_run")
    if cfg.store_dir is not None and not str(cfg.store_dir).strip():
        raise ConfigError("store_dir is empty; give a folder, or store_dir=null for <run_dir>/store")
    check_writable_folder(cfg.run_dir, "run", "run_dir")
    if cfg.store_dir:
        check_writable_folder(cfg.store_dir, "run", "store_dir")
    rd = Path(cfg.run_dir)
    if not (rd / "config.json").is_file() or force or getattr(cfg, "force", False):
        return
    try:
        old = json.loads((rd / RUN_KEY).read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        old = None
    if old != run_key(cfg):
        raise ConfigError(
            f"run_dir={cfg.run_dir} already holds a run of another configuration "
            f"({'its key differs' if old else 'no run-key.json'}); its tables and report would be "
            "replaced: choose another run_dir, or add force=true to replace it"
        )


def check_work(cfg: RunConfig) -> None:
    """A run must select some work."""
    if not cfg.stages:
        raise ConfigError("stages=[] selects no work; list stages, e.g. stages=[generate,transfer,score,report]")
    wants_generate = any(s in ("generate", "truncate", "transfer", "ensemble") for s in cfg.stages)
    if wants_generate and not cfg.generate.methods:
        raise ConfigError("generate.methods=[] selects no generation; choose from [empty, default, sampled]")
    if "transfer" in cfg.stages and not cfg.transfer.variants:
        raise ConfigError("transfer.variants=[] selects no transfer; choose e.g. transfer.variants=[full]")
    for what in ("sources", "targets"):
        if "transfer" in cfg.stages and getattr(cfg.transfer, what) == []:
            raise ConfigError(f"transfer.{what}=[] selects no model; list models or use null for all")


def check_models(cfg: RunConfig) -> None:
    """Weights, chat templates and token budgets of every model."""
    for key, m in cfg.models.items():
        check_weights(m, key)
        if m.chat_template:
            check_template(m.chat_template, f"models.{key}.chat_template")
        need = cfg.generate.thought_budget + cfg.generate.answer_budget
        if need >= m.max_model_len:
            raise ConfigError(
                f"generate.thought_budget + generate.answer_budget = {need} does not fit "
                f"models.{key}.max_model_len={m.max_model_len} (the prompt needs room too); "
                f"lower the budgets or raise models.{key}.max_model_len"
            )


def check_weights(m: Any, key: str) -> None:
    from pipeline.provision.models import check_source

    check_source(m, key)
    if m.gguf:
        from pipeline.provision import gguf

        dest = os.path.expanduser(str(m.path))
        try:
            if gguf.is_prepared(m.gguf, dest):
                return
            gguf.locate_parts(gguf.get_recipe(m.gguf))  # the engine can convert it on load
        except Exception as e:  # noqa: BLE001 - any reason the weights cannot be had
            raise ConfigError(
                f"models.{key} ({m.name}): weights not prepared in {dest} and cannot be built "
                f"({' '.join(str(e).split())[:160]}); run `crosscot models prepare {m.gguf}`"
            ) from None


def check_template(template: str, where: str) -> None:
    """A Jinja chat template (inline text, or a path to one) must compile."""
    import jinja2

    text = template
    if "{" not in template and len(template) < 4096:
        p = Path(os.path.expanduser(template))
        if not p.is_file():
            raise ConfigError(
                f"{where}={template!r}: neither a Jinja template nor a file; give template text or a path"
            )
        from pipeline.errors_fs import read_utf8

        text = read_utf8(p)
    try:
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(
            f"{where}: the chat template does not compile (line {e.lineno}: {e.message}); fix the Jinja syntax"
        ) from None


def check_patterns(cfg: RunConfig) -> None:
    opts = dict(cfg.dataset.options or {})
    for k, v in opts.items():
        if k.endswith(("_regex", "_pattern")) and isinstance(v, str):
            try:
                re.compile(v)
            except re.error as e:
                raise ConfigError(
                    f"dataset.options.{k}={v!r}: not a valid regular expression ({e}); "
                    "fix the pattern (quote it on the command line)"
                ) from None


def check_ray_address(address: Any, timeout_s: float | None = None) -> None:
    """A cluster address must answer (a TCP connect) within ``timeout_s``; ``auto`` needs a running cluster."""
    if address in (None, "local"):
        return
    if timeout_s is None:
        timeout_s = float(os.environ.get("CROSSCOT_RAY_CONNECT_TIMEOUT_S", "30"))
    if address == "auto":
        env = os.environ.get("RAY_ADDRESS")
        if env:
            return check_ray_address(env, timeout_s)
        if not Path("/tmp/ray/ray_current_cluster").is_file():
            raise ConfigError(
                "ray.address=auto: no running Ray cluster found on this machine (no RAY_ADDRESS, "
                "no /tmp/ray/ray_current_cluster); start one with `ray start --head`, "
                "or use ray.address=null for a local Ray"
            )
        return
    hostport = str(address).split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray.address={address!r}: not host:port; use ray://host:port or host:port")
    if not _speaks_grpc(host, int(port), timeout_s):
        raise ConfigError(
            f"ray.address={address}: no Ray server answered there within {timeout_s:g} s; "
            "check the head node is up and the address, or use ray.address=null for a local Ray"
        )


# HTTP/2 connection preface + an empty SETTINGS frame: a gRPC server (Ray's GCS and client server)
# answers with its own SETTINGS frame; a closed port refuses, a black hole or a proxy stays silent.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _speaks_grpc(host: str, port: int, timeout_s: float) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(_H2_PREFACE)
            got = b""
            while len(got) < 9:
                s.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = s.recv(9 - len(got))
                if not chunk:
                    return False
                got += chunk
            return got[3] == 0x04  # frame type SETTINGS
    except OSError:
        return False


def check_problems(cfg: RunConfig) -> None:
    """The dataset loads to some problems with unique ids (skipped when the store already holds them)."""
    from pipeline.config.plugins import plugins

    plugins().check_problems(Path(cfg.store_dir or Path(cfg.run_dir) / "store"), cfg.dataset)


def check_run(cfg: RunConfig, force: bool = False) -> None:
    """Every check of the module docstring, cheapest first."""
    check_work(cfg)
    check_run_dir(cfg, force)
    check_patterns(cfg)
    check_models(cfg)
    check_problems(cfg)
    check_ray_address(cfg.ray.address)
