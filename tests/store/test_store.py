"""Opening a store (augpipe/store/__init__.py) and listing a local one (augpipe/store/local.py): URIs
normalised before any check, one listing rule for every store, links and odd file names."""

from __future__ import annotations

import json
import os
import shutil

import boto3
import pyarrow.parquet as pq
import pytest

from augpipe import ExpandOptions, expand
from augpipe.errors import StoreError
from augpipe.store import LocalStore, normalise_location, open_store
from conftest import make_folder, one_line, run, upload, write_image

QUIET = dict(progress=False, workers=1)


def test_a_name_that_is_not_utf8_is_skipped_and_recorded(tmp_path, folder, cli):
    bad = os.path.join(os.fsencode(folder / "cat"), b"caf\xe9.jpg")
    shutil.copy(folder / "cat" / "cat_000.jpg", bad)
    m = expand(folder, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert {"path": "cat/caf\\xe9.jpg", "reason": "file name is not valid UTF-8: rename it"} in m["skipped"]
    result = cli("preview", folder, "-r", "flips", "-o", tmp_path / "p.png")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("uri", ["s3://", "s3:///", "s3://?region=x"])
def test_an_object_store_uri_without_a_bucket_is_one_line(uri):
    from augpipe.errors import StoreError
    from augpipe.store import open_store

    with pytest.raises(StoreError, match="no bucket or path after s3://"):
        open_store(uri)


def test_gs_without_credentials_is_refused_instead_of_waiting_for_a_metadata_server(tmp_path, monkeypatch):
    from augpipe import store
    from augpipe.errors import StoreError

    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.setattr(store, "_on_google_cloud", lambda: False)
    with pytest.raises(StoreError, match="no Google credentials"):
        store.open_store("gs://some-bucket/photos")
    assert store._google_credentials("gs://some-bucket/photos?anonymous=true")
    (tmp_path / "application_default_credentials.json").write_text("{}")
    assert store._google_credentials("gs://some-bucket/photos")


@pytest.mark.parametrize("uri, needle", [
    ("s3://no-such-bucket/photos", "no such bucket"),
    ("nosuch://bucket/photos", "unknown scheme"),
])
def test_bad_uris_are_one_line_before_any_work(data, s3_server, uri, needle):
    for args in (("expand", uri, "-r", "flips"), ("expand", data, "-r", "flips", "-o", uri + "-x")):
        done = run(*args, "-q")
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and uri.split("/")[2] in lines[0], done.stderr


def test_unicode_names_spaces_and_symlinks_including_loops(tmp_path):
    data = tmp_path / "data"
    write_image(data / "chat noir" / "été 1.jpg")
    write_image(data / "狗" / "图片.png", fmt=".png")
    (data / "狗" / "loop").symlink_to(data, target_is_directory=True)
    (data / "chat noir" / "link.jpg").symlink_to(data / "chat noir" / "été 1.jpg")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    assert m["classes"] == ["chat noir", "狗"]
    # a link to a file or folder that is also read in its own place is read once, there
    assert m["counts"]["train"]["originals"] == 2
    assert sorted((s["path"], s["reason"]) for s in m["skipped"]) == [
        ("chat noir/link.jpg", "a link to a file read in its own place (chat noir/été 1.jpg)"),
        ("狗/loop", "a link to a folder read in its own place (./)")]


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


@pytest.mark.parametrize("uri", ["s3://out/y%0Az", "s3://out/y%00z", "s3://out/x/.%00", "s3://out/a\tb"])
def test_control_characters_in_a_uri_are_refused(uri):
    with pytest.raises(StoreError, match="refused in an object-store URI"):
        normalise_location(uri)


def test_a_file_linked_into_a_sibling_class_is_read_once_in_its_own_place(cli, tmp_path):
    data = make_folder(tmp_path / "data", per_class=2)
    os.symlink("../cat/cat_000.jpg", data / "dog" / "dup.jpg")
    make_folder(tmp_path / "elsewhere", classes=("bird",), per_class=1)
    os.symlink(tmp_path / "elsewhere" / "bird" / "bird_000.jpg", data / "dog" / "outside.jpg")
    entries = {e.name: e.problem for e in LocalStore(data).list_files()}
    assert entries["dog/dup.jpg"] == "a link to a file read in its own place (cat/cat_000.jpg)"
    assert entries["dog/outside.jpg"] is None  # nothing else reaches it: read through its link


def test_a_full_disk_names_the_file_that_filled_a_local_shard_or_a_buckets_local_copy(tmp_path, s3_server, bucket):
    """Out of space (here a file-size limit: EFBIG), expand stops in one line naming what filled:
    the shard itself in a local output; for a bucket, the local copy a shard is finished in
    before its upload, not the bucket."""
    import resource
    import subprocess

    from conftest import ENV, augpipe

    data = make_folder(tmp_path / "data", per_class=40, size=96)

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    for out, needle in ((tmp_path / "out", str(tmp_path / "out" / "train-")),
                        (f"s3://{bucket}/x", f"(the local copy of s3://{bucket}/x/train-")):
        result = subprocess.run(augpipe("expand", data, "-r", "flips", "-o", out, "-w", "1", "-q"), env={**ENV, **os.environ},
                                preexec_fn=small_files, capture_output=True, text=True, timeout=120)
        line = one_line(result.stderr)
        assert result.returncode == 2 and "free some space" in line and needle in line, line


def test_files_in_the_page_cache_are_told_from_files_on_the_disk_alone(tmp_path):
    """What decides the content hashing's threads: files just read are in memory; a file written
    around the page cache (augpipe's shard file, O_DIRECT) is on the disk alone."""
    from augpipe.shards import _HashingFile
    from augpipe.shards import file_system_in_memory
    from augpipe.store.local import in_page_cache

    warm = [tmp_path / f"w{i}.bin" for i in range(20)]
    for path in warm:
        path.write_bytes(os.urandom(50_000))
        path.read_bytes()
    assert in_page_cache(warm) is hasattr(os, "RWF_NOWAIT")
    assert in_page_cache([]) is False and in_page_cache([tmp_path / "missing"]) is hasattr(os, "RWF_NOWAIT")
    sink = _HashingFile(tmp_path / "cold.bin")
    direct = bool(sink._direct)
    sink.write(os.urandom(3 << 20))
    sink.sync_and_close()
    if not direct or file_system_in_memory(tmp_path):
        pytest.skip("this file system keeps every file in memory or takes no O_DIRECT")
    assert in_page_cache([*warm, tmp_path / "cold.bin"], sample=21) is False
