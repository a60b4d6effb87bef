"""User errors and the CLI's one way of reporting them.

A *user error* is something the user can fix (a bad override, a missing file, an unknown name):
every command reports it as one line ``crosscot: error: <what is wrong>; <how to fix it>`` on
stderr and exits 2, before any engine starts.  A traceback is printed only with ``--debug`` (or
``HYDRA_FULL_ERROR=1`` / ``CROSSCOT_DEBUG=1``).  Anything else is a bug and keeps its traceback.

:func:`run_command` is the one place that does this; :mod:`pipeline.cli` wraps every command in it.
"""

from __future__ import annotations

import difflib
import os
import sys
import traceback
from typing import Callable, Iterable

EXIT_USER_ERROR = 2


class UserError(ValueError):
    """Something the user can fix; the message names what is wrong and the fix."""


def did_you_mean(value: object, allowed: Iterable[object]) -> str:
    """`` (did you mean 'x'?)`` for the closest allowed value, or ``""``."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def debug_enabled(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("CROSSCOT_DEBUG") == "1"


def _user_error_types() -> tuple[type, ...]:
    """Exception types that are user errors (imported here, at error time, to keep startup cheap)."""
    types: list[type] = [UserError]
    for mod, name in (
        ("pipeline.provision.models", "ModelNotFound"),
        ("pipeline.provision.gguf", "GGUFProvisionError"),
        ("pipeline.importers.genex_medcalc", "GenexImportError"),
        ("pipeline.datasets.medcalc", "MedCalcLoadError"),
        ("pipeline.planning.throughput", "PlanError"),
        ("pipeline.planning.cluster", "PlacementError"),
        ("hydra.errors", "HydraException"),
        ("omegaconf.errors", "OmegaConfBaseException"),
    ):
        try:
            mod_obj = __import__(mod, fromlist=[name])
            types.append(getattr(mod_obj, name))
        except (ImportError, AttributeError):
            continue
    return tuple(types)


def one_line(e: BaseException) -> str:
    """The error as one line naming the fix (Hydra's multi-line messages folded, fixes added)."""
    msg = str(e) or type(e).__name__
    if type(e).__module__.startswith("hydra."):  # raised by Hydra itself, not through config.compose
        from pipeline.config.load import composition_error

        msg = str(composition_error(e, []))
    return " ".join(msg.split())


def report(e: BaseException) -> None:
    print(f"crosscot: error: {one_line(e)}", file=sys.stderr)


def run_command(fn: Callable[[], int], argv: list[str]) -> int:
    """Run one CLI command; user errors -> one line on stderr and exit 2 (traceback with --debug)."""
    debug = debug_enabled(argv)
    try:
        return int(fn() or 0)
    except _user_error_types() as e:
        if debug:
            traceback.print_exc()
        report(e)
        return EXIT_USER_ERROR
    except (OSError, UnicodeDecodeError) as e:  # the one file-system path (pipeline.errors_fs)
        from pipeline.errors_fs import user_line

        line = user_line(e)
        if line is None:  # not the file system's (a socket, an engine): a bug keeps its traceback
            raise
        if debug:
            traceback.print_exc()
        print(f"crosscot: error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("crosscot: interrupted", file=sys.stderr)
        return 130
