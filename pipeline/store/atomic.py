"""The project's one atomic writer: a reader never sees a half-written file, a killed run leaves none.

Every file the pipeline publishes (artifacts, shards, tables, figures' pages, skip records,
copies) is written through :func:`atomic_path`: the writer fills a temporary file beside the
target under a unique name (``mkstemp``: concurrent writers never share it), the file is
fsynced, ``os.replace`` d over the target, and the folder is fsynced so the rename itself
survives a crash.  On any error the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _fsync_dir(folder: Path) -> None:
    # Makes the rename durable; some filesystems refuse to open a folder for fsync (then: best effort).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        return  # best effort (see above); the folder is closed below
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; write it, and on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def copy_atomic(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)
