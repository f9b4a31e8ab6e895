"""The Ray engine and object storage against the local engine on local disk, in one run.

    pip install -e '.[bench,ray,test]' && python bench/engines.py [--images 2000] [--size 320] [--repeat 3]

On the same photo dataset as bench/expand.py (2 augmented copies, flip / rotate / brightness):

- local engine, 2 workers, local disk (the baseline);
- Ray engine on a local Ray of 2 CPUs, started before the timing (its start-up reported apart);
- local engine, 2 workers, source and output on a local S3 server (moto, on 127.0.0.1).

Each is timed by expand's own clock for the shard tasks (`timing.process_seconds`: hashing,
planning and the manifest excluded), repeated and alternated; ratios of medians against the
baseline. Targets (issue 9): Ray at least 0.8 of the baseline, S3 at least 0.7.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def start_s3() -> tuple[object, str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint)
    return server, endpoint


def upload(folder: Path, bucket: str, prefix: str) -> None:
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


def server_ceiling(names: list[str]) -> float:
    """Objects a second the S3 server gives two processes reading every source, as expand's
    workers do (pyarrow, sequential reads): what the server allows, whatever reads it."""
    from concurrent.futures import ProcessPoolExecutor

    started = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_read_all, [names[0::2], names[1::2]]))
    return len(names) / (time.perf_counter() - started)


def _read_all(names: list[str]) -> None:
    from augpipe.store import open_store

    store = open_store("s3://bench/src")
    for name in names:
        store.read_bytes(name)


def timed(source, out, engine: str, recipe: Path) -> float:
    from augpipe import ExpandOptions, expand

    m = expand(source, recipe, out, ExpandOptions(workers=2, engine=engine, progress=False, overwrite=True))
    return m["timing"]["process_seconds"], sum(c["rows"] for c in m["counts"].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import ray

    from expand import RECIPE, make_dataset

    work = Path(tempfile.mkdtemp(prefix="augpipe-bench-engines-"))
    try:
        recipe = work / "bench.yaml"
        recipe.write_text(RECIPE)
        src = make_dataset(work / "src", args.images, args.size)
        server, endpoint = start_s3()
        upload(src, "bench", "src")
        started = time.perf_counter()
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
        ray_start = time.perf_counter() - started
        timed(src, work / "warm", "ray", recipe)  # Ray's workers import augpipe once, here
        runs = {"local": [], "ray": [], "s3": []}
        for i in range(args.repeat):
            for name in runs:
                if name == "s3":
                    seconds, rows = timed("s3://bench/src", f"s3://bench/out{i}", "local", recipe)
                else:
                    seconds, rows = timed(src, work / f"{name}{i}", name, recipe)
                runs[name].append(rows / seconds)
        base = statistics.median(runs["local"])
        print(f"{args.images:,} inputs at {args.size} px, {rows:,} rows out; images/s by expand's own clock "
              f"(shard tasks), median of {args.repeat}")
        print(f"  local engine, local disk     {base:8,.0f}   1.00  (baseline)")
        for name, label, target in (("ray", "Ray engine, local disk", 0.8), ("s3", "local engine, S3 (moto)", 0.7)):
            rate = statistics.median(runs[name])
            spread = ", ".join(f"{r / base:.2f}" for r in runs[name])
            print(f"  {label:<28} {rate:8,.0f}   {rate / base:.2f}  (runs: {spread}; target {target})")
        print(f"  Ray start-up (ray.init, 2 CPUs): {ray_start:.1f} s, not counted above")
        names = [p.relative_to(src).as_posix() for p in sorted(src.rglob("*.jpg"))]
        ceiling = server_ceiling(names)
        sources = statistics.median(runs["s3"]) * len(names) / rows
        print(f"  the S3 server alone serves {ceiling:,.0f} sources/s to two reading processes; expand on S3 "
              f"read {sources:,.0f} sources/s: {sources / ceiling:.2f} of what the server allows")
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
