"""The ``crosscot`` subcommands other than ``run``, one module each, registered in :data:`pipeline.cli.COMMANDS`."""
