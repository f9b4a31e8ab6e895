"""What boxes cost inside albumentations itself, without augpipe: the ceiling for issue 20's
detection target (0.8 of classification's speed).

    python bench/albumentations_boxes.py

A 320×320 JPEG decoded, put through bench/expand.py's transforms (flip, rotation ±15°,
brightness/contrast) and encoded again, in one process: without boxes, with 5 boxes through
stock `A.Compose(bbox_params=...)` (as augpipe calls it: COCO format, clipped, two label fields),
through augpipe's Compose (`recipe.compose_class`: albumentations' box conversions and filter
done by its lean processor, bit for bit the same), and with a mask (a PNG decoded and written
again, as augpipe does: read by PIL, written by OpenCV unfiltered): the ceilings for issue 20's
targets (detection 0.8, segmentation 0.7). Best of 5 interleaved rounds of 400 images.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import albumentations as A

    from augpipe.recipe import compose_class
    from augpipe.targets.masks import read_mask, write_mask

    rng = np.random.default_rng(0)
    data = cv2.imencode(".jpg", cv2.GaussianBlur(rng.integers(0, 255, (320, 320, 3), np.uint8), (9, 9), 3))[1]
    boxes = np.array([[10, 10, 50, 40], [100, 80, 60, 60], [200, 150, 40, 90], [30, 200, 80, 50], [250, 20, 40, 40]],
                     float)

    def steps():
        return [A.HorizontalFlip(p=0.5), A.Rotate(limit=(-15, 15), p=0.5), A.RandomBrightnessContrast(p=0.5)]

    mask = np.zeros((320, 320), np.uint8)
    for k, (x, y, w, h) in enumerate(boxes.astype(int)):
        mask[y:y + h, x:x + w] = k % 3 + 1
    mask_png = write_mask(mask, None)
    params = A.BboxParams(format="coco", label_fields=["categories", "keys"], clip=True)
    composes = {"no targets": (A.Compose(steps(), p=1.0), False),
                "5 boxes, A.Compose": (A.Compose(steps(), p=1.0, bbox_params=params), True),
                "5 boxes, augpipe's Compose": (compose_class()(steps(), p=1.0, bbox_params=params), True),
                "a mask": (A.Compose(steps(), p=1.0, mask_interpolation=cv2.INTER_NEAREST), "mask")}

    def run(compose, with_boxes, n: int = 400) -> float:
        compose.set_random_state(np.random.default_rng(1), random.Random(1))
        started = time.perf_counter()
        for _ in range(n):
            extra = {"bboxes": boxes, "categories": [0] * 5, "keys": list(range(5))} if with_boxes is True else {}
            if with_boxes == "mask":
                extra = {"mask": read_mask(mask_png, "mask")[0]}
            out = compose(image=cv2.imdecode(data, cv2.IMREAD_COLOR), **extra)
            cv2.imencode(".jpg", out["image"], [cv2.IMWRITE_JPEG_QUALITY, 90])
            if with_boxes == "mask":
                write_mask(out["mask"], None)
        return (time.perf_counter() - started) / n

    best = {name: float("inf") for name in composes}
    for _ in range(5):
        for name, (compose, with_boxes) in composes.items():
            best[name] = min(best[name], run(compose, with_boxes))
    base = best["no targets"]
    for name, seconds in best.items():
        print(f"  {name:<28} {seconds * 1e3:6.2f} ms an image   {base / seconds:.2f} of the speed without targets")


if __name__ == "__main__":
    main()
