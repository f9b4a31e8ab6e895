"""Stores: one listing rule for every store, URIs normalised before any check, exclusive locks."""

from __future__ import annotations

import json
import os
import threading

import boto3
import pyarrow.parquet as pq
import pytest

from augpipe.errors import RunLockedError, StoreError
from augpipe.output import LOCK, RunLock
from augpipe.store import LocalStore, normalise_location, open_store
from conftest import make_folder, upload, write_image


@pytest.mark.parametrize("uri", ["s3://out/../other/trav", "s3://out/%2e%2e/other/t3", "s3://out/./x",
                                 "s3://out/a//b", "s3://out/a%2Fb", "gs://out/%2E%2E/x"])
def test_uris_that_climb_are_refused_before_any_check(uri):
    with pytest.raises(StoreError, match="refused in an object-store URI"):
        normalise_location(uri)
    with pytest.raises(StoreError):
        open_store(uri)


def test_a_trailing_slash_is_normalised_and_local_paths_are_left_to_the_os():
    assert normalise_location("s3://b/photos/") == "s3://b/photos"
    assert normalise_location("s3://b/x?anonymous=true") == "s3://b/x?anonymous=true"
    assert normalise_location("data/../data") == "data/../data"


def test_expand_to_a_climbing_uri_writes_nothing(cli, folder, s3_server, bucket):
    other = boto3.client("s3").create_bucket(Bucket=f"{bucket}-other") and f"{bucket}-other"
    for out in (f"s3://{bucket}/../{other}/trav", f"s3://{bucket}/%2e%2e/{other}/t3"):
        done = cli("expand", folder, "-r", "flips", "--copies", "0", "-o", out, "-q")
        assert done.exit_code == 2 and "refused in an object-store URI" in done.output, done.output
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=other)
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=bucket)


def test_s3_and_local_listings_follow_one_rule(cli, tmp_path, s3_server, bucket):
    """Hidden files and folders are no part of a dataset, on disk or in a bucket: the same shards."""
    data = make_folder(tmp_path / "data", per_class=3)
    write_image(data / "cat" / ".ipynb_checkpoints" / "cat_000-checkpoint.jpg", seed=99)
    write_image(data / "weird" / ".hidden" / "h.jpg", seed=98)
    write_image(data / "weird" / "w.jpg", seed=97)
    (data / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    upload(data, f"s3://{bucket}/data")
    local = cli("expand", data, "-r", "flips", "-o", tmp_path / "local", "-q")
    remote = cli("expand", f"s3://{bucket}/data", "-r", "flips", "-o", tmp_path / "remote", "-q")
    assert local.exit_code == 0 and remote.exit_code == 0, local.output + remote.output
    manifests = [json.loads((tmp_path / d / "_augpipe.json").read_text()) for d in ("local", "remote")]
    for m in manifests:
        assert m["classes"] == ["cat", "dog", "weird"] and not m.get("skipped")
    tables = [pq.read_table(tmp_path / d, columns=["source", "copy"]).sort_by("source") for d in ("local", "remote")]
    assert tables[0].equals(tables[1])
    assert not any("/." in s for s in tables[0].column("source").to_pylist())


def test_an_object_key_that_climbs_is_a_recorded_skip(cli, tmp_path, s3_server, bucket):
    data = make_folder(tmp_path / "data", per_class=2)
    upload(data, f"s3://{bucket}/data")
    body = (data / "cat" / "cat_000.jpg").read_bytes()
    boto3.client("s3").put_object(Bucket=bucket, Key="data/cat/../dog/x.jpg", Body=body)
    done = cli("expand", f"s3://{bucket}/data", "-r", "flips", "-o", tmp_path / "out", "-q")
    assert done.exit_code == 0, done.output
    skipped = json.loads((tmp_path / "out" / "_augpipe.json").read_text())["skipped"]
    assert [s["reason"] for s in skipped] == [
        "its key has an empty, '.' or '..' part, which cannot be read as a path: rename the object"], skipped


def test_a_link_to_a_sibling_class_does_not_relabel_it(cli, tmp_path):
    data = make_folder(tmp_path / "data", per_class=3)
    os.symlink("../dog", data / "cat" / "dogs")
    entries = {e.name: e.problem for e in LocalStore(data).list_files()}
    assert entries["cat/dogs"] == "a link to a folder read in its own place (dog/)"
    assert "dog/dog_000.jpg" in entries and not any(n.startswith("cat/dogs/") for n in entries)
    done = cli("expand", data, "-r", "flips", "--copies", "0", "--val-fraction", "0", "-o", tmp_path / "out", "-q")
    assert done.exit_code == 0, done.output
    rows = pq.read_table(tmp_path / "out", columns=["source", "label"]).to_pylist()
    assert sorted((r["source"], r["label"]) for r in rows) == sorted(
        [(f"cat/cat_{i:03d}.jpg", 0) for i in range(3)] + [(f"dog/dog_{i:03d}.jpg", 1) for i in range(3)])


def test_a_link_to_a_folder_outside_is_read_through_it(tmp_path):
    make_folder(tmp_path / "elsewhere", classes=("bird",), per_class=2)
    data = make_folder(tmp_path / "data", per_class=1)
    os.symlink(tmp_path / "elsewhere" / "bird", data / "bird")
    names = [e.name for e in LocalStore(data).list_files() if not e.problem]
    assert names == ["bird/bird_000.jpg", "bird/bird_001.jpg", "cat/cat_000.jpg", "dog/dog_000.jpg"]


def test_the_s3_lock_is_exclusive_when_runs_start_together(s3_server, bucket):
    """Eight runs take one folder's lock at the same instant: exactly one holds it."""
    store = open_store(f"s3://{bucket}/tws3")
    won, refused, barrier = [], [], threading.Barrier(8)

    def take():
        barrier.wait()
        try:
            won.append(RunLock.acquire(store))
        except RunLockedError:
            refused.append(1)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7
    assert json.loads(store.read_bytes(LOCK))["token"] == won[0].token


def test_the_conditional_put_refuses_an_existing_object(s3_server, bucket):
    store = open_store(f"s3://{bucket}/x")
    assert store.create_exclusive("a", b"1") is True
    assert store.create_exclusive("a", b"2") is False
    assert store.read_bytes("a") == b"1"


def _probe(item, job, progress):
    return os.environ.get("AUGPIPE_PROBE")


class _Item:
    cost = 1


def test_workers_take_the_environment_of_now_not_the_fork_servers(folder, tmp_path, monkeypatch):
    """Credentials or an endpoint set after a first run (a fork server started then) reach the
    workers of the next: a library user's S3 run does not go to AWS instead of their server."""
    from augpipe import ExpandOptions, expand
    from augpipe.engines.local import LocalEngine

    expand(folder, "flips", tmp_path / "first", ExpandOptions(workers=2, progress=False))
    monkeypatch.setenv("AUGPIPE_PROBE", "set later")
    with LocalEngine(2) as engine:
        assert set(engine.map(_probe, [_Item(), _Item(), _Item()], None, lambda n: None)) == {"set later"}


@pytest.mark.parametrize("uri", ["s3://out/y%0Az", "s3://out/y%00z", "s3://out/x/.%00", "s3://out/a\tb"])
def test_control_characters_in_a_uri_are_refused(uri):
    with pytest.raises(StoreError, match="refused in an object-store URI"):
        normalise_location(uri)


@pytest.mark.parametrize("source, out", [
    ("s3://src/cls1?region=us-east-1", "s3://src/cls1/out"), ("s3://src/cls1", "s3://src/cls1/out?region=x"),
    ("S3://src/cls1", "s3://src/cls1/out"), ("file://{tmp}/cls", "{tmp}/cls/out"), ("{tmp}/cls", "file://{tmp}/cls/o")])
def test_an_output_inside_its_source_is_refused_however_spelt(source, out, tmp_path):
    from augpipe.errors import OutputError
    from augpipe.pipeline import _check_not_nested

    with pytest.raises(OutputError, match="inside the source"):
        _check_not_nested(source.format(tmp=tmp_path), out.format(tmp=tmp_path))
    _check_not_nested(f"{tmp_path}/cls", f"{tmp_path}/cls-x")
    _check_not_nested("s3://src/cls1", "s3://src/cls10")


def test_a_file_linked_into_a_sibling_class_is_read_once_in_its_own_place(cli, tmp_path):
    data = make_folder(tmp_path / "data", per_class=2)
    os.symlink("../cat/cat_000.jpg", data / "dog" / "dup.jpg")
    make_folder(tmp_path / "elsewhere", classes=("bird",), per_class=1)
    os.symlink(tmp_path / "elsewhere" / "bird" / "bird_000.jpg", data / "dog" / "outside.jpg")
    entries = {e.name: e.problem for e in LocalStore(data).list_files()}
    assert entries["dog/dup.jpg"] == "a link to a file read in its own place (cat/cat_000.jpg)"
    assert entries["dog/outside.jpg"] is None  # nothing else reaches it: read through its link


def test_copies_are_bounded_before_any_work(cli, folder, tmp_path):
    done = cli("expand", folder, "-r", "flips", "--copies", "30000000", "-o", tmp_path / "out", "-q")
    assert done.exit_code == 2 and "--copies must be 0 to 1,000" in done.output
    assert not (tmp_path / "out").exists()


def test_a_folder_where_a_file_is_is_one_line(cli, folder, tmp_path):
    (tmp_path / "afile").write_text("mine")
    done = cli("preview", folder, "-r", "flips", "--out", tmp_path / "afile" / "x.png")
    assert done.exit_code == 2 and "a file is in the way" in done.output and "Traceback" not in done.output
