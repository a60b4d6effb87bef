"""The ``crosscot`` command line (also ``python -m pipeline``).

``crosscot run [hydra overrides...]`` runs the DAG (``-m`` for a Hydra
multirun sweep); the other subcommands live in :mod:`pipeline.commands` and
are imported only when called, so ``crosscot --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module in pipeline.commands (imported lazily)
COMMANDS = {
    "import-genex": "import_genex",
    "score": "score",
    "report": "report",
    "plan": "plan",
    "models": "models",
    "judge": "judge",
    "prompts": "prompts",
    "bench": "bench",
    # The study's other tables (issue 11).
    "import-genex-ii": "import_genex_ii",
    "ratings": "ratings",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        from pipeline.hydra_app import run_cli

        return run_cli(argv[1:])
    parser = argparse.ArgumentParser(
        prog="crosscot",
        description="Cross-model consistency of reasoning models' chains of thought.",
        epilog="crosscot run [overrides]  runs the pipeline (Hydra overrides, e.g. experiment=demo; -m for sweeps)",
    )
    sub = parser.add_subparsers(dest="command", metavar="{run," + ",".join(COMMANDS) + "}")
    sub.add_parser("run", help="run the pipeline DAG with Hydra overrides")
    if len(argv) >= 1 and argv[0] in COMMANDS:
        mod = importlib.import_module(f"pipeline.commands.{COMMANDS[argv[0]]}")
        p = sub.add_parser(argv[0], help=getattr(mod, "HELP", ""))
        mod.add_arguments(p)
        args = parser.parse_args(argv)
        return int(mod.run(args) or 0)
    for name in COMMANDS:
        sub.add_parser(name, help=f"see 'crosscot {name} --help'")
    args = parser.parse_args(argv)
    parser.print_help()
    return 0 if args.command is None else 2


if __name__ == "__main__":
    sys.exit(main())
