"""The one error path for the file system: an ``OSError`` or undecodable text as one user-error line.

Permission denied, a read-only file system, a file where a folder is expected (or the other way
round), a full disk, text that is not UTF-8: each is something the user fixes, so every
subcommand reports it through :func:`pipeline.errors.run_command` as one line naming the path and
the fix, never a traceback.  :func:`os_error_message` builds that line; :func:`read_utf8` reads a
text file and names the file when its bytes are not UTF-8.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Optional

# errno -> (what is wrong, how to fix it); {path} is the path the error names.
_FS_ERRORS: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied: {path}", "choose a path you can write and read, or fix its permissions"),
    errno.EPERM: ("operation not permitted on {path}", "choose a path you can write, or fix its permissions"),
    errno.EROFS: ("{path} is on a read-only file system", "write the output somewhere writable"),
    errno.EISDIR: ("{path} is a folder where a file is expected", "give the path of a file"),
    errno.ENOTDIR: (
        "{path}: a file is in the way where a folder is expected",
        "give a folder path (or move the file away)",
    ),
    errno.ENOSPC: ("no space left on the device while writing {path}", "free disk space or write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded while writing {path}", "free space or write elsewhere"),
    errno.ENOENT: ("{path} not found", "check the path"),
    errno.EEXIST: ("{path} already exists", "choose another path, or remove it"),
    errno.ENAMETOOLONG: ("the path {path} is too long", "use a shorter path"),
    errno.ELOOP: ("{path} is a symlink loop", "fix the link"),
    errno.ENOTEMPTY: ("{path} is a folder that is not empty", "choose another path, or empty it"),
    errno.EMFILE: ("too many open files while opening {path}", "raise `ulimit -n`"),
}
FS_ERRNOS = frozenset(_FS_ERRORS)


def is_fs_error(e: BaseException) -> bool:
    """An OSError of the file system (one the user fixes), not a network or engine failure."""
    return isinstance(e, OSError) and (e.errno in FS_ERRNOS or e.filename is not None)


def os_error_message(e: OSError) -> str:
    """``<what is wrong>; <fix>`` for a file-system ``OSError`` (the path it names, else its text)."""
    path = e.filename if e.filename is not None else "a path"
    if e.filename2 is not None:
        path = f"{e.filename} -> {e.filename2}"
    what, fix = _FS_ERRORS.get(e.errno or -1, (f"{e.strerror or e}: {{path}}", "check the path"))
    return f"{what.format(path=path)}; {fix}"


def unicode_message(e: UnicodeDecodeError, path: Optional[os.PathLike | str] = None) -> str:
    where = f"{path} is" if path is not None else "an input file is"
    bad = e.object[e.start : e.start + 1].hex() if isinstance(e.object, (bytes, bytearray)) else "?"
    return (
        f"{where} not UTF-8 text (byte 0x{bad} at offset {e.start}); save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
    )


class NotUtf8(OSError):
    """A text file whose bytes are not UTF-8 (an OSError, so the one file-system path reports it)."""

    def __init__(self, path: os.PathLike | str, err: UnicodeDecodeError):
        super().__init__(errno.EILSEQ, unicode_message(err, path), str(path))
        self.message = unicode_message(err, path)

    def __str__(self) -> str:
        return self.message


def read_utf8(path: os.PathLike | str) -> str:
    """The text of ``path``; bytes that are not UTF-8 raise :class:`NotUtf8` naming the file."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise NotUtf8(path, e) from None


def user_line(e: BaseException) -> Optional[str]:
    """The one line for a file-system or text-encoding error, or None when ``e`` is neither."""
    if isinstance(e, NotUtf8):
        return e.message
    if isinstance(e, UnicodeDecodeError):
        return unicode_message(e)
    if is_fs_error(e):
        return os_error_message(e)  # type: ignore[arg-type]
    if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return f"{e}; check the path"  # raised with a message of ours (no errno)
    return None
