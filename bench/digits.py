"""The trainer's acceptance figures on scikit-learn's bundled handwritten digits.

    pip install -e '.[train,bench]' && python bench/digits.py

1. All 1,797 digits written as 32×32 PNG (one folder a digit), expanded with the bundled
   `digits` recipe, trained for 10 epochs: validation accuracy and wall time.
2. A training set cut to 20 images a class: `train --compare` (originals only against the
   expanded set, same optimiser steps) over 3 seeds: the augmentation lift.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def write_digits(root: Path, per_class: int | None = None, seed: int = 0) -> Path:
    """Digits as 32×32 grayscale PNGs in train/ and val/ folders (val: a fixed 20%)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    n_val = len(order) // 5
    taken = {d: 0 for d in range(10)}
    for rank, i in enumerate(order):
        label = int(digits.target[i])
        split = "val" if rank < n_val else "train"
        if split == "train" and per_class is not None:
            if taken[label] >= per_class:
                continue
            taken[label] += 1
        image = (digits.images[i] * (255 / 16)).astype(np.uint8)
        image = cv2.resize(image, (32, 32), interpolation=cv2.INTER_LINEAR)
        path = root / split / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
    return root


def run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def augpipe(*args: str) -> str:
    return run([sys.executable, "-m", "augpipe", *args])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="augpipe-digits-"))
    try:
        data = write_digits(work / "digits")
        augpipe("expand", str(data), "-r", "digits", "-o", str(work / "full"), "-q")
        started = time.perf_counter()
        out = augpipe("train", str(work / "full"), "--epochs", str(args.epochs), "--out", str(work / "run"), "-q")
        seconds = time.perf_counter() - started
        best = [line for line in out.splitlines() if line.startswith("best epoch")][0]
        print(f"full digits, {args.epochs} epochs: {best}; {seconds:.0f} s for the whole train command")
        lifts = []
        for seed in range(args.seeds):
            small = write_digits(work / f"small{seed}", per_class=20, seed=seed)
            augpipe("expand", str(small), "-r", "digits", "-o", str(work / f"small{seed}-x"), "-q", "--seed", str(seed))
            out = augpipe("train", str(work / f"small{seed}-x"), "--compare", "--epochs", str(args.epochs),
                          "--seed", str(seed), "--out", str(work / f"cmp{seed}"), "-q")
            line = [x for x in out.splitlines() if x.startswith("augmentation lift: validation")][0]
            lift = float(line.rsplit(":", 1)[1])
            lifts.append(lift)
            print(f"20 a class, seed {seed}: {line}")
        print(f"augmentation lift over {args.seeds} seeds: mean {np.mean(lifts):+.3f}, "
              f"min {min(lifts):+.3f}, max {max(lifts):+.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
