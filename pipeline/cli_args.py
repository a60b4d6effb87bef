"""argparse the way our errors read: one ``crosscot: error:`` line with did-you-mean, exit 2.

:class:`OneLineParser` replaces argparse's usage dump with one line naming what is wrong and the
fix (the valid choices and the closest one, the closest option for an unknown flag, the command's
``--help``).  Sub-parsers inherit the class, so every subcommand's arguments read the same.
:func:`out_path` is the ``type=`` of output paths: an empty one is refused instead of meaning
"the current folder".
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import NoReturn

from pipeline.errors import EXIT_USER_ERROR, did_you_mean


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (see module docstring)."""

    def error(self, message: str) -> NoReturn:
        print(f"crosscot: error: {self.one_line(message)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)

    def one_line(self, message: str) -> str:
        prog = self.prog
        who = prog.split(" ", 1)[1] + ": " if " " in prog else ""  # "score: ...", never "crosscot: crosscot: ..."
        m = re.match(r"argument (\S+): invalid choice: '?(.*?)'? \(choose from (.*)\)$", message)
        if m:
            arg, value, raw = m.groups()
            choices = [c.strip().strip("'\"") for c in raw.split(",")]
            what = (
                "command"
                if arg in ("command", "{" + raw.replace("'", "").replace(" ", "") + "}") or arg.startswith("{")
                else arg
            )
            return f"{who}{what} {value!r} is not one of {choices}{did_you_mean(value, choices)}; see `{prog} --help`"
        m = re.match(r"unrecognized arguments: (.*)$", message)
        if m:
            first = m.group(1).split()[0]
            parser: argparse.ArgumentParser = self
            for a in self._actions:  # the subcommand that was called (the one given its arguments)
                if isinstance(a, argparse._SubParsersAction):
                    called = [p for p in a.choices.values() if len(p._actions) > 1]
                    if len(called) == 1:
                        parser = called[0]
            flags = [s for a in parser._actions for s in a.option_strings]
            who = parser.prog.split(" ", 1)[1] + ": " if " " in parser.prog else ""
            return f"{who}unknown argument {first!r}{did_you_mean(first, flags)}; see `{parser.prog} --help`"
        return f"{who}{' '.join(message.split())}; see `{prog} --help`"


def out_path(value: str) -> Path:
    """``type=`` of an output path: not empty (an empty path would write into the current folder)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("empty output path; give a folder or file name")
    return Path(value)
