"""Artifacts: content hashes, provenance metadata, atomic writes, shard resume without duplicates."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from pipeline.store.artifacts import (
    Store,
    content_hash,
    read_provenance,
    read_table,
    write_table,
)


def test_content_hash_is_order_independent_and_sensitive():
    assert content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_write_is_atomic_and_carries_provenance(tmp_path):
    p = tmp_path / "x.arrow"
    t = pa.table({"k": [1, 2], "v": ["a", "b"]})
    write_table(p, t, {"stage": "s", "args": {"temperature": 0.7}})
    assert read_table(p).equals(t.replace_schema_metadata(read_table(p).schema.metadata))
    prov = read_provenance(p)
    assert prov["stage"] == "s" and prov["args"]["temperature"] == 0.7
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_failed_write_leaves_old_file(tmp_path, monkeypatch):
    p = tmp_path / "x.arrow"
    write_table(p, pa.table({"k": [1]}))

    class Boom(Exception):
        pass

    import pyarrow.ipc as ipc

    def bad(*a, **k):
        raise Boom

    monkeypatch.setattr(ipc, "new_file", bad)
    with pytest.raises(Boom):
        write_table(p, pa.table({"k": [9]}))
    monkeypatch.undo()
    assert read_table(p).column("k").to_pylist() == [1]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_corrupt_file_error_names_path_and_fix(tmp_path):
    p = tmp_path / "bad.arrow"
    p.write_bytes(b"not arrow")
    with pytest.raises(ValueError, match="bad.arrow.*delete it and rerun"):
        read_table(p)


def test_sink_resumes_and_dedups(tmp_path):
    from pipeline.store.sink import RowSink

    store = Store(tmp_path)
    art = store.path("gen", "m", {"x": 1})
    schema = pa.schema([("k", pa.int64()), ("v", pa.string())])
    sh = RowSink(art, schema, ("k",), flush_rows=2)
    sh.add({"k": 2, "v": "b"})
    sh.add({"k": 1, "v": "a"})  # flushed: one shard
    assert sh.done((1,)) and not sh.done((3,))
    again = RowSink(art, schema, ("k",))  # a rerun reads the shard back
    assert again.done((1,)) and again.done((2,)) and not again.done((3,))
    # a row written twice (e.g. killed between the shard and the bookkeeping) does not duplicate
    again.add({"k": 2, "v": "b"})
    again.add({"k": 3, "v": "c"})
    again.finish({"stage": "gen"})
    assert read_table(art).column("k").to_pylist() == [1, 2, 3]
    assert art.exists() and not art.with_suffix(".parts").exists()
    assert read_provenance(art)["stage"] == "gen"
    assert RowSink(art, schema, ("k",)).complete


def test_store_names_by_label_and_hash(tmp_path):
    s = Store(tmp_path)
    a, b = s.path("generate", "QwQ", {"t": 0}), s.path("generate", "QwQ", {"t": 1})
    assert a != b and a.name.startswith("generate-QwQ-") and a.suffix == ".arrow"
