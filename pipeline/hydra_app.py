"""Hydra entry point of ``crosscot run``: one run, or a multirun sweep with ``-m``.

In a sweep every job is isolated: a failing job is logged to
``<sweep dir>/failures.jsonl`` and the others go on; jobs share the
content-addressed store (``store_dir``), so overlapping jobs never recompute a
generation, and rerunning the same command resumes.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback

import hydra
from omegaconf import DictConfig

from pipeline.config import conf_dir, register_configs, to_run_config

log = logging.getLogger("crosscot")
register_configs()


@hydra.main(config_path=None, config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from pipeline.stages.dag import run

    hc = HydraConfig.get()
    multirun = hc.mode.name == "MULTIRUN"
    try:
        run_cfg = to_run_config(cfg)
        ctx = run(run_cfg)
        print(f"crosscot: run complete -> {run_cfg.run_dir}/report.md "
              f"({ctx.timings.get('generate', 0) + ctx.timings.get('transfer', 0):.1f}s in engine stages)")
    except Exception as e:  # noqa: BLE001
        if not multirun:
            raise
        sweep_dir = hc.sweep.dir
        os.makedirs(sweep_dir, exist_ok=True)
        with open(os.path.join(sweep_dir, "failures.jsonl"), "a") as fh:
            fh.write(json.dumps({"job": hc.job.num, "overrides": list(hc.overrides.task),
                                 "error": f"{type(e).__name__}: {e}",
                                 "traceback": traceback.format_exc()[-2000:]}) + "\n")
        log.error("sweep job %s failed (recorded in %s/failures.jsonl): %s", hc.job.num, sweep_dir, e)


def run_cli(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.argv = [sys.argv[0], f"--config-dir={conf_dir()}", *argv]
    try:
        _main()
    except SystemExit as e:
        return int(e.code or 0)
    return 0
