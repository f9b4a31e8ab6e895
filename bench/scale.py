"""The driver's share of a very large run: scan listing -> plan -> task list -> manifest.

No image files: a synthetic listing of N source entries (10 classes, split by content hash) is
fed to the planner directly, as a bucket listing would be. Reports the driver's time and peak
memory for each step, the number of shard tasks, and the size of the manifest (which lists
shards, never sources).

    python bench/scale.py                 # 1,000,000 entries
    python bench/scale.py --entries 200000

Targets (issue 9): 1M entries planned in under 30 s and under 2 GB.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--shard-size", type=int, default=256 * 2**20)
    args = parser.parse_args()

    from augpipe.manifest import build_manifest
    from augpipe.plan import make_plan
    from augpipe.recipe import load_recipe
    from augpipe.formats.base import Scan, SourceFile
    from augpipe.hashing import hash_jobs

    recipe = load_recipe("classic")
    base = rss_mb()
    steps = {}

    t = time.perf_counter()
    files = [SourceFile(f"c{i % args.classes}/img_{i:08d}.jpg", None, f"c{i % args.classes}", 40_000 + i % 5000, 0)
             for i in range(args.entries)]
    found = Scan("s3://bucket/photos", files, [f"c{k}" for k in range(args.classes)], True, False, [])
    steps["listing (SourceFile entries)"] = time.perf_counter() - t

    t = time.perf_counter()
    hashes = {f.relpath: hashlib.sha256(f.relpath.encode()).hexdigest() for f in files}
    chunks = hash_jobs([(f.relpath, f.size) for f in files])
    steps[f"hash tasks ({len(chunks):,}) and their results"] = time.perf_counter() - t

    t = time.perf_counter()
    plan = make_plan(found, recipe, 2, 0.1, False, args.shard_size, hashes)
    steps[f"plan: splits, copies, {len(plan.shards):,} shard tasks"] = time.perf_counter() - t

    t = time.perf_counter()
    records = [{"name": s.name, "split": s.split, "rows": s.planned_rows, "bytes": 1, "sha256": "0" * 64,
                "sources": len(s.sources), "originals": len(s.sources), "augmented": s.planned_rows - len(s.sources),
                "by_class": {}, "conversions": {}, "skipped": []} for s in plan.shards]
    manifest = build_manifest(identity={}, recipe=recipe, source="s3://bucket/photos", seed=0, options={},
                              classes=found.classes, labelled=True, records=records, scan_skipped=[], timing={},
                              engine={})
    text = json.dumps(manifest, indent=2)
    steps["manifest"] = time.perf_counter() - t
    gc.collect()

    total = sum(steps.values())
    print(f"{args.entries:,} source entries, {args.classes} classes, shard size {args.shard_size:,} bytes")
    for name, seconds in steps.items():
        print(f"  {name:<48} {seconds:7.2f} s")
    print(f"  {'total':<48} {total:7.2f} s   (target: under 30 s for 1M)")
    print(f"  peak memory of the driver {rss_mb():,.0f} MB (started at {base:,.0f} MB; target: under 2,048 MB)")
    print(f"  manifest {len(text.encode()) / 1e3:,.1f} KB for {len(plan.shards):,} shards "
          f"({sum(plan.planned_rows.values()):,} rows)")


if __name__ == "__main__":
    main()
