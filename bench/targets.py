"""Expand with boxes and masks against expand without, in one run.

    pip install -e '.[bench]' && python bench/targets.py [--images 2000] [--size 320] [--repeat 3]
    python bench/targets.py --images 300 --profile instance-masks   # cProfile of one worker

The same photos (bench/expand.py's, cut from scikit-image's pictures) four ways: an ImageFolder
(classification), a COCO folder with 5 boxes an image on average (detection), a COCO folder with
2–5 objects an image, each a polygon (instance masks), and a masks folder with a mask an image
(segmentation); the same recipe (flip, rotation ±15°, brightness/contrast), 2 copies, 2 workers.
Images out a second by expand's own clock for the shard tasks, medians of runs taken in turn.
Targets (issue 20): detection at least 0.8 of classification, instance masks 0.5, segmentation
0.7. `--cpu` times each run by its CPU seconds instead, one worker in this process (steadier
where other work shares the machine). `--profile KIND` runs one expand of that source with one worker (in this process) under
cProfile instead and prints the top entries. `--rows` times `augment_sample` alone on one 320 px
JPEG (5 boxes, 4 polygons, or a mask of 3 classes), CPU ms a row, the best of rounds taken in turn: the least
disturbed figure on a loaded machine (no reading, no shards).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGETS = {"detection": 0.8, "instance-masks": 0.5, "segmentation": 0.7}


def _polygon(rng, x: int, y: int, w: int, h: int) -> list[float]:
    """A star-shaped polygon of 8–16 points inside the box."""
    n = int(rng.integers(8, 17))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radius = rng.uniform(0.6, 1.0, n)
    px = x + w / 2 + np.cos(angles) * radius * w / 2
    py = y + h / 2 + np.sin(angles) * radius * h / 2
    return np.round(np.stack([px, py], axis=1).reshape(-1), 2).tolist()


def add_targets(src: Path, work: Path, seed: int = 0) -> dict[str, Path]:
    """A COCO folder of boxes, a COCO folder of polygons and a masks folder holding the same
    images as `src` (an ImageFolder)."""
    rng = np.random.default_rng(seed)
    coco, polygons, masks = work / "coco", work / "coco-polygons", work / "masks"
    images, annotations, shapes = [], [], []
    for i, path in enumerate(sorted(src.rglob("*.jpg"))):
        name = f"{path.parent.name}_{path.name}"
        for folder in (coco / "default", polygons / "default", masks / "images"):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / name)
        h, w = cv2.imread(str(path)).shape[:2]
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        mask = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(3, 8))):  # 5 on average
            bw, bh = int(rng.integers(w // 10, w // 3)), int(rng.integers(h // 10, h // 3))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            c = int(rng.integers(0, 3))
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1,
                                "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
            mask[y:y + bh, x:x + bw] = c + 1
        for _ in range(int(rng.integers(2, 6))):  # 2–5 objects, each a polygon
            bw, bh = int(rng.integers(w // 8, w // 2)), int(rng.integers(h // 8, h // 2))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            shapes.append({"id": len(shapes) + 1, "image_id": i + 1, "category_id": int(rng.integers(1, 4)),
                           "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0,
                           "segmentation": [_polygon(rng, x, y, bw, bh)]})
        (masks / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(masks / "masks" / f"{Path(name).stem}.png"), mask)
    cats = [{"id": k + 1, "name": n, "supercategory": "thing"} for k, n in enumerate(("a", "b", "c"))]
    for root, objects in ((coco, annotations), (polygons, shapes)):
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / "instances_default.json").write_text(
            json.dumps({"images": images, "annotations": objects, "categories": cats}))
    (masks / "classes.txt").write_text("background\na\nb\nc\n")
    return {"detection": coco, "instance-masks": polygons, "segmentation": masks}


def rate(source: Path, out: Path, recipe: Path, workers: int = 2, cpu: bool = False) -> tuple[float, dict]:
    """Rows a second by expand's own clock (its shard tasks), or with `cpu`, by the CPU time of
    the whole expand run in this process with one worker (steadier on a loaded machine)."""
    from augpipe import ExpandOptions, expand

    shutil.rmtree(out, ignore_errors=True)  # a finished output of the same run would be "up to date"
    started = time.process_time()
    m = expand(source, recipe, out, ExpandOptions(workers=1 if cpu else workers, progress=False))
    spent = time.process_time() - started if cpu else m["timing"]["process_seconds"]
    shutil.rmtree(out, ignore_errors=True)
    return sum(c["rows"] for c in m["counts"].values()) / spent, m


def objects_a_row(m: dict) -> float:
    rows = sum(c["rows"] for c in m["counts"].values())
    return sum(sum(c["by_class"].get(k, 0) for k in ("a", "b", "c")) for c in m["counts"].values()) / rows


def profile(source: Path, out: Path, recipe: Path, top: int) -> None:
    """One worker, in this process, under cProfile: the top entries by own and by total time."""
    rate(source, out, recipe, workers=1)  # imports and first-use costs out of the profile
    profiler = cProfile.Profile()
    profiler.enable()
    r, _ = rate(source, out, recipe, workers=1)
    profiler.disable()
    print(f"{r:,.0f} images/s under cProfile (one worker)")
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def row_times(rounds: int = 7, sources: int = 60) -> None:
    """CPU ms a row of augment_sample (2 copies) by kind, the best of `rounds` taken in turn."""
    from expand import RECIPE

    from augpipe.formats.base import MaskRef, Objects
    from augpipe.recipe import parse_recipe
    from augpipe.sample import SourceItem, augment_sample
    from augpipe.targets import kind_for
    from augpipe.targets.semantic import Semantic

    cv2.setNumThreads(1)  # as expand's workers run: OpenCV's pool's threads would count in CPU time
    recipe = parse_recipe(RECIPE)
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (320, 320, 3), np.uint8), (9, 9), 3)
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    boxes = ((10, 10, 50, 40), (100, 80, 60, 60), (200, 150, 40, 90), (30, 200, 80, 50), (250, 20, 40, 40))
    ring = np.linspace(0, 2 * math.pi, 12, endpoint=False)
    polygons = tuple(("polygon", (tuple(np.round(np.stack([x + w / 2 + np.cos(ring) * w / 2.2, y + h / 2 + np.sin(ring) * h / 2.2],
                                                             axis=1).ravel(), 2).tolist()),)) for x, y, w, h in boxes[:4])
    mask = np.zeros((320, 320), np.uint8)
    for k, (x, y, w, h) in enumerate(boxes):
        mask[y:y + h, x:x + w] = k % 3 + 1
    cases = {"classification": (None, None, None),
             "detection": (kind_for("detection"), Objects(boxes, (0, 1, 2, 0, 1), tuple(range(5))), None),
             "instance-masks": (kind_for("detection", instance_masks=True),
                                Objects(boxes[:4], (0, 1, 2, 0), tuple(range(4)), segments=polygons), None),
             "segmentation": (Semantic(4), MaskRef("a.png"), cv2.imencode(".png", mask)[1].tobytes())}
    best = dict.fromkeys(cases, math.inf)
    ratios = {name: [] for name in cases}
    for _ in range(rounds):
        spent = {}
        for name, (kind, target, extra) in cases.items():
            started = time.process_time()
            for i in range(sources):
                augment_sample(data, SourceItem(f"a{i}.jpg", 0, (1, 2), target=target), recipe, 0, 10**8, kind=kind,
                               extra=extra)
            spent[name] = (time.process_time() - started) / (2 * sources) * 1e3
            best[name] = min(best[name], spent[name])
            ratios[name].append(spent["classification"] / spent[name])
    print(f"augment_sample alone, 320 px, 2 copies; CPU ms a row, best of {rounds} rounds of {sources} sources;\n"
          f"the ratio of the bests, and the median of each round's own ratio (steadier on a busy machine)")
    for name, ms in best.items():
        target = f"  (target {TARGETS[name]})" if name in TARGETS else ""
        print(f"  {name:<16} {ms:6.2f} ms   {best['classification'] / ms:.2f}   {statistics.median(ratios[name]):.2f}{target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=list(TARGETS), help="the kinds to time (default: all)")
    parser.add_argument("--profile", choices=["classification", *TARGETS], help="profile one kind, one worker")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cpu", action="store_true", help="time by CPU seconds, one worker in this process")
    parser.add_argument("--rows", action="store_true", help="CPU ms a row of augment_sample alone, by kind")
    parser.add_argument("--rounds", type=int, default=7, help="--rows: rounds of each kind, taken in turn")
    args = parser.parse_args()
    if args.rows:
        row_times(args.rounds)
        return

    from expand import RECIPE, make_dataset

    work = Path(tempfile.mkdtemp(prefix="augpipe-bench-targets-"))
    try:
        recipe = work / "bench.yaml"
        recipe.write_text(RECIPE)
        src = make_dataset(work / "src", args.images, args.size)
        sources = {"classification": src, **add_targets(src, work)}
        if args.profile:
            profile(sources[args.profile], work / "out", recipe, args.top)
            return
        kinds = ["classification", *(args.only or TARGETS)]
        runs = {name: [] for name in kinds}
        per_row = {}
        for _ in range(args.repeat):
            for name in kinds:
                r, m = rate(sources[name], work / f"out-{name}", recipe, cpu=args.cpu)
                runs[name].append(r)
                per_row[name] = objects_a_row(m)
        base = statistics.median(runs["classification"])
        clock = "CPU seconds of the whole run, 1 worker in-process" if args.cpu else \
            "expand's own clock (shard tasks), 2 workers"
        print(f"{args.images:,} inputs at {args.size} px, 2 copies; images/s by {clock}, median of {args.repeat}")
        print(f"  {'classification (ImageFolder)':<46} {base:7,.0f}   1.00")
        for name in kinds[1:]:
            r = statistics.median(runs[name])
            spread = ", ".join(f"{x / base:.2f}" for x in runs[name])
            what = {"detection": f"COCO, {per_row[name]:.1f} boxes a row",
                    "instance-masks": f"COCO polygons, {per_row[name]:.1f} a row",
                    "segmentation": "masks folder, a mask a row"}[name]
            print(f"  {name + ' (' + what + ')':<46} {r:7,.0f}   {r / base:.2f}  (runs: {spread}; "
                  f"target {TARGETS[name]})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
