"""The ``crosscot`` command line (also ``python -m pipeline``).

``crosscot run [hydra overrides...]`` runs the DAG (``-m`` for a Hydra
multirun sweep); the other subcommands live in :mod:`pipeline.commands`, one
module each with a one-line ``HELP``, ``add_arguments`` and ``run``.  A command
runs with only its own module imported; ``crosscot --help`` imports them all for
their ``HELP`` lines (none imports an engine, Ray or a plotting library at the top).
"""

from __future__ import annotations

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
    # The study's other tables.
    "import-genex-ii": "import_genex_ii",
    "ratings": "ratings",
    "faults": "faults",
    "analyses": "analyses",
    "view": "view",
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command; every command's user errors go through :func:`pipeline.errors.run_command`."""
    from pipeline.errors import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    cmd_argv = [a for a in argv if a != "--debug"]  # --debug: tracebacks for user errors too
    if cmd_argv and cmd_argv[0] == "run":
        from pipeline.hydra_app import run_cli

        return run_command(lambda: run_cli(cmd_argv[1:]), argv)
    from pipeline.cli_args import OneLineParser

    parser = OneLineParser(  # argparse errors as one line with did-you-mean, like every user error
        prog="crosscot",
        description="Cross-model consistency of reasoning models' chains of thought.",
        epilog="crosscot run [overrides]  runs the pipeline (Hydra overrides, e.g. experiment=demo; -m for sweeps). "
        "--debug (or HYDRA_FULL_ERROR=1) shows tracebacks for user errors.",
    )
    parser.add_argument("--debug", action="store_true", help="show a traceback for user errors too")
    sub = parser.add_subparsers(dest="command", metavar="{run," + ",".join(COMMANDS) + "}")
    sub.add_parser("run", help="run the pipeline DAG with Hydra overrides")
    if len(cmd_argv) >= 1 and cmd_argv[0] in COMMANDS:
        mod = importlib.import_module(f"pipeline.commands.{COMMANDS[cmd_argv[0]]}")
        p = sub.add_parser(cmd_argv[0], help=mod.HELP)
        mod.add_arguments(p)
        args = parser.parse_args(cmd_argv)
        return run_command(lambda: mod.run(args), argv)
    for name, module in COMMANDS.items():
        sub.add_parser(name, help=importlib.import_module(f"pipeline.commands.{module}").HELP)
    args = parser.parse_args(cmd_argv)
    parser.print_help()
    return 0 if args.command is None else 2


if __name__ == "__main__":
    sys.exit(main())
