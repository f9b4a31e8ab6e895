"""A prefix on a pyarrow filesystem (augpipe/store/arrow.py) through a real S3 server (moto): the same
bytes as on local disk, resume, locks, temporary folders, and the readers that read the output there."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import boto3
import pytest

from augpipe import ExpandOptions, expand
from augpipe.errors import RunLockedError
from augpipe.formats import scan
from augpipe.output import LOCK, RunLock
from augpipe.store import open_store
from conftest import ENV, ROOT, augpipe, make_folder, run, s3_hashes, s3_source, shard_hashes, upload


def test_an_s3_run_leaves_no_temp_folder(tmp_path, s3_server, bucket):
    data = make_folder(tmp_path / "data", per_class=3)
    upload(data, f"s3://{bucket}/src")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(temp)}
    for workers in (1, 2):
        done = subprocess.run(augpipe("expand", f"s3://{bucket}/src", "-r", "flips", "-k", "1", "-w", workers,
                                      "-o", f"s3://{bucket}/out{workers}", "-q"),
                              capture_output=True, text=True, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
    assert [p.name for p in temp.iterdir() if p.name.startswith("augpipe-")] == []


def test_dead_runs_temp_folders_are_swept_and_nothing_else(tmp_path, monkeypatch):
    import tempfile

    from augpipe import store

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / f"augpipe-{dead}").mkdir()
    (tmp_path / f"augpipe-{dead}" / "train-00000-of-00001.parquet").write_bytes(b"x")
    mine = tmp_path / f"augpipe-{os.getppid()}"  # a live process's
    other = tmp_path / "augpipe-notes"  # not ours by name
    mine.mkdir()
    other.mkdir()
    folder = store.ArrowStore.temp_dir(None, "work")
    assert folder == tmp_path / f"augpipe-{os.getpid()}" and folder.is_dir()
    assert not (tmp_path / f"augpipe-{dead}").exists() and mine.is_dir() and other.is_dir()


def test_s3_to_s3_with_two_workers_is_byte_identical_to_local(data, reference, bucket):
    source = s3_source(data, bucket)
    done = run("expand", source, "-r", "classic", "-o", f"s3://{bucket}/out", "--shard-size", "30KB", "-w", "2",
               "--seed", "3", "-q")
    assert done.returncode == 0, done.stderr
    assert f"s3://{bucket}/out/_augpipe.json" in done.stdout
    assert s3_hashes(f"s3://{bucket}/out") == reference


def test_local_to_s3_and_s3_to_local(data, reference, bucket, tmp_path):
    expand(data, "classic", f"s3://{bucket}/up", ExpandOptions(workers=1, shard_size=30_000, progress=False, seed=3))
    assert s3_hashes(f"s3://{bucket}/up") == reference
    source = s3_source(data, bucket)
    expand(source, "classic", tmp_path / "down", ExpandOptions(workers=1, shard_size=30_000, progress=False, seed=3))
    assert shard_hashes(tmp_path / "down") == reference


def test_rerun_on_s3_is_up_to_date_and_another_recipe_is_refused(data, bucket):
    source, out = s3_source(data, bucket), f"s3://{bucket}/out"
    options = ExpandOptions(workers=1, progress=False)
    expand(source, "flips", out, options)
    assert expand(source, "flips", out, options).get("up_to_date")
    done = run("expand", source, "-r", "classic", "-o", out, "-q", "-w", "1")
    assert done.returncode == 2 and "holds output made with another recipe" in done.stderr


def test_a_shard_damaged_at_its_size_in_a_bucket_is_mended_by_overwrite(data, bucket):
    source, out = s3_source(data, bucket), f"s3://{bucket}/out"
    options = dict(workers=1, progress=False, shard_size=30_000)
    expand(source, "flips", out, ExpandOptions(**options))
    expected = s3_hashes(out)
    s3 = boto3.client("s3")
    key = f"out/{sorted(expected)[0]}"
    raw = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    raw[len(raw) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(raw))
    assert expand(source, "flips", out, ExpandOptions(**options)).get("up_to_date")  # by size, as documented
    told = run("inspect", out, "--verify")
    assert told.returncode == 1 and "checksum mismatch" in told.stdout and "--overwrite" in told.stdout
    assert not expand(source, "flips", out, ExpandOptions(overwrite=True, **options)).get("up_to_date")
    assert s3_hashes(out) == expected


def test_a_prefix_that_is_not_augpipe_output_is_never_written_into(data, bucket):
    import boto3

    boto3.client("s3").put_object(Bucket=bucket, Key="theirs/report.csv", Body=b"a,b\n")
    done = run("expand", data, "-r", "flips", "-o", f"s3://{bucket}/theirs", "-q", "-w", "1")
    assert done.returncode == 2 and "holds no augpipe output" in done.stderr
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["theirs/report.csv"]


def test_s3_resume_after_the_driver_is_killed(tmp_path, bucket):
    data = make_folder(tmp_path / "data", per_class=150, size=96)
    reference = tmp_path / "reference"
    expand(data, "classic", reference, ExpandOptions(workers=1, shard_size=60_000, progress=False))
    out = f"s3://{bucket}/out"
    proc = subprocess.Popen(augpipe("expand", data, "-r", "classic", "-o", out, "--shard-size", "60KB", "-w", "2", "-q"),
                            env={**ENV, **os.environ}, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(s3_hashes(out)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = s3_hashes(out)
    assert 3 <= len(partial) < len(shard_hashes(reference)), "the kill did not land mid-run"
    done = run("expand", data, "-r", "classic", "-o", out, "--shard-size", "60KB", "-w", "2", "-q")
    assert done.returncode == 0, done.stderr
    assert "shards kept from an earlier run" in done.stdout
    assert s3_hashes(out) == shard_hashes(reference)


def test_inspect_verify_on_s3_catches_a_flipped_byte_and_a_missing_shard(data, bucket):
    import boto3

    out = f"s3://{bucket}/out"
    m = expand(data, "flips", out, ExpandOptions(workers=1, shard_size=30_000, progress=False))
    assert run("inspect", out, "--verify").returncode == 0
    client = boto3.client("s3")
    first, second = m["shards"][0]["name"], m["shards"][1]["name"]
    body = bytearray(client.get_object(Bucket=bucket, Key=f"out/{first}")["Body"].read())
    body[len(body) // 2] ^= 0x01
    client.put_object(Bucket=bucket, Key=f"out/{first}", Body=bytes(body))
    client.delete_object(Bucket=bucket, Key=f"out/{second}")
    done = run("inspect", out, "--verify")
    assert done.returncode == 1
    assert f"{first}: checksum mismatch" in done.stdout and f"{second}: missing" in done.stdout


def test_access_denied_is_one_line(data, tmp_path):
    """A second S3 server that checks credentials: ours are not accepted."""
    pytest.importorskip("moto.server")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "nobody",
               "AWS_SECRET_ACCESS_KEY": "wrong", "AWS_EC2_METADATA_DISABLED": "true"}
        deadline = time.monotonic() + 30
        while True:
            done = run("expand", "s3://locked/photos", "-r", "flips", "-q", env=env)
            if "Connection refused" not in done.stderr and "connect" not in done.stderr.lower() or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "s3://locked/photos" in lines[0] and "access denied" in lines[0], done.stderr
    finally:
        server.terminate()
        server.wait()


def test_a_source_object_that_vanishes_mid_run_is_a_recorded_skip(data, bucket):
    import boto3

    from augpipe.jobs import RunSpec, write_shard
    from augpipe.plan import make_plan
    from augpipe.recipe import load_recipe

    source = s3_source(data, bucket)
    recipe = load_recipe("flips")
    found = scan(source)
    task = make_plan(found, recipe, 1, 0.0, False, 1 << 30).shards[0]
    gone = task.sources[0].relpath
    boto3.client("s3").delete_object(Bucket=bucket, Key=f"photos/{gone}")
    job = RunSpec(source, f"s3://{bucket}/out", recipe, 0, 10**8, False, tuple(found.classes), True)
    record = write_shard(task, job)
    assert record.skipped == [[gone, "vanished during the run (not found)"]]


def test_hugging_face_datasets_reads_the_output_on_s3(data, bucket, monkeypatch, tmp_path):
    import datasets

    out = f"s3://{bucket}/out"
    m = expand(data, "flips", out, ExpandOptions(workers=1, progress=False))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # the "remote" is 127.0.0.1
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    ds = datasets.load_dataset("parquet", data_files={"train": f"{out}/train-*.parquet"}, cache_dir=str(tmp_path),
                               storage_options={"key": "testing", "secret": "testing",
                                                "client_kwargs": {"endpoint_url": endpoint}})
    assert ds["train"].num_rows == m["counts"]["train"]["rows"]
    assert ds["train"].features["label"].names == ["cat", "dog"]


def test_ray_data_reads_the_output_on_s3_as_one_table(data, bucket, ray_cluster):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    import pyarrow.fs as pafs

    out = f"s3://{bucket}/out"
    m = expand(data, "flips", out, ExpandOptions(workers=1, progress=False))
    fs, root = pafs.FileSystem.from_uri(out)
    table = ray.data.read_parquet(root, filesystem=fs)  # the folder: the manifest is skipped
    assert table.count() == sum(c["rows"] for c in m["counts"].values())
    assert json.loads(table.schema().base_schema.metadata[b"huggingface"])["info"]["features"]["label"]["names"] == \
        ["cat", "dog"]


def test_torch_readers_and_preview_and_train_read_s3(data, bucket, tmp_path):
    pytest.importorskip("torch")
    from augpipe.readers import ShardDataset, ShardIterable

    out = f"s3://{bucket}/out"
    m = expand(data, "flips", out, ExpandOptions(workers=1, progress=False, shard_size=30_000))
    assert len(ShardDataset(out, "train")) == m["counts"]["train"]["rows"]
    assert sum(1 for _ in ShardIterable(out, "validation")) == m["counts"]["validation"]["rows"]
    done = run("preview", out, "-o", tmp_path / "p.png")
    assert done.returncode == 0 and (tmp_path / "p.png").is_file(), done.stderr
    done = run("train", out, "--epochs", "1", "-o", tmp_path / "run", "-q")
    assert done.returncode == 0, done.stderr


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
