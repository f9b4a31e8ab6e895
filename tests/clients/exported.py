"""Datasets for the client tests: what an export must carry, read from the shards with pyarrow.

`masked(root)`: scenes of boxes (a mask that is its box) and discs (a real outline), plus a ring
(a mask with a hole) and a pair of blobs (a mask of two parts) given as COCO RLE, expanded with
a rotating, scaling, shifting Affine so that objects turn and reach the image's edges.
`boxes_only(root)`: YOLO box lines (no instance masks), expanded the same way.
`mixed(root)`: the masked scenes expanded with Mosaic, CopyPaste and MixUp (rows of several images)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from augpipe import ExpandOptions, expand
from augpipe.export import export
from augpipe.formats.common import SPLIT_DIR, file_name
from augpipe.recipe import parse_recipe
from conftest import make_scenes

ROTATE = parse_recipe("""
copies: 2
output: {format: png}
transforms:
  - HorizontalFlip: {p: 0.5}
  - Affine: {rotate: [-30, 30], scale: [0.8, 1.2], translate_percent: [-0.15, 0.15], border_mode: 0, fill: 0,
             fill_mask: 0, p: 1.0}
""")
QUIET = ExpandOptions(workers=1, progress=False, val_fraction=0.2, seed=3)


MIXED = parse_recipe("""
copies: 3
output: {format: png}
transforms:
  - HorizontalFlip: {p: 0.5}
  - Mosaic: {p: 1, target_size: [96, 96], cell_shape: [64, 64]}
  - CopyPaste: {p: 0.7}
  - MixUp: {p: 0.3}
""")


def masked(root: Path, n: int = 20) -> Path:
    expand(masked_source(root, n), ROTATE, root / "ds", QUIET)
    return root / "ds"


def mixed(root: Path, n: int = 20) -> Path:
    """The masked scenes (rings and pairs of blobs included) expanded with Mosaic on every copy,
    then CopyPaste and MixUp on some."""
    expand(masked_source(root, n), MIXED, root / "ds", QUIET)
    return root / "ds"


def masked_source(root: Path, n: int) -> Path:
    data = make_scenes(root / "data", n=n, fmt="coco", seed=5)
    book_path = data / "annotations" / "instances_default.json"
    book = json.loads(book_path.read_text())
    for image in book["images"][::3]:  # a ring and a pair of blobs on every third image
        for shape in (_ring(image["height"], image["width"]), _pair(image["height"], image["width"])):
            ys, xs = np.nonzero(shape)
            book["annotations"].append({
                "id": len(book["annotations"]) + 1, "image_id": image["id"], "category_id": 2, "iscrowd": 0,
                "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                "area": int(shape.sum()), "segmentation": {"size": list(shape.shape), "counts": _counts(shape)}})
    book_path.write_text(json.dumps(book))
    return data


def boxes_only(root: Path, n: int = 20) -> Path:
    data = make_scenes(root / "data", n=n, fmt="yolo", seed=6)
    expand(data, ROTATE, root / "ds", QUIET)
    return root / "ds"


def _ring(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(xx - w * 0.3, yy - h * 0.6)
    return ((r < 9) & (r >= 4)).astype(np.uint8)


def _pair(h: int, w: int) -> np.ndarray:
    shape = np.zeros((h, w), np.uint8)
    shape[5:12, 50:58] = 1
    shape[14:20, 61:70] = 1
    return shape


def _counts(mask: np.ndarray) -> list[int]:
    flat = mask.T.reshape(-1)
    edges = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], edges, [len(flat)]])).tolist()
    return [0, *counts] if flat[0] else counts


def shards(ds: Path) -> dict[tuple[str, str], list[dict]]:
    """{(export split folder, file name): objects} from the shards, each object {"box": [x, y, w,
    h], "category", "mask": (H, W) uint8 or None}."""
    manifest = json.loads((ds / "_augpipe.json").read_text())
    out = {}
    for shard in manifest["shards"]:
        for row in pq.read_table(ds / shard["name"]).to_pylist():
            objects = row["objects"]
            masks = objects.get("mask") or [None] * len(objects["bbox"])
            out[(SPLIT_DIR[shard["split"]], file_name(row))] = [
                {"box": list(b), "category": c,
                 "mask": None if m is None else (np.asarray(Image.open(io.BytesIO(m["bytes"]))) > 0).astype(np.uint8)}
                for b, c, m in zip(objects["bbox"], objects["category"], masks)]
    return out


def made_with(ds: Path, step: str) -> set[tuple[str, str]]:
    """(export split folder, file name) of the rows a multi-image step made (their lineage names it)."""
    manifest = json.loads((ds / "_augpipe.json").read_text())
    return {(SPLIT_DIR[shard["split"]], file_name(row)) for shard in manifest["shards"]
            for row in pq.read_table(ds / shard["name"]).to_pylist()
            if any(name == step for name, _ in json.loads(row["transforms"]))}


def extent(mask: np.ndarray) -> list[float]:
    """A mask's extent on its pixels' edges, [x, y, w, h]."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]


def is_box(mask: np.ndarray, box) -> bool:
    """The mask is its box filled, to within a pixel (such an object is written as its box)."""
    x0, y0, w, h = extent(mask)
    solid = mask.sum() == w * h
    return bool(solid and max(abs(a - b) for a, b in zip((x0, y0, x0 + w, y0 + h),
                                                         (box[0], box[1], box[0] + box[2], box[1] + box[3]))) <= 1)


def polygon_box(mask: np.ndarray, box) -> list[float]:
    """The box a YOLO segment line's polygon spans: the shard's box for a mask that is its box,
    else the mask's extent (the outline runs on its pixels' edges)."""
    return list(box) if is_box(mask, box) else extent(mask)


def run_export(ds: Path, fmt: str, out: Path, **options) -> Path:
    export(ds, fmt, out, progress=False, **options)
    return out


def box_error(a, b) -> float:
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).max()) if len(a) else 0.0
