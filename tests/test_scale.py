"""Scale out (issue 9): object-store URIs through a real S3 server (moto), the Ray engine on a
real two-node cluster, and the same bytes everywhere."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from augpipe import ExpandOptions, expand
from conftest import make_folder, s3_hashes, shard_hashes, upload

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def augpipe(*args) -> list[str]:
    return [sys.executable, "-m", "augpipe", *map(str, args)]


def run(*args, env=None, timeout=240):
    return subprocess.run(augpipe(*args), env={**ENV, **os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("scale") / "data", per_class=30)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict[str, str]:
    """The local engine, local disk, one worker: what every other way must write, byte for byte."""
    out = tmp_path_factory.mktemp("reference") / "out"
    expand(data, "classic", out, ExpandOptions(workers=1, shard_size=30_000, progress=False, seed=3))
    return shard_hashes(out)


def s3_source(data: Path, bucket: str) -> str:
    uri = f"s3://{bucket}/photos"
    upload(data, uri)
    return uri


# ---------------------------------------------------------------- object stores

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

    from augpipe.plan import make_plan
    from augpipe.recipe import load_recipe
    from augpipe.formats import scan
    from augpipe.jobs import RunSpec, write_shard

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


# ---------------------------------------------------------------- the Ray engine

def test_ray_on_two_nodes_writes_the_same_bytes_from_both(data, reference, ray_cluster, tmp_path):
    m = expand(data, "classic", tmp_path / "out",
               ExpandOptions(engine="ray", shard_size=30_000, progress=False, seed=3))
    assert shard_hashes(tmp_path / "out") == reference
    assert m["engine"]["name"] == "ray" and m["engine"]["nodes"] == 2 and m["engine"]["nodes_used"] == 2


def test_ray_with_s3_is_byte_identical(data, reference, ray_cluster, bucket):
    source = s3_source(data, bucket)
    done = run("expand", source, "-r", "classic", "-o", f"s3://{bucket}/out", "--shard-size", "30KB",
               "--engine", "ray", "--seed", "3", "-q")
    assert done.returncode == 0, done.stderr
    assert "ray: 2 workers on 2 nodes" in done.stdout
    assert s3_hashes(f"s3://{bucket}/out") == reference


def test_a_ray_worker_killed_mid_task_is_retried_and_the_bytes_are_the_same(data, reference, ray_cluster, tmp_path):
    from augpipe.engines.ray import KILL_ONCE

    marker = tmp_path / "killed"
    done = run("expand", data, "-r", "classic", "-o", tmp_path / "out", "--shard-size", "30KB", "--engine", "ray",
               "--seed", "3", "-q", env={KILL_ONCE: str(marker)})
    assert done.returncode == 0, done.stderr
    assert marker.is_file(), "no worker was killed"
    assert "1 task retried" in done.stdout
    assert shard_hashes(tmp_path / "out") == reference


def test_an_error_in_a_ray_task_is_not_retried_and_is_one_line(tmp_path, ray_cluster):
    data = make_folder(tmp_path / "data", per_class=4)
    (data / "dog" / "bad.jpg").write_bytes(b"not an image")
    done = run("expand", data, "-r", "flips", "-o", tmp_path / "out", "--engine", "ray", "--strict",
               "--split-by", "path", "-q")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "augpipe: error: dog/bad.jpg: not a readable image (unknown format or corrupt header) "
        "(--strict stops at the first bad input)"]


def test_without_ray_the_engine_is_one_line(tmp_path, data):
    script = ("import sys; sys.modules['ray'] = None\n"
              "from augpipe.cli import main\n"
              f"main(['expand', {str(data)!r}, '-r', 'flips', '-o', {str(tmp_path / 'out')!r}, '--engine', 'ray'])")
    done = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "augpipe: error: --engine ray needs Ray: pip install 'augpipe[ray]'"


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_ray_started_for_the_run_ends_with_it(tmp_path, how):
    """Ctrl-C (to the whole process group, as a terminal sends it) shuts the local Ray down; a
    SIGKILL of the command takes Ray's processes with it too (its agents would linger a minute)."""
    pytest.importorskip("ray")
    data = make_folder(tmp_path / "data", per_class=200, size=96)
    env = {k: v for k, v in {**ENV, **os.environ}.items() if k != "RAY_ADDRESS"}
    before = _ray_processes()
    proc = subprocess.Popen(augpipe("expand", data, "-r", "classic", "-k", "3", "--shard-size", "60KB", "-o",
                                    tmp_path / "out", "--engine", "ray", "-w", "2", "-q"),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    if how == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, getattr(signal, how))
    proc.wait(timeout=120)
    err = proc.stderr.read().decode()
    if how == "SIGINT":
        # Ray's own C++ log lines ("[date time E pid] task_manager.cc: Failed to push error to
        # driver") may come first, from tasks the Ctrl-C reached; ours is the one Python line
        ours = [line for line in err.strip().splitlines() if not line.startswith("[")]
        assert proc.returncode == 130, err
        assert ours == ["augpipe: error: interrupted: finished shards are kept; run the same command again to resume"]
        assert "Traceback" not in err
    if how == "SIGTERM":
        ours = [line for line in err.strip().splitlines() if not line.startswith("[")]
        assert proc.returncode == 143, err
        assert ours == ["augpipe: error: terminated: finished shards are kept; run the same command again to resume"]
    time.sleep(3)
    assert _ray_processes() - before == set()


def _ray_processes() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"raylet" in cmd or b"gcs_server" in cmd or b"ray::" in cmd or b"default_worker.py" in cmd:
                found.add(int(entry))
    return found
