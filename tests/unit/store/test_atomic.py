"""The one atomic writer: the target is replaced whole or not at all, and no temporary file is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.store.atomic import atomic_path, copy_atomic, write_text_atomic


def test_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path):
    p = tmp_path / "sub" / "out.txt"
    write_text_atomic(p, "first")
    write_text_atomic(p, "second")
    assert p.read_text() == "second"
    assert sorted(x.name for x in p.parent.iterdir()) == ["out.txt"]


def test_failed_write_keeps_old_target_and_removes_temp(tmp_path: Path):
    p = tmp_path / "out.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["out.txt"]


def test_concurrent_writers_get_distinct_temp_files_beside_target(tmp_path: Path):
    p = tmp_path / "out.txt"
    with atomic_path(p) as a, atomic_path(p) as b:
        assert a != b and a.parent == b.parent == tmp_path
        a.write_text("a")
        b.write_text("b")
    assert p.read_text() == "a"  # the outer writer finishes last and wins, whole


def test_copy_atomic(tmp_path: Path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00\x01" * 1000)
    dest = copy_atomic(src, tmp_path / "d" / "dest.bin")
    assert dest.read_bytes() == src.read_bytes()
