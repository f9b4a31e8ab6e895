"""The Store contract (augpipe/store/base.py), kept the same way by the local and the S3 store."""

from __future__ import annotations

import hashlib
import inspect
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from augpipe.errors import SkipInput
from augpipe.store import ArrowStore, LocalStore, Store, open_store
from augpipe.store.base import read_source
from conftest import RefusingStore


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return open_store(tmp_path / "root")
    bucket = request.getfixturevalue("bucket")
    return open_store(f"s3://{bucket}/root")


@pytest.mark.parametrize("cls", [LocalStore, ArrowStore])
def test_each_store_has_every_method_of_the_protocol_with_its_parameters(cls):
    wanted = {name: inspect.signature(getattr(Store, name)) for name in dir(Store)
              if not name.startswith("_") and callable(getattr(Store, name))}
    for name, signature in wanted.items():
        mine = inspect.signature(getattr(cls, name))
        assert list(mine.parameters) == list(signature.parameters), name


def test_both_stores_are_stores(store):
    assert isinstance(store, Store)
    assert not hasattr(store, "local")  # nothing may ask which kind a store is


def test_write_read_list_size_and_delete(store):
    store.makedirs()
    store.write_bytes("a/x.bin", b"one")
    store.write_bytes("b.txt", "é\n".encode())
    assert store.read_bytes("a/x.bin") == b"one" and store.read_text("b.txt") == "é\n"
    assert store.exists("a/x.bin") and store.is_file("a/x.bin") and not store.is_file("a")
    assert store.size("a/x.bin") == 3 and store.size("nothing") is None
    assert store.names() == ["a", "b.txt"]
    assert [e.name for e in store.list_files()] == ["a/x.bin", "b.txt"]
    with pytest.raises(FileNotFoundError):
        store.read_bytes("nothing")
    store.delete("b.txt")
    store.delete("b.txt")  # what is not there is no error
    store.delete_tree("a")
    assert store.names() == []


def test_sha256_is_the_content_s_and_none_without_the_file(store):
    store.makedirs()
    store.write_bytes("f", b"x" * (3 << 20))
    assert store.sha256("f") == hashlib.sha256(b"x" * (3 << 20)).hexdigest()
    assert store.sha256("missing") is None


def test_read_many_gives_every_name_in_order_with_its_failure_returned(store):
    store.makedirs()
    names = [f"n{i:02d}" for i in range(20)]
    for n in names:
        store.write_bytes(n, n.encode())

    def read(name):
        try:
            return read_source(store, name)
        except SkipInput as exc:
            return exc.reason

    got = list(store.read_many([*names, "gone"], read, ahead=4))
    assert got == [(n, n.encode()) for n in names] + [("gone", "vanished during the run (not found)")]
    assert list(store.read_many(["n00"])) == [("n00", b"n00")]


def test_arrow_gives_a_filesystem_and_paths_pyarrow_reads(store, tmp_path):
    store.makedirs()
    table = pa.table({"a": [1, 2, 3]})
    pq.write_table(table, tmp_path / "t.parquet")
    store.publish(tmp_path / "t.parquet", "t.parquet")
    fs, paths = store.arrow(["t.parquet"])
    with fs.open_input_file(paths[0]) as fh:
        assert pq.read_table(fh).equals(table)
    assert pq.ParquetFile(store.open_input("t.parquet")).metadata.num_rows == 3


def test_create_exclusive_writes_once_or_cannot_tell(store):
    store.makedirs()
    first = store.create_exclusive("lock", b"1")
    assert first in (True, None)
    if first:
        assert store.create_exclusive("lock", b"2") is False and store.read_bytes("lock") == b"1"


def test_a_file_in_the_way_is_said_by_the_local_store_only(store, tmp_path):
    assert store.not_a_folder() is None
    if isinstance(store, LocalStore):
        (tmp_path / "afile").write_text("x")
        assert open_store(tmp_path / "afile" / "out").not_a_folder() == f"{tmp_path / 'afile'} is a file, not a folder"
        assert open_store(tmp_path).canonical() == str(tmp_path.resolve())
    else:
        assert store.canonical() == store.uri


@pytest.mark.parametrize("exc", [pa.ArrowInvalid("Empty path component in path a//b.jpg"),
                                 pa.ArrowNotImplementedError("no"), OSError()])
def test_pyarrow_errors_reading_one_key_are_a_recorded_skip(exc):
    with pytest.raises(SkipInput, match="cannot read"):
        read_source(RefusingStore(exc), "a//b.jpg")


def test_a_store_says_whether_its_reads_wait(store):
    """Local files just written and read are in memory; an object store's reads are round trips."""
    store.write_bytes("a/x.bin", b"x" * 50_000)
    store.read_bytes("a/x.bin")
    assert store.in_memory(["a/x.bin"]) is (isinstance(store, LocalStore) and hasattr(os, "RWF_NOWAIT"))
