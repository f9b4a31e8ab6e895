"""The localisation, detection and segmentation trainers' acceptance figures, on scenes this
script draws itself with scikit-image's `skimage.draw.random_shapes`.

    pip install -e '.[train,bench]' && python bench/tasks.py

Scenes are 64×64, white, with 1 to 3 shapes (rectangle, circle, triangle; 12 to 32 pixels, one
colour each, not touching each other or the border). Each shape is drawn alone, its mask taken
from its pixels, and placed where it touches no other. They are written as a COCO folder
(annotations/instances_{train,val}.json, the polygons traced from the masks) and as a masks
folder ({train,val}/images, {train,val}/masks, classes.txt), then expanded with the bundled
`detection` recipe (4 copies an image: horizontal flip, shift and scale with a grey border,
colour jitter; PNG).

1. 2,000 training and 500 validation scenes: `augpipe train --task localisation` (the largest
   shape of each image), `--task detection` and the masks folder's segmentation, each with its
   wall-clock time.
2. 200 training scenes, `train --compare` (originals only against the expanded set, the same
   optimiser steps), over 3 seeds: the augmentation lift for each task.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits import augpipe  # noqa: E402  (the command runner the digits bench uses)

SHAPES = ("rectangle", "circle", "triangle")
SIZE = 64


def scene(rng, size: int = SIZE, shapes: tuple[int, int] = (1, 3), sizes: tuple[int, int] = (16, 32)):
    """(RGB image, [(class, mask)]): shapes that neither touch each other nor the border."""
    from skimage.draw import random_shapes

    image = np.full((size, size, 3), 255, np.uint8)
    filled = np.zeros((size, size), bool)
    objects = []
    for _ in range(int(rng.integers(shapes[0], shapes[1] + 1))):
        for _ in range(30):
            c = int(rng.integers(len(SHAPES)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "could not fit": tried again below
                one, labels = random_shapes((size, size), 1, 1, sizes[0], sizes[1], shape=SHAPES[c],
                                            intensity_range=((0, 200),), rng=rng)
            if not labels:
                continue
            mask = (one != 255).any(-1)
            ys, xs = np.nonzero(mask)
            if (not len(xs) or xs.min() == 0 or ys.min() == 0 or xs.max() == size - 1 or ys.max() == size - 1
                    or min(xs.max() - xs.min(), ys.max() - ys.min()) < 11):
                continue  # cut by the border (random_shapes lets triangles run off), or a sliver
            if (cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) & filled).any():
                continue
            image[mask] = one[mask]
            filled |= mask
            objects.append((c, mask))
            break
    return image, objects


def write_scenes(root: Path, train: int, val: int, seed: int = 0) -> tuple[Path, Path]:
    """The same scenes as a COCO folder (root/coco) and a masks folder (root/masks)."""
    rng = np.random.default_rng(seed)
    coco, masks = root / "coco", root / "masks"
    for split, n in (("train", train), ("val", val)):
        images, annotations = [], []
        for split_dir in (coco / split, masks / split / "images", masks / split / "masks"):
            split_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, objects = scene(rng)
            name = f"{split}_{i:05d}.png"
            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(coco / split / name), bgr)
            cv2.imwrite(str(masks / split / "images" / name), bgr)
            semantic = np.zeros((SIZE, SIZE), np.uint8)
            images.append({"id": i + 1, "file_name": name, "width": SIZE, "height": SIZE})
            for c, mask in objects:
                semantic[mask] = c + 1
                contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                polygon = max(contours, key=len).reshape(-1).astype(float).tolist()
                ys, xs = np.nonzero(mask)
                box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1, "bbox": box,
                                    "area": float(mask.sum()), "iscrowd": 0, "segmentation": [polygon]})
            cv2.imwrite(str(masks / split / "masks" / name), semantic)
        (coco / "annotations").mkdir(exist_ok=True)
        categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(SHAPES)]
        (coco / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    (masks / "classes.txt").write_text("background\n" + "".join(f"{name}\n" for name in SHAPES))
    return coco, masks


RECIPE = "detection"


def expand(source: Path, out: Path, recipe: str, seed: int = 0) -> Path:
    augpipe("expand", str(source), "--recipe", recipe, "--out", str(out), "--seed", str(seed), "-q")
    return out


# what each task is trained on, with what options, at the default 64×64; the full runs take 5 epochs
# (10,000 rows after the recipe's 4 copies: 780 optimiser steps), which must stay under 5 minutes
# here; the small runs take more epochs (each has a tenth of the rows)
TASKS = {"localisation": ("coco", ["--task", "localisation"]),
         "detection": ("coco", ["--task", "detection"]),
         "segmentation": ("masks", ["--task", "segmentation"])}
FULL_EPOCHS = 5
SMALL_EPOCHS = 30


def headline(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("best epoch"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=FULL_EPOCHS)
    parser.add_argument("--small-epochs", type=int, default=SMALL_EPOCHS)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-lift", action="store_true")
    parser.add_argument("--recipe", default=RECIPE, help="the recipe that expands the scenes (default: %(default)s)")
    parser.add_argument("--work", type=Path, help="keep the data and runs here (default: a temporary folder)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="augpipe-tasks-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not args.skip_full:
            coco, masks = write_scenes(work / "full", args.train, 500)
            sources = {"coco": expand(coco, work / "full-coco-x", args.recipe),
                       "masks": expand(masks, work / "full-masks-x", args.recipe)}
            for task in args.tasks:
                fmt, options = TASKS[task]
                started = time.perf_counter()
                out = augpipe("train", str(sources[fmt]), *options, "--epochs", str(args.epochs),
                              "--out", str(work / f"run-{task}"), "-q")
                seconds = time.perf_counter() - started
                summary = out[out.index("best epoch"):].splitlines()
                print(f"{task}, {args.train:,} training scenes, {' '.join(options)}: {seconds:.0f} s for the whole "
                      f"train command", flush=True)
                for line in summary[:-1]:
                    print(f"  {line}", flush=True)
        if not args.skip_lift:
            lifts: dict[str, list[float]] = {t: [] for t in args.tasks}
            for seed in range(args.seeds):
                coco, masks = write_scenes(work / f"small{seed}", args.small, 500, seed=100 + seed)
                sources = {"coco": expand(coco, work / f"small{seed}-coco-x", args.recipe, seed),
                           "masks": expand(masks, work / f"small{seed}-masks-x", args.recipe, seed)}
                for task in args.tasks:
                    fmt, options = TASKS[task]
                    out = augpipe("train", str(sources[fmt]), *options, "--epochs", str(args.small_epochs),
                                  "--compare", "--seed", str(seed),
                                  "--out", str(work / f"cmp-{task}-{seed}"), "-q")
                    line = next(x for x in out.splitlines() if x.startswith("augmentation lift:"))
                    lifts[task].append(float(line.rsplit(":", 1)[1]))
                    print(f"{task}, {args.small} training scenes, seed {seed}: {line}", flush=True)
            for task, values in lifts.items():
                print(f"{task}: augmentation lift over {args.seeds} seeds: mean {np.mean(values):+.3f}, "
                      f"min {min(values):+.3f}, max {max(values):+.3f}", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
