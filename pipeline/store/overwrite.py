"""The overwrite policy every writing command shares: nothing already there is replaced silently.

* Writing over an existing result (a run's answers, scored rows, tables, report, an output file)
  needs ``--force``; without it the command stops, before it computes anything, with one line
  naming the file and both ways out (``--force``, or another output path).
* An input is never an output: a command given the same file (or folder) as input and output is
  refused even with ``--force``, since the input would be gone before it was read.
* An output path must be writable: a file where a folder belongs, or a folder nobody may write,
  is reported here, up front, instead of half-way through.

:func:`guard_outputs` is the one check; commands call it with the files they are about to write.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from pipeline.errors import UserError


class OverwriteError(UserError):
    """An output would replace an existing result (or an input) without ``--force``."""


def _resolved(p: os.PathLike | str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(p))))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def guard_outputs(
    outputs: Iterable[os.PathLike | str],
    *,
    force: bool,
    inputs: Iterable[os.PathLike | str] = (),
    command: str,
    out_flag: str = "--out",
    folder: Optional[os.PathLike | str] = None,
) -> None:
    """Refuse to write ``outputs`` over existing files (unless ``force``) or over ``inputs`` (ever).

    ``folder`` (the output folder, when the command writes into one) must be a folder we can write;
    it is not created here."""
    outs = [_resolved(p) for p in outputs]
    ins = [_resolved(p) for p in inputs]
    for i in ins:
        for o in outs:
            if o == i or (i.is_file() and _inside(i, o)):
                raise OverwriteError(
                    f"{command}: {o} is also an input; an input is never an output: choose another {out_flag}"
                )
    if folder is not None:
        check_writable_folder(folder, command)
    for o in outs:  # the folder each file goes into: a file in the way, no permission
        if not o.is_dir():
            check_writable_folder(o.parent, command, "output", target=o)
    existing = [o for o in outs if o.exists()]
    if existing and not force:
        shown = ", ".join(str(o) for o in existing[:3]) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        )
        raise OverwriteError(
            f"{command}: {shown} already exist{'s' if len(existing) == 1 else ''} and would be "
            f"replaced; pass --force to replace, or choose another {out_flag}"
        )


def check_writable_folder(
    folder: os.PathLike | str, command: str, what: str = "output folder", target: Optional[os.PathLike | str] = None
) -> None:
    """``folder`` is (or can become) a folder this process can write into; else one line naming it
    (and ``target``, the file to be written there, when given)."""
    if not str(folder).strip():
        raise UserError(f"{command}: the {what} is an empty path; give a folder name")
    f = _resolved(folder)
    named = _resolved(target) if target is not None else f
    probe = f
    while not probe.exists():  # the nearest existing ancestor decides whether it can be created
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserError(
            f"{command}: {probe} is a file where the {what} {named} needs a folder; "
            "choose another path (or move the file away)"
        )
    try:
        fd, name = tempfile.mkstemp(prefix=".crosscot-write-probe-", dir=probe)
    except OSError as e:
        raise UserError(
            f"{command}: cannot write into {probe} ({e.strerror or e}) for the {what} {named}; "
            "choose a folder you can write"
        ) from None
    os.close(fd)
    os.unlink(name)


# What marks a folder as holding a run's results (import, pipeline run, scoring).
RUN_RESULTS = ("answers.arrow", "ii_comparisons.arrow", "scored.arrow", "config.json", "report.md")


def guard_run_folder(out: os.PathLike | str, inputs: Iterable[os.PathLike | str], force: bool, command: str) -> None:
    """An importer's output folder: writable, not an input, and holding no run's results (unless ``force``)."""
    o = _resolved(out)
    for i in inputs:
        r = _resolved(i)
        if _inside(o, r):  # writing into the input folder (or over the input file)
            raise OverwriteError(
                f"{command}: --out {out} overlaps the input {i}; an input is never an output: choose another --out"
            )
    guard_outputs([o / n for n in RUN_RESULTS], force=force, inputs=inputs, command=command, folder=o)


def guard_scored(run_dir: Path, force: bool, command: str) -> None:
    """``score``: scored.arrow and the tables already in ``run_dir`` are replaced only with ``force``."""
    tables = sorted((run_dir / "tables").glob("*.csv")) if (run_dir / "tables").is_dir() else []
    guard_outputs([run_dir / "scored.arrow", *tables], force=force, command=command, out_flag="run directory")
