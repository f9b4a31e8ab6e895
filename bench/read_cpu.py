"""The readers' own loop with targets, in one process, by CPU time (steady under load, unlike the
DataLoader's wall-clock figures of bench/read.py): the images' decode floor against ShardDataset
(shuffled `__getitems__` batches of 64 + `collate`) and ShardIterable (batched), 2 epochs, best of 3.

    python bench/read_cpu.py [--images 2000] [--size 64]

Detection 5 boxes an image and segmentation a mask an image (bench/targets.py). For a baseline,
run it again with PYTHONPATH pointing at another checkout of augpipe.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from expand import make_dataset  # noqa: E402
from read import expand_as_is, stored_bytes  # noqa: E402
from targets import add_targets  # noqa: E402

from augpipe.readers import ShardDataset, ShardIterable, collate, decode_rgb  # noqa: E402


def best(run, rounds: int = 3) -> float:
    """µs of CPU time a row, the best of `rounds`."""
    times = []
    for _ in range(rounds):
        started = time.process_time()
        rows = run()
        times.append((time.process_time() - started) / rows * 1e6)
    return min(times)


def measure(out: Path) -> tuple[float, float, float]:
    blobs = [b for (b,) in stored_bytes(out, ["image"])]

    def floor():
        for _ in range(2):
            for blob in blobs:
                decode_rgb(blob)
        return 2 * len(blobs)

    def dataset():
        ds = ShardDataset(out)
        order = list(range(len(ds)))
        for epoch in range(2):
            random.Random(epoch).shuffle(order)
            for k in range(0, len(order), 64):
                collate(ds.__getitems__(order[k:k + 64]))
        return 2 * len(ds)

    def iterable():
        stream, n = ShardIterable(out, shuffle=True, seed=0, batch_size=64), 0
        for epoch in range(2):
            stream.set_epoch(epoch)
            n += sum(len(images) for images, _ in stream)
        return n

    return best(floor), best(dataset), best(iterable)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="augpipe-read-cpu-"))
    try:
        made = add_targets(make_dataset(work / "src", args.images, args.size), work)
        print(f"{args.images:,} JPEGs at {args.size}×{args.size}, one process, CPU µs a row (best of 3), vs the floor")
        print(f"  {'kind':<14} {'floor':>8} {'ShardDataset':>20} {'ShardIterable':>20}")
        for kind in ("detection", "segmentation"):
            f, d, i = measure(expand_as_is(made[kind], work / f"out-{kind}"))
            print(f"  {kind:<14} {f:>8.1f} {d:>12.1f} ({f / d:.2f}) {i:>12.1f} ({f / i:.2f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
