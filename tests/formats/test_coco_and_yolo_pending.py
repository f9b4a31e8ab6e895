"""Tests of formats/coco.py and formats/yolo.py held here while the keypoints work edits test_coco.py
and test_yolo.py: each belongs in its format's file (COCO numbers and ids, YOLO's data.yaml and export)."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from augpipe import ExpandOptions, expand
from augpipe.errors import SourceError
from augpipe.formats import scan
from conftest import coco_ann, coco_image, img, reasons, recipe, write

QUIET = dict(progress=False, workers=1)


HUGE = 10 ** 400  # parses from JSON as a Python int; no float holds it


def test_integers_too_large_for_a_float_are_recorded_skips(tmp_path):
    root = tmp_path / "c"
    for name in ("box", "poly", "rle", "width", "fine"):
        img(root / "train" / f"{name}.jpg")
    write(root / "annotations" / "instances_train.json", {
        "images": [coco_image(1, "box.jpg"), coco_image(2, "poly.jpg"), coco_image(3, "rle.jpg"),
                   coco_image(4, "width.jpg", w=HUGE), coco_image(5, "fine.jpg")],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            coco_ann(1, 1, 1, [1, 1, HUGE, 4]),
            coco_ann(2, 2, 1, [1, 1, 4, 4], segmentation=[[1, 1, HUGE, 1, 4, 4]]),
            coco_ann(3, 3, 1, [1, 1, 4, 4], segmentation={"size": [HUGE, 64], "counts": [0, 10]}),
            coco_ann(4, 4, 1, [1, 1, 4, 4]),
            coco_ann(5, 5, 1, [1, 1, 4, 4]),
        ]})
    found = scan(root)
    why = reasons(found)
    assert "bbox is not 4 numbers" in why["train/box.jpg"]
    assert "segmentation polygon is not" in why["train/poly.jpg"]
    assert "segmentation RLE is not" in why["train/rle.jpg"]
    # a width no float holds is no usable size: the image is checked against its decoded size
    assert {f.relpath for f in found.files} == {"train/width.jpg", "train/fine.jpg"}


def test_a_coco_export_keeps_the_sources_category_and_annotation_ids(tmp_path):
    from augpipe.export import export

    root = tmp_path / "c"
    img(root / "train" / "a.jpg")
    img(root / "train" / "b.jpg")
    write(root / "annotations" / "instances_train.json", {
        "images": [coco_image(1, "a.jpg"), coco_image(2, "b.jpg")],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [coco_ann(41, 1, 7, [1, 1, 8, 8]), coco_ann(17, 1, 3, [10, 10, 8, 8]),
                        coco_ann(99, 2, 3, [2, 2, 8, 8])]})
    m = expand(root, "flips", tmp_path / "ds", ExpandOptions(copies=0, val_fraction=0, **QUIET))
    assert m["classes"] == ["cat", "dog"] and m["category_ids"] == [3, 7]
    export(tmp_path / "ds", "coco", tmp_path / "out", progress=False)
    book = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
    assert sorted((c["id"], c["name"]) for c in book["categories"]) == [(3, "cat"), (7, "dog")]
    names = {c["id"]: c["name"] for c in book["categories"]}
    assert sorted((a["id"], names[a["category_id"]]) for a in book["annotations"]) == \
        [(17, "cat"), (41, "dog"), (99, "cat")]


def test_a_data_yaml_nested_beyond_reason_is_one_line(tmp_path):
    root = tmp_path / "y"
    img(root / "images" / "a.jpg")
    write(root / "labels" / "a.txt", "")
    write(root / "data.yaml", "names: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(SourceError, match=r"data.yaml: not valid YAML \(nested too deeply\)"):
        scan(root)


def test_yolo_export_never_mixes_box_and_polygon_lines(tmp_path):
    """A source mixing a box line and a polygon line: segment (the default with instance masks)
    writes the box as its 4 corners, exactly, and the polygon on its mask's pixel edges; detect
    writes two box lines (ultralytics drops a file that mixes them)."""
    from augpipe.export import export

    data = tmp_path / "yolo"
    (data / "images" / "train").mkdir(parents=True)
    cv2.imwrite(str(data / "images" / "train" / "a.png"), np.full((64, 64, 3), 90, np.uint8))
    (data / "labels" / "train").mkdir(parents=True)
    box, triangle = "0 0.500000 0.500000 0.250000 0.500000", "1 0.1 0.1 0.4 0.1 0.1 0.4"
    (data / "labels" / "train" / "a.txt").write_text(f"{box}\n{triangle}\n")
    (data / "data.yaml").write_text("train: images/train\nnames: [a, b]\n")
    m = expand(data, recipe("[HorizontalFlip]", copies=0), tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))
    assert m["instance_masks"]
    done = export(tmp_path / "ds", "yolo", tmp_path / "seg", progress=False)
    assert done["yolo_task"] == "segment"
    lines = (tmp_path / "seg" / "labels" / "train" / "a.txt").read_text().splitlines()
    assert lines[0] == "0 0.375000 0.250000 0.625000 0.250000 0.625000 0.750000 0.375000 0.750000"
    points = np.array(lines[1].split()[1:], float).reshape(-1, 2) * 64
    assert lines[1].startswith("1 ") and len(points) > 4
    np.testing.assert_allclose(points, np.round(points), atol=1e-3)  # on pixel corners
    row = pq.read_table(tmp_path / "ds").to_pylist()[0]
    mask = np.asarray(Image.open(io.BytesIO(row["objects"]["mask"][1]["bytes"]))) > 0
    ys, xs = np.nonzero(mask)
    np.testing.assert_allclose([*points.min(axis=0), *points.max(axis=0)],
                               [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1e-3)  # the mask's extent
    export(tmp_path / "ds", "yolo", tmp_path / "det", progress=False, yolo_task="detect")
    lines = (tmp_path / "det" / "labels" / "train" / "a.txt").read_text().splitlines()
    assert lines[0] == box and len(lines[1].split()) == 5
    x, y, w, h = row["objects"]["bbox"][1]
    assert lines[1] == f"1 {(x + w / 2) / 64:.6f} {(y + h / 2) / 64:.6f} {w / 64:.6f} {h / 64:.6f}"
