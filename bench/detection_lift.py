"""What multi-image steps and class-targeted copies add to detection, on a small, harder
detection set this script draws itself.

    pip install -e '.[train,bench]' && python bench/detection_lift.py

The set: 64×64 scenes on a textured, noisy background (smooth colour blobs, one to three stray
lines, pixel noise over everything), 2 to 5 filled shapes a scene of five classes (rectangle,
circle, triangle, cross, star; 8 to 30 pixels across, each in a random colour that stands out
from the background behind it, none touching another). The star is the rare class: it is in
only a few training scenes (`--rare`, one star each), and as common as the others in validation,
so that its AP can be measured. 48 training and 160 validation scenes, written as a COCO folder
with its own train/val split (polygons traced from each object's pixels, so that CopyPaste can
cut the objects out). The same scenes every run.

For each seed (expand's and train's), each configuration is expanded from that source and
trained with `augpipe train --task detection` (the default CenterNet-style model at 64×64); the
epochs of each run are set so that every configuration takes about the optimiser steps of the
plain recipe's `--epochs` (a balanced expand has more rows). Reported: the validation mAP@0.5
after the last epoch (not the best epoch: that would pick on the validation set) and the rare
class's AP of the final model (the trainer's own, metrics.py), mean ± standard deviation over
the seeds, and each configuration's lift over the plain `detection` recipe, seed by seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from digits import augpipe  # the command runner the digits bench uses

CLASSES = ("rectangle", "circle", "triangle", "cross", "star")
RARE = CLASSES.index("star")
SIZE = 64
OBJECT_SIZES = (8, 30)


def polygon(c: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray | None:
    """The outline of class c (None for the circle) around (cx, cy), radius r, turned by angle."""
    if c == 0:
        aspect = 0.55 + 0.45 * np.cos(angle * 3) ** 2  # a rectangle, from square to about 1:2
        pts = [(-r, -r * aspect), (r, -r * aspect), (r, r * aspect), (-r, r * aspect)]
    elif c == 2:
        pts = [(r * np.cos(a), r * np.sin(a)) for a in np.pi / 2 + np.arange(3) * 2 * np.pi / 3]
    elif c == 3:
        t = r / 3
        pts = [(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r), (-t, t), (-r, t), (-r, -t), (-t, -t)]
    elif c == 4:
        pts = [((r if k % 2 == 0 else r * 0.45) * np.cos(a), (r if k % 2 == 0 else r * 0.45) * np.sin(a))
               for k, a in enumerate(-np.pi / 2 + np.arange(10) * np.pi / 5)]
    else:
        return None
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (np.array(pts) @ rot.T + (cx, cy)).round().astype(np.int32)


def object_mask(c: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    outline = polygon(c, cx, cy, r, angle)
    if outline is None:
        cv2.circle(mask, (round(cx), round(cy)), round(r), 1, -1)
    else:
        cv2.fillPoly(mask, [outline], 1)
    return mask.astype(bool)


def background(rng) -> np.ndarray:
    """Smooth colour blobs and a few stray lines: texture that is no object."""
    coarse = rng.uniform(60, 200, (4, 4, 3)).astype(np.float32)
    image = cv2.resize(coarse, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    image += cv2.resize(rng.normal(0, 15, (8, 8, 3)).astype(np.float32), (SIZE, SIZE),
                        interpolation=cv2.INTER_LINEAR)
    for _ in range(int(rng.integers(2, 6))):
        p, q = rng.integers(0, SIZE, 2), rng.integers(0, SIZE, 2)
        cv2.line(image, tuple(map(int, p)), tuple(map(int, q)), rng.uniform(0, 255, 3).tolist(), 1)
    return image


def contrasting(rng, behind: np.ndarray) -> np.ndarray:
    """A random colour at least 60 grey levels from the background's mean colour on average."""
    for _ in range(20):
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - behind).mean() >= 60:
            break
    return colour


def scene(rng, classes: list[int]) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """(RGB image, [(class, mask)]) with one object of each class asked for, where it fits."""
    image = background(rng)
    taken = np.zeros((SIZE, SIZE), np.uint8)
    objects = []
    for c in classes:
        for _ in range(40):
            r = np.exp(rng.uniform(*np.log(OBJECT_SIZES))) / 2
            cx, cy = rng.uniform(r + 1, SIZE - r - 1, 2)
            mask = object_mask(c, cx, cy, r, rng.uniform(0, 2 * np.pi))
            if mask.sum() < 12 or (cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) & taken).any():
                continue
            colour = contrasting(rng, image[mask].mean(0))
            image[mask] = colour + rng.normal(0, 12, (int(mask.sum()), 3))
            taken |= mask
            objects.append((c, mask))
            break
    image += rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), objects


def scene_classes(rng, rare: bool) -> list[int]:
    """2 to 5 objects of the common classes, one of them a star when `rare`."""
    picked = [int(c) for c in rng.choice([0, 1, 2, 3], int(rng.integers(2, 6)))]
    if rare:
        picked[0] = RARE
    return picked


def write_source(root: Path, train: int, val: int, rare: int, seed: int = 0) -> Path:
    """A COCO folder: train/ and val/ images, annotations/instances_{train,val}.json. The rare
    class is in `rare` training scenes and in a fifth of the validation scenes' objects."""
    rng = np.random.default_rng(seed)
    rare_scenes = set(rng.choice(train, rare, replace=False).tolist())
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("val", val)):
        (root / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            if split == "train":
                classes = scene_classes(rng, i in rare_scenes)
            else:
                classes = [int(c) for c in rng.integers(0, len(CLASSES), int(rng.integers(2, 6)))]
            image, objects = scene(rng, classes)
            name = f"{split}_{i:04d}.png"
            cv2.imwrite(str(root / split / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            images.append({"id": i + 1, "file_name": name, "width": SIZE, "height": SIZE})
            annotations += [annotation(len(annotations) + 1, i + 1, c, mask) for c, mask in objects]
        categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASSES)]
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root


def annotation(ann_id: int, image_id: int, c: int, mask: np.ndarray) -> dict:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=len).reshape(-1).astype(float).tolist()
    ys, xs = np.nonzero(mask)
    box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
    return {"id": ann_id, "image_id": image_id, "category_id": c + 1, "bbox": box, "area": float(mask.sum()),
            "iscrowd": 0, "segmentation": [outline]}


def objects_per_class(root: Path, split: str) -> list[int]:
    data = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
    counts = [0] * len(CLASSES)
    for a in data["annotations"]:
        counts[a["category_id"] - 1] += 1
    return counts


# each configuration: its label, the steps added to the bundled `detection` recipe (name, params,
# the index in its transforms before which the step goes) and whether --balance is on. Mosaic goes
# first (as in YOLO: the flip, shift and scale then move the whole mosaic); CopyPaste after the
# flip and the affine, so that each donor gets its own (Ghiasi et al.'s scale jitter on both),
# before the colour. `copypaste-rare` draws its donors toward the images holding rare classes.
MOSAIC = {"p": 0.5, "target_size": [SIZE, SIZE], "cell_shape": [SIZE, SIZE]}
CONFIGS = {
    "detection": ("detection", (), False),
    "mosaic": ("+ Mosaic", (("Mosaic", MOSAIC, 0),), False),
    "copypaste": ("+ CopyPaste", (("CopyPaste", {"p": 0.5}, 2),), False),
    "copypaste-rare": ("+ CopyPaste, rare_classes", (("CopyPaste", {"p": 0.5, "rare_classes": True}, 2),), False),
    "balance": ("--balance", (), True),
}
DEFAULT_CONFIGS = ["detection", "mosaic", "copypaste-rare", "balance"]
BASE = "detection"


def write_recipe(folder: Path, name: str, steps: tuple) -> str:
    """The bundled detection recipe with `steps` added: its path, or the bundled name when none."""
    if not steps:
        return BASE
    from augpipe.recipe import bundled_dir

    recipe = yaml.safe_load((bundled_dir() / f"{BASE}.yaml").read_text(encoding="utf-8"))
    recipe["name"] = f"{BASE}-{name}"
    for step, params, index in sorted(steps, key=lambda s: -s[2]):
        recipe["transforms"].insert(index, {step: params})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recipe['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return str(path)


def expand(source: Path, out: Path, recipe: str, balance: bool, seed: int) -> dict:
    """Expand and return the manifest's training counts (rows, objects by class)."""
    augpipe("expand", str(source), "--recipe", recipe, "--out", str(out), "--seed", str(seed), "-q",
            *(["--balance"] if balance else []))
    return json.loads((out / "_augpipe.json").read_text())["counts"]["train"]


def train(data: Path, out: Path, epochs: int, seed: int) -> dict:
    augpipe("train", str(data), "--task", "detection", "--epochs", str(epochs), "--seed", str(seed),
            "--out", str(out), "-q")
    return json.loads((out / "metrics.json").read_text())


def steps(rows: int, epochs: int, batch: int = 64) -> int:
    return epochs * -(-rows // batch)


def run_seed(source: Path, work: Path, configs: list[str], seed: int, epochs: int) -> dict[str, dict]:
    """Each configuration expanded and trained with this seed; the epochs of each chosen so that
    its optimiser steps come closest to the plain recipe's."""
    found, target = {}, None
    for name in configs:
        _, added, balance = CONFIGS[name]
        recipe = write_recipe(work / "recipes", name, added)
        tag = f"{name}-s{seed}"
        counts = expand(source, work / f"x-{tag}", recipe, balance, seed)
        if target is None:
            target = steps(counts["rows"], epochs)
        per_epoch = steps(counts["rows"], 1)
        n_epochs = max(1, round(target / per_epoch))
        started = time.perf_counter()
        metrics = train(work / f"x-{tag}", work / f"run-{tag}", n_epochs, seed)
        found[name] = {"rows": counts["rows"], "by_class": counts["by_class"], "epochs": n_epochs,
                       "steps": n_epochs * per_epoch, "map": metrics["final_val_map"],
                       "rare_ap": metrics["per_class_ap"][CLASSES[RARE]], "seconds": time.perf_counter() - started}
        r = found[name]
        print(f"seed {seed}, {CONFIGS[name][0]}: {r['rows']} training rows ({CLASSES[RARE]} objects "
              f"{r['by_class'].get(CLASSES[RARE], 0)}), {r['epochs']} epochs = {r['steps']} steps, "
              f"final mAP@0.5 {r['map']:.3f}, {CLASSES[RARE]} AP {r['rare_ap']:.3f} ({r['seconds']:.0f} s)", flush=True)
    return found


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def lift(values: list[float], base: list[float]) -> str:
    diffs = [v - b for v, b in zip(values, base)]
    return f"{statistics.mean(diffs):+.3f} ({', '.join(f'{d:+.3f}' for d in diffs)})"


def table(results: list[dict[str, dict]], configs: list[str]) -> list[str]:
    rare = CLASSES[RARE]
    header = (f"| configuration | training rows | {rare} objects | steps | mAP@0.5 | lift (each seed) | "
              f"{rare} AP | lift (each seed) |")
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    base_map = [r[BASE]["map"] for r in results]
    base_rare = [r[BASE]["rare_ap"] for r in results]
    for name in configs:
        maps = [r[name]["map"] for r in results]
        rares = [r[name]["rare_ap"] for r in results]
        rows = statistics.mean(r[name]["rows"] for r in results)
        objects = statistics.mean(r[name]["by_class"].get(rare, 0) for r in results)
        n_steps = statistics.mean(r[name]["steps"] for r in results)
        lines.append(f"| {CONFIGS[name][0]} | {rows:,.0f} | {objects:,.0f} | {n_steps:,.0f} | {spread(maps)} | "
                     f"{lift(maps, base_map) if name != BASE else '-'} | {spread(rares)} | "
                     f"{lift(rares, base_rare) if name != BASE else '-'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS),
                        help="default: %(default)s (the plain recipe is always run: the lifts are against it)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=50, help="the plain recipe's epochs (default: %(default)s)")
    parser.add_argument("--train", type=int, default=48)
    parser.add_argument("--val", type=int, default=160)
    parser.add_argument("--rare", type=int, default=4, help="training scenes holding the rare class")
    parser.add_argument("--work", type=Path, help="keep the data and runs here (default: a temporary folder)")
    args = parser.parse_args()
    configs = [BASE] + [c for c in args.configs if c != BASE]
    work = args.work or Path(tempfile.mkdtemp(prefix="augpipe-detlift-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        source = write_source(work / "source", args.train, args.val, args.rare)
        for split in ("train", "val"):
            counts = objects_per_class(source, split)
            print(f"{split}: " + ", ".join(f"{c} {n}" for c, n in zip(CLASSES, counts)) + " objects", flush=True)
        results = [run_seed(source, work, configs, seed, args.epochs) for seed in range(args.seeds)]
        print("\n".join(table(results, configs)))
        print(f"{time.perf_counter() - started:.0f} s in all")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
