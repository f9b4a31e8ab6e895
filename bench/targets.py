"""Expand with boxes and masks against expand without, in one run.

    pip install -e '.[bench]' && python bench/targets.py [--images 2000] [--size 320] [--repeat 3]

The same photos (bench/expand.py's, cut from scikit-image's pictures) three ways: an ImageFolder
(classification), a COCO folder with 5 boxes an image on average (detection), and a masks folder
with a mask an image (segmentation); the same recipe (flip, rotation ±15°, brightness/contrast),
2 copies, 2 workers. Images out a second by expand's own clock for the shard tasks, medians of
runs taken in turn. Targets (issue 10): detection at least 0.8 of classification, segmentation
at least 0.6.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def add_targets(src: Path, work: Path, seed: int = 0) -> tuple[Path, Path]:
    """A COCO folder and a masks folder holding the same images as `src` (an ImageFolder)."""
    rng = np.random.default_rng(seed)
    coco, masks = work / "coco", work / "masks"
    images, annotations = [], []
    for i, path in enumerate(sorted(src.rglob("*.jpg"))):
        name = f"{path.parent.name}_{path.name}"
        for folder in (coco / "default", masks / "images"):
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
        (masks / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(masks / "masks" / f"{Path(name).stem}.png"), mask)
    cats = [{"id": k + 1, "name": n, "supercategory": "thing"} for k, n in enumerate(("a", "b", "c"))]
    (coco / "annotations").mkdir(parents=True, exist_ok=True)
    (coco / "annotations" / "instances_default.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    (masks / "classes.txt").write_text("background\na\nb\nc\n")
    return coco, masks


def rate(source: Path, out: Path, recipe: Path) -> float:
    from augpipe import ExpandOptions, expand

    shutil.rmtree(out, ignore_errors=True)  # a finished output of the same run would be "up to date"
    m = expand(source, recipe, out, ExpandOptions(workers=2, progress=False))
    shutil.rmtree(out, ignore_errors=True)
    return sum(c["rows"] for c in m["counts"].values()) / m["timing"]["process_seconds"], m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from expand import RECIPE, make_dataset

    work = Path(tempfile.mkdtemp(prefix="augpipe-bench-targets-"))
    try:
        recipe = work / "bench.yaml"
        recipe.write_text(RECIPE)
        src = make_dataset(work / "src", args.images, args.size)
        coco, masks = add_targets(src, work)
        sources = {"classification": src, "detection": coco, "segmentation": masks}
        runs = {name: [] for name in sources}
        boxes = 0
        for i in range(args.repeat):
            for name, source in sources.items():
                r, m = rate(source, work / f"out-{name}", recipe)
                runs[name].append(r)
                if name == "detection":
                    boxes = sum(c["by_class"].get(k, 0) for c in m["counts"].values() for k in ("a", "b", "c"))
                    rows = sum(c["rows"] for c in m["counts"].values())
        base = statistics.median(runs["classification"])
        print(f"{args.images:,} inputs at {args.size} px, 2 copies, 2 workers; images/s by expand's own clock "
              f"(shard tasks), median of {args.repeat}")
        print(f"  classification (ImageFolder)        {base:7,.0f}   1.00")
        for name, target in (("detection", 0.8), ("segmentation", 0.6)):
            r = statistics.median(runs[name])
            spread = ", ".join(f"{x / base:.2f}" for x in runs[name])
            what = f"COCO, {boxes / rows:.1f} boxes a row" if name == "detection" else "masks folder, a mask a row"
            print(f"  {name:<14} ({what:<22}) {r:7,.0f}   {r / base:.2f}  (runs: {spread}; target {target})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
