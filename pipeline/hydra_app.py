"""Hydra entry point of ``crosscot run``: one run, or a sweep with ``-m``.

A sweep (``-m``) expands Hydra's sweep syntax (``a=x,y``, plus the experiment's
``hydra.sweeper.params``) exactly as Hydra's basic sweeper does, composes every
job's config up front, and runs ALL jobs in this process on ONE engine pool
(:func:`pipeline.stages.dag.run_jobs`): a model is loaded once and serves every
job that uses it, and the jobs' items interleave in the same engine streams.
Jobs share the content-addressed store (``store_dir``), so overlapping jobs
never recompute a generation, and rerunning the same command resumes.  A
failing job is recorded in ``<sweep dir>/failures.jsonl`` while the others
finish; the sweep then prints a failure summary and exits non-zero.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from typing import Any, Optional

import hydra
from omegaconf import DictConfig

from pipeline.config import conf_dir, register_configs, to_run_config
from pipeline.config.overrides import check_overrides

log = logging.getLogger("crosscot")
register_configs()

# Per-invocation state: the error of a single run, handed from inside Hydra to run_cli.
_state: dict[str, Any] = {"error": None}
_HYDRA_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve", "--shell-completion")


# The conf/ folder as the *primary* search path: with config_path=None Hydra searches pkg://pipeline,
# whose sub-packages (pipeline/stages/, ...) then shadow config keys ("stages=[generate]" failed).
@hydra.main(config_path=conf_dir(), config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from pipeline.stages.dag import run

    _ = HydraConfig.get()  # inside a Hydra run (``${hydra:...}`` resolves)
    try:
        run_cfg = to_run_config(cfg)
        from pipeline.engine.session import begin

        begin(run_cfg.run_dir)  # reap what a SIGKILLed earlier run of this folder left behind
        ctx = run(run_cfg)
        print(
            f"crosscot: run complete -> {run_cfg.run_dir}/report.md "
            f"({ctx.timings.get('stream', 0):.1f}s in the streaming engine stages)"
        )
    except Exception as e:  # noqa: BLE001
        # Hand it to pipeline.errors.run_command (Hydra would print its own traceback and exit 1).
        _state["error"] = e


def sweep_jobs(overrides: list[str]) -> tuple[list[list[str]], Any]:
    """Every job's override list (Hydra's basic-sweeper expansion) and the composed hydra node of the sweep."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from pipeline.config.load import composition_error

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        if GlobalHydra.instance().is_initialized():
            GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
            base = hcompose(config_name="config", overrides=fixed, return_hydra_config=True)
    except Exception as e:  # noqa: BLE001 - a bad override: the one-line message names it
        raise composition_error(e, overrides) from e
    params = dict(base.hydra.sweeper.get("params") or {})
    given = {o.get_key_element() for o in parsed}
    # The experiment's sweeper params first, the command line after (it wins, as in Hydra).
    swept = [
        o
        for o in parser.parse_overrides([f"{k}={v}" for k, v in params.items() if k not in given])
        if o.is_sweep_override()
    ] + [o for o in parsed if o.is_sweep_override()]
    # Sweep dimensions expanded as Hydra's basic sweeper does; fixed overrides passed on verbatim.
    [grid] = BasicSweeper.split_arguments(swept, None) if swept else [[[]]]
    return [[*fixed, *point] for point in grid], base.hydra


def _compose_job(job_overrides: list[str], num: int):
    """One job's RunConfig, with ``${hydra:job.num}`` and ``hydra.sweep.dir`` resolved as in a Hydra multirun."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = hcompose(config_name="config", overrides=job_overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.job.num = num
        cfg.hydra.job.override_dirname = ",".join(job_overrides)
    HydraConfig.instance().set_config(cfg)  # `${hydra:...}` in the job's config resolves against this
    with open_dict(cfg):
        cfg.pop("hydra")  # Hydra's own logging/output fields are not resolvable outside a Hydra job
    return to_run_config(cfg)


def run_sweep(jobs: list[list[str]], hydra_node: Any) -> int:
    """``crosscot run -m ...``: every job (from :func:`sweep_jobs`) on one shared engine pool (module
    docstring); exit 1 if any failed."""
    from pipeline.errors import one_line
    from pipeline.stages.dag import run_jobs

    sweep_dir = str(hydra_node.sweep.dir)
    cfgs, failed = [], []
    for num, ov in enumerate(jobs):
        log.info("sweep job %d: %s", num, " ".join(ov))
        try:
            from pipeline.config.preflight import check_run

            job_cfg = _compose_job(ov, num)
            check_run(job_cfg)  # the job's own run_dir, budgets, address: before Ray starts
            cfgs.append((num, ov, job_cfg))
        except Exception as e:  # noqa: BLE001 - a bad job is recorded; the others run
            failed.append((num, ov, e, traceback.format_exc()))
    results = []
    if cfgs:
        from pipeline.engine.ray_pool import EnginePool, init_ray

        init_ray(cfgs[0][2].ray)
        pool = EnginePool(cfgs[0][2])
        pool.bind([c for _, _, c in cfgs])
        try:
            results = run_jobs([c for _, _, c in cfgs], pool)
        finally:
            pool.stop()
    for (num, ov, cfg), res in zip(cfgs, results):
        if isinstance(res, Exception):
            failed.append((num, ov, res, "".join(traceback.format_exception(res))))
        else:
            print(f"crosscot: sweep job {num} complete -> {cfg.run_dir}/report.md")
    if failed:
        os.makedirs(sweep_dir, exist_ok=True)
        with open(os.path.join(sweep_dir, "failures.jsonl"), "a") as fh:
            for num, ov, e, tb in sorted(failed, key=lambda f: f[0]):
                fh.write(
                    json.dumps(
                        {
                            "job": num,
                            "overrides": ov,
                            "error": f"{type(e).__name__}: {one_line(e)}",
                            "traceback": tb[-2000:],
                        }
                    )
                    + "\n"
                )
        print(
            f"crosscot: error: sweep finished with {len(failed)} of {len(jobs)} job(s) failed "
            f"(details in {sweep_dir}/failures.jsonl):",
            file=sys.stderr,
        )
        for num, ov, e, _ in sorted(failed, key=lambda f: f[0]):
            print(f"  job {num} [{' '.join(ov)}]: {type(e).__name__}: {one_line(e)[:300]}", file=sys.stderr)
        return 1
    print(f"crosscot: sweep complete: {len(jobs)} job(s), engines shared")
    return 0


def preflight(jobs: list[list[str]], swept: bool = False) -> int:
    """Compose and validate every job's config and check its models' weights, and (one run) everything
    :func:`pipeline.config.preflight.check_run` checks; returns the job count."""
    from pipeline.config import compose
    from pipeline.config.preflight import check_run
    from pipeline.provision.models import check_source

    check_overrides([o for ov in jobs[:1] for o in ov])

    for ov in jobs:
        # ${hydra:...} interpolations only resolve inside a Hydra run: validate those jobs with a stand-in.
        ov = [o.replace("${hydra:job.num}", "0") for o in ov if not o.startswith("hydra.")]
        cfg = _compose_for_preflight(compose, ov)
        if cfg is None:
            continue
        for key, m in cfg.models.items():
            if not (m.engine == "openai" and m.served.base_url and m.served.api == "chat"):
                check_source(m, key)  # a chat-only endpoint needs no local weights or tokenizer
        from pipeline.engine.served_probe import check_served

        check_served(cfg)  # served endpoints answer, serve the model, have what their roles need
        if not swept:  # a sweep's jobs have their own run_dirs: checked once composed (run_sweep)
            check_run(cfg)
    return len(jobs)


def _compose_for_preflight(compose, ov: list[str]) -> Optional[Any]:
    from omegaconf.errors import InterpolationResolutionError

    try:
        return compose(ov)
    except InterpolationResolutionError:
        return None  # a ${hydra:...} value set in a config file: checked when the job composes


def _install_signal_handlers() -> None:
    """SIGTERM (and SIGHUP) become KeyboardInterrupt, so ``finally`` blocks stop the engines and Ray."""
    import signal

    def _raise(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)


def run_cli(argv: list[str]) -> int:
    """``crosscot run``: preflight, then Hydra; raises user errors for :func:`pipeline.errors.run_command`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = [a for a in argv if a != "--debug"]
    info_only = any(a.split("=", 1)[0] in _HYDRA_INFO_FLAGS for a in argv)
    overrides = [a for a in argv if not a.startswith("-")]
    if ("-m" in argv or "--multirun" in argv) and not info_only:
        check_overrides(overrides)
        jobs, hydra_node = sweep_jobs(overrides)
        preflight(jobs, swept=True)
        _install_signal_handlers()
        try:
            return run_sweep(jobs, hydra_node)
        finally:
            from pipeline.engine.session import shutdown_ray

            shutdown_ray()
    if not info_only:
        preflight([overrides])
    _install_signal_handlers()
    _state.update(error=None)
    sys.argv = [sys.argv[0], *argv]
    # Hydra then raises its own errors instead of printing them and exiting 1: run_command reports
    # them in one line (it decided about --debug / the user's HYDRA_FULL_ERROR before this).
    user_full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _main()
    except SystemExit as e:
        if e.code:
            return int(e.code)
    finally:
        if user_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = user_full_error
        from pipeline.engine.session import shutdown_ray

        shutdown_ray()
    if _state["error"] is not None:
        raise _state["error"]
    return 0
