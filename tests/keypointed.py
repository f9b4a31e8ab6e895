"""Keypoint sources for the format and client tests: small COCO person-keypoints books (people of
five named keypoints, a skeleton), a mirroring recipe, and the shards' keypoints read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from conftest import img

NAMES = ["left_eye", "right_eye", "nose", "left_hand", "right_hand"]
SKELETON = [[1, 3], [2, 3], [1, 4], [2, 5]]  # COCO's: 1-based
SIZE = (96, 64)
FLIP = "copies: 1\noutput: {format: png}\ntransforms:\n  - HorizontalFlip: {p: 1}\n"


def person(x: float, y: float, hidden_hand: bool = False) -> list[float]:
    """A 20×30 person at (x, y): eyes, a hidden nose (v 1), two hands (one not labelled if asked)."""
    points = [x + 6, y + 5, 2, x + 14, y + 5, 2, x + 10, y + 10, 1, x + 2, y + 20, 2, x + 18, y + 22, 2]
    if hidden_hand:
        points[-3:] = [0, 0, 0]
    return points


def coco_keypoints(root: Path, n: int = 4, bad: dict | None = None) -> Path:
    """`n` images of 2 or 3 people under annotations/instances_train2017.json; `bad`: more
    images (name → one annotation's keypoints), each with a malformed person."""
    images, annotations = [], []

    def add(name: str, people: list[list[float]]) -> None:
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": name, "width": SIZE[0], "height": SIZE[1]})
        boxes = []
        for keypoints in people:
            j = len(boxes)
            box = [5 + 30 * j, 8 + 6 * j, 20, 30]
            boxes.append(box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "bbox": box,
                                "area": 600, "iscrowd": 0, "keypoints": keypoints,
                                "num_keypoints": sum(v > 0 for v in keypoints[2::3]) if isinstance(keypoints, list)
                                and all(isinstance(v, (int, float)) for v in keypoints) else 0})
        img(root / "train2017" / name, *SIZE, boxes=boxes)

    for i in range(n):
        add(f"p{i}.png", [person(5 + 30 * j, 8 + 6 * j, hidden_hand=j == 2) for j in range(2 + i % 2)])
    for name, keypoints in (bad or {}).items():
        add(name, [person(5, 8), keypoints])
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": NAMES, "skeleton": SKELETON}]
    book = root / "annotations" / "instances_train2017.json"
    book.parent.mkdir(parents=True, exist_ok=True)
    book.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root


def shard_rows(ds: Path) -> list[dict]:
    return [r for f in sorted(ds.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def points(row: dict) -> np.ndarray:
    """A row's keypoints (N, K, 3): x, y in pixels, visibility."""
    return np.array([np.stack([p["x"], p["y"], p["visibility"]], axis=1) for p in row["objects"]["keypoints"]],
                    dtype=np.float64).reshape(-1, len(NAMES), 3)


def by_name(ds: Path) -> dict[str, dict]:
    """The rows by the name an export gives them (`p0.png`, `p0.aug1.png`)."""
    from augpipe.formats.common import file_name

    return {file_name(r): r for r in shard_rows(ds)}
