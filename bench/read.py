"""Reading speed: augpipe's ShardDataset against an ImageFolder of the same images, through a
DataLoader with 2 workers, and against the decode floor.

    pip install -e '.[train,bench]' && python bench/read.py [--images 4000] [--size 64]

The shards hold the very bytes of the files (expand with --copies 0), so every reader decodes
the same JPEGs; the loaders shuffle, as training does. The decode floor is two processes decoding
the bytes from memory with OpenCV, nothing else.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from expand import make_dataset, rate_in_processes  # noqa: E402

from augpipe.readers import ShardDataset, decode_rgb, to_chw  # noqa: E402


class ImageFolderLike(torch.utils.data.Dataset):
    """What torchvision's ImageFolder does per item: PIL open, convert to RGB, to a tensor."""

    def __init__(self, root: Path):
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.items = [(p, i) for i, c in enumerate(classes) for p in sorted((root / c).glob("*.jpg"))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, label = self.items[index]
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        return to_chw(rgb), label


def through_loader(dataset, epochs: int = 2) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, num_workers=2,
                                         generator=torch.Generator().manual_seed(0), persistent_workers=True)
    next(iter(loader))  # workers started before the clock
    n, started = 0, time.perf_counter()
    for _ in range(epochs):
        for images, _labels in loader:
            n += len(images)
    return n / (time.perf_counter() - started)


def _decode_all(blobs: list[bytes], barrier, result) -> None:
    barrier.wait()
    started = time.perf_counter()
    for data in blobs:
        decode_rgb(data)
    result.put((len(blobs), time.perf_counter() - started))


def decode_floor(files: list[Path], processes: int = 2) -> float:
    blobs = [p.read_bytes() for p in files]
    return rate_in_processes(_decode_all, [blobs[i::processes] for i in range(processes)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="augpipe-read-"))
    try:
        src = make_dataset(work / "src", args.images, args.size)
        subprocess.run([sys.executable, "-m", "augpipe", "expand", str(src), "-r", "flips", "-o", str(work / "out"),
                        "--copies", "0", "--val-fraction", "0", "-q"], check=True, stdout=subprocess.DEVNULL)
        floor = decode_floor(sorted(src.rglob("*.jpg")))
        folder = through_loader(ImageFolderLike(src))
        shards = through_loader(ShardDataset(work / "out", "train"))
        print(f"{args.images} JPEGs at {args.size}×{args.size}, DataLoader(batch 64, shuffle, 2 workers), 2 epochs")
        print(f"  {'reader':<34} {'images/s':>10}  vs floor")
        for name, value in (("decode floor (2 processes, memory)", floor), ("ImageFolder-style (PIL, files)", folder),
                            ("augpipe ShardDataset", shards)):
            print(f"  {name:<34} {value:>10,.0f}  {value / floor:.2f}")
        print(f"  ShardDataset / ImageFolder: {shards / folder:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
