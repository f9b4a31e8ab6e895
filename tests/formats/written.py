"""What the format tests share: expanded datasets to export (`masked`, COCO scenes with instance
masks; `boxes`, YOLO scenes), and round trips through the formats' one annotation type (a Scan a
reader gave, written by a format's writer and read back by its reader)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from augpipe import ExpandOptions, expand
from augpipe.formats import module, scan
from augpipe.formats.base import Header, Item, MaskRef, Objects
from augpipe.recipe import parse_recipe
from augpipe.store import open_store
from conftest import make_scenes

COPIES_0 = parse_recipe("copies: 0\noutput: {format: png}\ntransforms: [HorizontalFlip]\n")
QUIET = dict(progress=False, workers=1)


def items(found, root: Path) -> list[Item]:
    """A Scan's images as a writer takes them: each under its file name (a classified one in its
    class's folder), its objects on its own size, its mask as its bytes."""
    out = []
    for f in found.files:
        path = root / f.relpath
        with Image.open(path) as im:
            w, h = im.size
        target = f.target
        if isinstance(target, Objects):
            target = dataclasses.replace(target, canvas=(w, h))
        elif isinstance(target, MaskRef):
            target = (root / target.path).read_bytes()
        name = PurePosixPath(f.relpath).name
        out.append(Item(f.split or "train", f"{f.class_name}/{name}" if f.class_name else name, path.read_bytes(),
                        w, h, target))
    return out


def round_trip(found, root: Path, out: Path, fmt: str, options: dict, **read):
    """(what was written, the Scan of `out` once `fmt` wrote `found` there)."""
    written = items(found, root)
    module(fmt).write(open_store(out), written, Header(found.task, found.classes, category_ids=found.category_ids), options)
    return written, scan(out, format=fmt, **read)


def assert_same_boxes(found, root: Path, again, out: Path, atol: float = 0.0) -> None:
    """Every image of `found` is in `again`, with the same objects: classes, and boxes in pixels."""
    def objects(scan_, folder):
        return {PurePosixPath(i.name).name: ([scan_.classes[c] for c in i.target.categories], i.target.xywh())
                for i in items(scan_, folder)}

    before, after = objects(found, root), objects(again, out)
    assert sorted(after) == sorted(before)
    for name, (classes, pixels) in before.items():
        assert after[name][0] == classes, name
        np.testing.assert_allclose(np.reshape(after[name][1], (-1, 4)), np.reshape(pixels, (-1, 4)), atol=atol,
                                   err_msg=name)


@pytest.fixture(scope="module")
def masked(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    expand(make_scenes(root / "data", n=6, fmt="coco"), COPIES_0, root / "ds", ExpandOptions(val_fraction=0, **QUIET))
    return root / "ds"


@pytest.fixture(scope="module")
def boxes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("boxes")
    expand(make_scenes(root / "data", n=6, fmt="yolo"), COPIES_0, root / "ds", ExpandOptions(val_fraction=0, **QUIET))
    return root / "ds"


def rows(ds: Path) -> list[dict]:
    return pq.read_table(ds).to_pylist()


def mask_pixels(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return (np.asarray(Image.open(io.BytesIO(data))) > 0).astype(np.uint8)


def coco_source(root: Path, boxes: list, names: list[str], size=(64, 48)) -> Path:
    import cv2

    w, h = size
    images, annotations = [], []
    for i, name in enumerate(names):
        (root / "default").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "default" / name), np.full((h, w, 3), 90, np.uint8))
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        annotations += [{"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "bbox": b, "area": 1,
                         "iscrowd": 0} for b in boxes]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_default.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}))
    return root
