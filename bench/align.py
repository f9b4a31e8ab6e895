"""Where a JPEG is decoded to: libjpeg-turbo's speed by the output's address, measured in one run.

    python bench/align.py [--images 64] [--sizes 64 224] [--repeat 5]

libjpeg-turbo's SIMD colour conversion writes an output row that starts on a 32-byte boundary
with non-temporal stores, which go around the cache (simd/x86_64/jdmrgext-avx2.asm, the 4:2:0
upsampler: `test rdi, SIZEOF_YMMWORD-1`, then `vmovntdq` where it is aligned, `vmovdqu` where not). augpipe's readers decode a batch into memory
that starts 16 bytes past such a boundary (`readers._off_boundary`); this script decodes the same
JPEGs (photos cropped and written by OpenCV at quality 92, as bench/expand.py makes them) into one
batch array starting at each offset mod 64, and into arrays simplejpeg allocates itself, and
prints µs an image with the ratio to augpipe's offset (16). One thread, best of --repeat.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import timeit
from pathlib import Path

import numpy as np
import simplejpeg

sys.path.insert(0, str(Path(__file__).parent))
from expand import make_dataset  # noqa: E402

OFFSETS = (0, 16, 32, 48)  # bytes past a 64-byte boundary; augpipe's is 16


def batch_at(offset: int, count: int, size: int) -> np.ndarray:
    """A count×size×size×3 array whose first byte lies `offset` bytes past a 64-byte boundary."""
    n = count * size * size * 3
    raw = np.empty(n + 128, np.uint8)
    start = (offset - raw.ctypes.data) % 64
    return raw[start:start + n].reshape(count, size, size, 3)


def per_image(run, count: int, repeat: int) -> float:
    """µs an image of `run()`, which decodes `count` images; its best of `repeat`."""
    return min(timeit.repeat(run, number=3, repeat=repeat)) / 3 / count * 1e6


def measure(blobs: list[bytes], size: int, repeat: int) -> dict[str, float]:
    out = {}
    for offset in OFFSETS:
        batch = batch_at(offset, len(blobs), size)

        def into(batch=batch):
            for blob, pixels in zip(blobs, batch):
                simplejpeg.decode_jpeg(blob, "rgb", buffer=pixels)

        out[f"into a batch at {offset} mod 64"] = per_image(into, len(blobs), repeat)

    def fresh():
        for blob in blobs:
            simplejpeg.decode_jpeg(blob, "rgb")

    out["arrays simplejpeg allocates"] = per_image(fresh, len(blobs), repeat)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="a batch")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="augpipe-align-") as work:
        for size in args.sizes:
            src = make_dataset(Path(work) / str(size), args.images, size)
            blobs = [p.read_bytes() for p in sorted(src.rglob("*.jpg"))]
            rates = measure(blobs, size, args.repeat)
            ours = rates["into a batch at 16 mod 64"]
            print(f"{args.images} JPEGs at {size}×{size}, one thread, best of {args.repeat}")
            print(f"  {'decoded':<32} {'µs an image':>12}  {'vs 16 mod 64':>12}")
            for name, value in rates.items():
                print(f"  {name:<32} {value:>12.1f}  {value / ours:>12.2f}")


if __name__ == "__main__":
    main()
