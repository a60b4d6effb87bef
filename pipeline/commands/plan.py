"""`crosscot plan`: requests, tokens, wave schedule, GPU-hours and wall time of a run, before running it.

    crosscot plan --node h200x8 experiment=reference
    crosscot plan --node h100x8 --problems 200 --throughput telemetry.json experiment=reference
    crosscot plan --node cpu2                     (the embedded demo on this machine)
    crosscot plan --node cpu2 --lengths runs/demo experiment=demo   (replay a finished run's CoT lengths)

Positional arguments are Hydra overrides of the run config, composed exactly as
`crosscot run` does (pipeline.config.compose).  Nothing is started: no Ray, no
engines.  Node types live in conf/node/<name>.yaml; their throughput numbers
are estimates unless --throughput gives measured tokens/s (cpu2's are calibrated).
The headline is the SIMULATED makespan (pipeline.planning.tails): streaming,
synchronous shards and streaming with replicas on idle GPUs.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "estimate requests, tokens, engine waves, GPU-hours and wall time of a run (starts nothing)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node",
        default="h100x8",
        help="node type: a name in conf/node (h100x8, h200x8, cpu2) or a YAML path (default h100x8)",
    )
    parser.add_argument(
        "--problems",
        type=int,
        default=None,
        help="number of problems (default: dataset.limit or the dataset's known size)",
    )
    parser.add_argument(
        "--throughput",
        default=None,
        metavar="JSON",
        help='measured tokens/s per model, e.g. {"QwQ": {"decode_tps": 2000, "prefill_tps": 8000}}',
    )
    parser.add_argument(
        "--thought-fill",
        type=float,
        default=None,
        help="expected CoT length as a share of generate.thought_budget (default 0.6)",
    )
    parser.add_argument(
        "--share-gpus",
        choices=["auto", "yes", "no"],
        default="auto",
        help="engines may share GPUs by gpu_memory_utilization: auto (only when not all fit "
        "with whole GPUs and it is faster), yes, no (default auto)",
    )
    parser.add_argument(
        "--lengths",
        default=None,
        metavar="RUN_DIR",
        help="replay the CoT lengths (cot_tokens) a finished run generated, per model, instead of "
        "the study's released lengths / their shape",
    )
    parser.add_argument(
        "--shard", type=int, default=None, help="shard size of the synchronous baseline in the simulation (default 64)"
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write a JSON summary here")
    parser.add_argument("--force", action="store_true", help="replace the --json file if it exists (else an error)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=reference")


def run(args: argparse.Namespace) -> int:
    from pipeline.config import compose
    from pipeline.planning.plan import PlanParams, as_dict, format_plan, plan
    from pipeline.planning.tails import SHARD, TailOptions
    from pipeline.planning.throughput import PlanError

    # Errors (ConfigError, PlanError, PlacementError) go to pipeline.errors.run_command: one line, exit 2.
    cfg = compose(list(getattr(args, "overrides", None) or []))
    params = PlanParams()
    if getattr(args, "thought_fill", None) is not None:
        if not (0 < args.thought_fill <= 1):
            raise PlanError(f"--thought-fill {args.thought_fill}: must be in (0, 1]")
        params.thought_fill = args.thought_fill
    opt = TailOptions(shard=getattr(args, "shard", None) or SHARD)
    if opt.shard < 1:
        raise PlanError(f"--shard {opt.shard}: must be >= 1")
    if getattr(args, "lengths", None):
        from pipeline.planning.lengths import measured_lengths

        try:
            opt.measured = measured_lengths(args.lengths)
        except FileNotFoundError as e:
            raise PlanError(str(e)) from e
    if getattr(args, "json", None):
        from pipeline.store.overwrite import guard_outputs

        guard_outputs([args.json], force=bool(getattr(args, "force", False)), command="plan", out_flag="--json")
    p = plan(
        cfg,
        getattr(args, "node", "h100x8") or "h100x8",
        getattr(args, "problems", None),
        getattr(args, "throughput", None),
        params=params,
        tails=opt,
        share_gpus={"yes": True, "no": False}.get(str(getattr(args, "share_gpus", "auto")), "auto"),
    )
    print(format_plan(p))
    from pipeline.planning.kv import format_plan_kv, plan_kv

    print("\n" + format_plan_kv(plan_kv(cfg, p)))
    if getattr(args, "json", None):
        from pipeline.store.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps(as_dict(p), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m pipeline.commands.plan ...`): the same as `crosscot plan ...`."""
    from pipeline.cli import main as cli_main

    return cli_main(["plan", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
