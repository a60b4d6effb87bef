"""Content fingerprints of files and folders, so artifact keys follow content and never a path.

Two kinds:

* :func:`data_fingerprint`: the SHA-256 of every byte of a data file (or of every file in a data
  folder, with their relative names).  Editing one row anywhere changes it.
* :func:`weights_fingerprint`: a model folder's identity without reading tens of GB: every file's
  relative name and size, the full hash of the small files (``config.json``, tokenizer files,
  chat templates) and, for weight files (``*.safetensors``, ``*.bin``, ``*.gguf``, ...), a hash of
  their first and last MiB.  Weight files carry their header (tensor names, shapes, dtypes) at the
  start, so any re-export, different shard or different dtype changes the first MiB.

Both are computed once per process and file state: the cache key is the folder's real path plus
every file's (name, size, mtime), so a rewritten file is re-hashed and an untouched one is not.
The path is only the cache key, never part of a fingerprint: the same content in another place
(another checkout, another ``$HOME``) has the same fingerprint.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

SAMPLE_BYTES = 1 << 20  # first and last MiB of each weight file
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack", ".npz")
# Small files above this size are sampled like weights (a 200 MB tokenizer is not a config file).
FULL_HASH_LIMIT = 64 << 20

_cache: dict[tuple, str] = {}


def _files(root: Path) -> list[Path]:
    """Files under ``root`` (following links: hub snapshots are links to blobs), hidden ones left out.

    Hidden files are our own markers (``.crosscot-tiny``, ``.crosscot-gguf.json``) and caches
    (``.cache/``, ``.git/``); they do not change what an engine or loader reads.
    """
    if root.is_file():
        return [root]
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return out


def _signature(root: Path, files: Iterable[Path]) -> tuple:
    sig = []
    for f in files:
        st = f.stat()
        sig.append((str(f.relative_to(root)) if f != root else f.name, st.st_size, st.st_mtime_ns))
    return tuple(sig)


def _hash_file(path: Path, sample: bool) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if sample and size > 2 * SAMPLE_BYTES:
            h.update(fh.read(SAMPLE_BYTES))
            fh.seek(size - SAMPLE_BYTES)
            h.update(fh.read(SAMPLE_BYTES))
        else:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _fingerprint(path: str | os.PathLike, mode: str) -> str:
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    real = root.resolve()
    files = _files(real)
    sig = _signature(real, files)
    key = (mode, str(real), sig)
    if key in _cache:
        return _cache[key]
    h = hashlib.sha256(mode.encode())
    for f, (rel, size, _mtime) in zip(files, sig):
        if mode == "weights":
            sample = f.suffix in WEIGHT_SUFFIXES or size > FULL_HASH_LIMIT
        else:
            sample = False
        # Relative names only (a single file is named by its own name: renaming a data file is not
        # a content change, so a lone file contributes only its bytes).
        name = "" if real.is_file() else rel
        h.update(f"{name}\0{size}\0{_hash_file(f, sample)}\n".encode())
    digest = h.hexdigest()[:32]
    _cache[key] = digest
    return digest


def data_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 (32 hex) over every byte of a data file, or of a folder's files and their relative names."""
    return _fingerprint(path, "data")


def weights_fingerprint(path: str | os.PathLike) -> str:
    """Identity of a model folder: names, sizes, small files in full, first/last MiB of weight files."""
    return _fingerprint(path, "weights")


def clear_cache() -> None:
    """Forget cached fingerprints (tests)."""
    _cache.clear()
