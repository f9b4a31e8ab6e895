"""The annotation readers: COCO, YOLO, VOC, masks, label files; each fixture made here."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from augpipe.errors import SourceError
from augpipe.formats import detect, scan
from augpipe.formats.base import MaskRef, Objects
from augpipe.store import open_store


def img(path: Path, w: int = 64, h: int = 48, boxes=()) -> Path:
    """A black image with filled rectangles at known places ([x, y, w, h] in pixels)."""
    a = np.zeros((h, w, 3), np.uint8)
    for x, y, bw, bh in boxes:
        cv2.rectangle(a, (x, y), (x + bw - 1, y + bh - 1), (0, 255, 0), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), a)
    return path


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, (dict, list)):
        content = json.dumps(content)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def by_path(found) -> dict:
    return {f.relpath: f for f in found.files}


def reasons(found) -> dict:
    return dict(found.skipped)


# ---------------------------------------------------------------- COCO

def coco_image(i, name, w=64, h=48):
    return {"id": i, "file_name": name, "width": w, "height": h}


def coco_ann(i, image, cat, bbox, **extra):
    return {"id": i, "image_id": image, "category_id": cat, "bbox": bbox, "area": 1, "iscrowd": 0, **extra}


def make_coco(root: Path) -> Path:
    cats = [{"id": 3, "name": "dog", "supercategory": "animal"}, {"id": 1, "name": "cat", "supercategory": "animal"}]
    train = {
        "images": [coco_image(1, "a.jpg"), coco_image(2, "b.jpg"), coco_image(3, "empty.jpg"),
                   coco_image(4, "wide.jpg"), coco_image(5, "nan.jpg"), coco_image(6, "three.jpg"),
                   coco_image(7, "unknown.jpg"), coco_image(8, "outside.jpg"), coco_image(9, "edge.jpg"),
                   coco_image(10, "gone.jpg"), coco_image(11, "sub/deep.jpg")],
        "annotations": [
            coco_ann(101, 1, 1, [10, 5, 20, 10], segmentation=[[10, 5, 30, 5, 30, 15, 10, 15]]),
            coco_ann(102, 1, 3, [40, 20, 8, 8]),
            coco_ann(103, 2, 3, [0, 0, 64, 48], iscrowd=1,
                     segmentation={"size": [48, 64], "counts": [0, 10, 3062]}),
            coco_ann(104, 4, 1, [1, 1, 2, 2]), coco_ann(105, 4, 1, [1, 1, 2, 2]),
            coco_ann(106, 4, 1, [10, 5, -3, 4]),
            coco_ann(107, 5, 1, [float("nan"), 1, 2, 2]),
            coco_ann(108, 6, 1, [1, 2, 3]),
            coco_ann(109, 7, 2, [1, 1, 2, 2]),
            coco_ann(110, 8, 1, [60, 40, 10, 5]),
            coco_ann(111, 9, 1, [-0.5, 40, 64.8, 8.5]),
            coco_ann(112, 11, 3, [2, 2, 4, 4]),
            coco_ann(113, 99, 3, [2, 2, 4, 4]),
        ],
        "categories": cats,
    }
    val = {"images": [coco_image(1, "c.jpg")], "annotations": [coco_ann(1, 1, 1, [1, 2, 3, 4])], "categories": cats}
    write(root / "annotations/instances_train2017.json", train)
    write(root / "annotations/instances_val2017.json", val)
    for name in ("a", "b", "empty", "wide", "nan", "three", "unknown", "outside", "edge", "extra", "sub/deep"):
        img(root / f"train2017/{name}.jpg", boxes=[(10, 5, 20, 10)])
    img(root / "val2017/c.jpg")
    return root


def test_coco_standard(tmp_path):
    found = scan(make_coco(tmp_path / "coco"))
    assert (found.format, found.task, found.labelled, found.split_folders) == ("coco", "detection", True, True)
    assert found.classes == ["cat", "dog"]  # sorted by id: 1, 3
    files = by_path(found)
    assert sorted(files) == ["train2017/a.jpg", "train2017/b.jpg", "train2017/edge.jpg", "train2017/empty.jpg",
                             "train2017/sub/deep.jpg", "val2017/c.jpg"]
    a = files["train2017/a.jpg"].target
    assert a == Objects(((10.0, 5.0, 20.0, 10.0), (40.0, 20.0, 8.0, 8.0)), (0, 1), (101, 102),
                        (("polygon", ((10.0, 5.0, 30.0, 5.0, 30.0, 15.0, 10.0, 15.0),)), None))
    assert files["train2017/a.jpg"].split == "train" and files["val2017/c.jpg"].split == "validation"
    assert files["train2017/a.jpg"].class_name is None
    crowd = files["train2017/b.jpg"].target  # iscrowd: kept, its RLE as written
    assert crowd.boxes == ((0.0, 0.0, 64.0, 48.0),) and crowd.segments == (("rle", {"size": [48, 64],
                                                                                      "counts": [0, 10, 3062]}),)
    assert files["train2017/empty.jpg"].target == Objects((), (), (), None)  # listed, no annotations
    assert files["train2017/edge.jpg"].target.boxes == ((0.0, 40.0, 64.0, 8.0),)  # within 1 px: clipped
    assert files["val2017/c.jpg"].target.boxes == ((1.0, 2.0, 3.0, 4.0),)
    skipped = reasons(found)
    assert skipped["train2017/wide.jpg"] == "box 2 [10, 5, -3, 4]: width ≤ 0"
    assert skipped["train2017/nan.jpg"] == "box 0 [nan, 1, 2, 2]: not a number"
    assert skipped["train2017/three.jpg"] == "box 0: bbox is not 4 numbers ([1, 2, 3])"
    assert skipped["train2017/unknown.jpg"] == "box 0: category_id 2 is not in categories"
    assert skipped["train2017/outside.jpg"] == "box 0 [60, 40, 10, 5]: outside the 64×48 image"
    assert skipped["train2017/extra.jpg"] == "not in the annotation file"
    assert skipped["train2017/gone.jpg"] == "listed in annotations/instances_train2017.json but not found"
    assert skipped["annotations/instances_train2017.json"] == "annotations[12]: image_id 99 is not in images"
    assert len(found.annotations) == 64


def test_coco_annotations_digest_follows_the_json(tmp_path):
    root = make_coco(tmp_path / "coco")
    before = scan(root).annotations
    path = root / "annotations/instances_val2017.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["bbox"] = [2, 2, 3, 4]
    write(path, doc)
    after = scan(root)
    assert after.annotations != before and by_path(after)["val2017/c.jpg"].target.boxes == ((2.0, 2.0, 3.0, 4.0),)


def make_roboflow_coco(root: Path, use_placeholder: bool = False) -> Path:
    cats = [{"id": 0, "name": "cells", "supercategory": "none"}, {"id": 1, "name": "rbc", "supercategory": "cells"},
            {"id": 2, "name": "wbc", "supercategory": "cells"}]
    for split, names in (("train", ["x.jpg", "y.jpg"]), ("valid", ["z.jpg"]), ("test", ["t.jpg"])):
        images = [coco_image(i, n) for i, n in enumerate(names)]
        anns = [coco_ann(i, i, 2 if i else 1, [4, 4, 10, 12]) for i in range(len(names))]
        if use_placeholder and split == "test":
            anns[0]["category_id"] = 0
        write(root / split / "_annotations.coco.json", {"images": images, "annotations": anns, "categories": cats})
        for n in names:
            img(root / split / n, boxes=[(4, 4, 10, 12)])
    write(root / "README.roboflow.txt", "exported")
    return root


def test_coco_roboflow_drops_the_unused_placeholder(tmp_path):
    found = scan(make_roboflow_coco(tmp_path / "rf"))
    assert found.format == "coco" and found.classes == ["rbc", "wbc"]
    files = by_path(found)
    assert {p: f.split for p, f in files.items()} == {"train/x.jpg": "train", "train/y.jpg": "train",
                                                     "valid/z.jpg": "validation", "test/t.jpg": "test"}
    assert files["train/x.jpg"].target.categories == (0,) and files["train/y.jpg"].target.categories == (1,)
    assert files["train/x.jpg"].target.boxes == ((4.0, 4.0, 10.0, 12.0),)
    assert found.skipped == []  # the README is not an input


def test_coco_roboflow_keeps_a_used_placeholder(tmp_path):
    found = scan(make_roboflow_coco(tmp_path / "rf", use_placeholder=True))
    assert found.classes == ["cells", "rbc", "wbc"]
    assert by_path(found)["test/t.jpg"].target.categories == (0,)
    assert by_path(found)["train/x.jpg"].target.categories == (1,)


# A 48×64 mask, ones in rows 5–14 and columns 10–29, as pycocotools' `mask.encode` compresses it
RLE_48x64 = "U?:V10000000000000000000000000000000000000kb1"


def test_coco_compressed_rle_passes_through_and_decodes(tmp_path):
    from augpipe.targets.boxes import _rle

    mask = np.zeros((48, 64), np.uint8)
    mask[5:15, 10:30] = 1
    rle = {"size": [48, 64], "counts": RLE_48x64}
    root = tmp_path / "c"
    write(root / "annotations/instances_val.json", {
        "images": [coco_image(1, "m.png")], "categories": [{"id": 1, "name": "thing"}],
        "annotations": [coco_ann(1, 1, 1, [10, 5, 20, 10], segmentation=rle),
                        coco_ann(2, 1, 1, [10, 5, 20, 10], segmentation=[])]})
    img(root / "val/m.png")
    f = by_path(scan(root))["val/m.png"]
    kind, stored = f.target.segments[0]
    assert kind == "rle" and f.target.segments[1] is None and f.split == "validation"
    assert (_rle(stored, (48, 64)) == mask).all()


def test_coco_bad_segmentations(tmp_path):
    root = tmp_path / "c"
    write(root / "annotations/instances_train.json", {
        "images": [coco_image(1, "r.jpg"), coco_image(2, "p.jpg"), coco_image(3, "ok.jpg"), coco_image(4, "l.jpg")],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [coco_ann(1, 1, 1, [1, 1, 5, 5], segmentation={"size": [10, 10], "counts": "abc"}),
                        coco_ann(2, 2, 1, [1, 1, 5, 5], segmentation=[[1, 2, 3]]),
                        coco_ann(3, 4, [1], [1, 1, 5, 5])]})
    for name in ("r", "p", "ok", "l"):
        img(root / f"train/{name}.jpg")
    found = scan(root)
    assert list(by_path(found)) == ["train/ok.jpg"]
    assert reasons(found) == {"train/r.jpg": "box 0: segmentation RLE is 10×10, the image 64×48",
                              "train/p.jpg": "box 0: segmentation polygon is not 3 or more (x, y) numbers ([1, 2, 3])",
                              "train/l.jpg": "box 0: category_id [1] is not in categories"}
    write(root / "annotations/instances_train.json", {"images": [coco_image(1, "r.jpg")], "annotations": [
        coco_ann(1, 1, 1, [70, 1, 5, 5])], "categories": [{"id": 1, "name": "thing"}]})
    with pytest.raises(SourceError, match=r"every image in .* was skipped \(coco\): not in the annotation file \(3\); "
                                          r"box 0 \[70, 1, 5, 5\]: outside the 64×48 image \(1\)"):
        scan(root)


def test_coco_malformed_json(tmp_path):
    root = make_coco(tmp_path / "coco")
    write(root / "annotations/instances_val2017.json", "{not json")
    found = scan(root)
    skipped = reasons(found)
    assert skipped["annotations/instances_val2017.json"] == "not valid JSON (line 1 column 2: Expecting property " \
                                                            "name enclosed in double quotes)"
    assert skipped["val2017/c.jpg"] == "its annotation file annotations/instances_val2017.json cannot be read"
    (root / "annotations/instances_train2017.json").unlink()
    with pytest.raises(SourceError, match=r"instances_val2017.json: not valid JSON \(line 1"):
        scan(root)
    write(root / "annotations/instances_val2017.json", {"images": "no"})
    with pytest.raises(SourceError, match="not a COCO annotation file"):
        scan(root)


# ---------------------------------------------------------------- YOLO

def make_ultralytics(root: Path, names="{0: person, 1: car}") -> Path:
    write(root / "data.yaml", f"path: ../datasets/mine\ntrain: images/train\nval: images/val\nnames: {names}\n")
    img(root / "images/train/a.jpg", boxes=[(16, 12, 32, 24)])
    write(root / "labels/train/a.txt", "0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.1 0.2\n\n")
    img(root / "images/train/background.jpg")
    img(root / "images/val/p.png")
    write(root / "labels/val/p.txt", "1 0.1 0.2 0.5 0.2 0.3 0.6\n")
    write(root / "labels/train/orphan.txt", "0 0.5 0.5 0.1 0.1\n")
    return root


@pytest.mark.parametrize("names", ["{0: person, 1: car}", "[person, car]"])
def test_yolo_ultralytics(tmp_path, names):
    found = scan(make_ultralytics(tmp_path / "y", names))
    assert (found.format, found.task, found.classes) == ("yolo", "detection", ["person", "car"])
    files = by_path(found)
    assert {p: f.split for p, f in files.items()} == {"images/train/a.jpg": "train",
                                                     "images/train/background.jpg": "train",
                                                     "images/val/p.png": "validation"}
    assert files["images/train/a.jpg"].target == Objects(
        ((0.5, 0.5, 0.5, 0.5), (0.25, 0.25, 0.1, 0.2)), (0, 1), (0, 1), None, box_format="cxcywhn")
    assert files["images/train/background.jpg"].target == Objects((), (), (), None, box_format="cxcywhn")
    polygon = files["images/val/p.png"].target
    assert polygon.categories == (1,) and polygon.normalised
    assert polygon.boxes == (pytest.approx((0.3, 0.4, 0.4, 0.4)),)
    assert polygon.segments == (("polygon", ((0.1, 0.2, 0.5, 0.2, 0.3, 0.6),)),)
    assert found.skipped == [("labels/train/orphan.txt", "no image for this label file")]


def test_yolo_roboflow_layout(tmp_path):
    root = tmp_path / "rf"
    write(root / "data.yaml", "train: ../train/images\nval: ../valid/images\ntest: ../test/images\nnc: 2\n"
                              "names: ['a', 'b']\n")
    for split in ("train", "valid", "test"):
        img(root / split / "images" / f"{split}1.jpg")
        write(root / split / "labels" / f"{split}1.txt", "1 0.5 0.5 0.2 0.2\n")
    found = scan(root)
    assert {p: f.split for p, f in by_path(found).items()} == {
        "train/images/train1.jpg": "train", "valid/images/valid1.jpg": "validation", "test/images/test1.jpg": "test"}
    assert found.classes == ["a", "b"] and found.skipped == []


def test_yolo_falls_back_to_the_layouts(tmp_path):
    root = tmp_path / "y"
    write(root / "dataset.yaml", "train: /content/elsewhere/nothing\nnames: [a]\n")
    img(root / "images/train/t.jpg")
    img(root / "images/val/v.jpg")
    img(root / "stray.jpg")
    write(root / "labels/train/t.txt", "")  # background images: label files, empty
    write(root / "labels/val/v.txt", "")
    found = scan(root)
    assert {p: f.split for p, f in by_path(found).items()} == {"images/train/t.jpg": "train",
                                                              "images/val/v.jpg": "validation"}
    assert reasons(found)["stray.jpg"] == "outside the split folders (images/train, images/val)"


def test_yolo_problems(tmp_path):
    root = tmp_path / "y"
    write(root / "data.yaml", "train: images\nnames: [a, b]\n")
    lines = {
        "ok": "0 0.5 0.5 1.0005 0.2",  # 0.0003 past the edge: within the tolerance
        "six": "0 0.5 0.5 0.2 0.2 0.9",
        "word": "0 0.5 abc 0.2 0.2",
        "class": "2 0.5 0.5 0.2 0.2",
        "fraction": "0.5 0.5 0.5 0.2 0.2",
        "width": "0 0.5 0.5 -0.1 0.2",
        "outside": "1 0.95 0.5 0.2 0.2",
        "nan": "0 nan 0.5 0.2 0.2",
        "polygon": "0 0.1 0.1 0.5 0.1 0.5 1.2",
    }
    for name, line in lines.items():
        img(root / f"images/{name}.jpg")
        write(root / f"labels/{name}.txt", f"0 0.5 0.5 0.1 0.1\n{line}\n")
    write(root / "labels/latin.txt", b"0 0.5 0.5 0.1 0.1 \xe9\n")
    img(root / "images/latin.jpg")
    img(root / "images/link.jpg")
    (root / "labels/link.txt").symlink_to(root / "nowhere.txt")  # unreadable: not a background image
    found = scan(root)
    assert list(by_path(found)) == ["images/ok.jpg"] and by_path(found)["images/ok.jpg"].split == "train"
    assert by_path(found)["images/ok.jpg"].target.boxes[1] == (0.5, 0.5, 1.0005, 0.2)
    skipped = reasons(found)
    assert skipped == {
        "images/six.jpg": "labels/six.txt line 2: 6 fields (a box is 5, class cx cy w h; a polygon an odd number "
                          "of 7 or more, class x1 y1 x2 y2 x3 y3 ...)",
        "images/word.jpg": "labels/word.txt line 2: 'abc' is not a number",
        "images/class.jpg": "labels/class.txt line 2: class 2 is not one of the 2 classes of the yaml's names",
        "images/fraction.jpg": "labels/fraction.txt line 2: class 0.5 is not one of the 2 classes of the yaml's names",
        "images/width.jpg": "labels/width.txt line 2: box 1 [0.5000, 0.5000, -0.1000, 0.2000] (normalised cx, cy, "
                            "w, h): width ≤ 0",
        "images/outside.jpg": "labels/outside.txt line 2: box 1 [0.9500, 0.5000, 0.2000, 0.2000] (normalised cx, "
                              "cy, w, h): outside the image (beyond 0..1)",
        "images/nan.jpg": "labels/nan.txt line 2: box 1 [nan, 0.5000, 0.2000, 0.2000] (normalised cx, cy, w, h): "
                          "not a number",
        "images/polygon.jpg": "labels/polygon.txt line 2: box 1 [0.3000, 0.6500, 0.4000, 1.1000] (normalised cx, "
                              "cy, w, h): outside the image (beyond 0..1)",
        "images/latin.jpg": "labels/latin.txt is not UTF-8 text",
        "images/link.jpg": "labels/link.txt: broken symlink",
        "labels/link.txt": "broken symlink",
    }


@pytest.mark.parametrize("content, message", [
    ("names: [a\n", r"data.yaml: not valid YAML \(line 2\)"),
    ("train: images\n", "data.yaml: no names"),
    ("names: {0: a, 2: c}\n", "names has no class 1"),
    ("names: [a, b]\nnc: 3\n", "nc is 3 but names has 2"),
    ("names: [a]\nkpt_shape: [17, 3]\n", "a keypoint dataset"),
    ("- a\n- b\n", "not a YOLO dataset file"),
])
def test_yolo_bad_yaml(tmp_path, content, message):
    root = tmp_path / "y"
    write(root / "data.yaml", content)
    img(root / "images/a.jpg")
    write(root / "labels/a.txt", "")
    with pytest.raises(SourceError, match=message):
        scan(root)


def test_yolo_nc_alone_names_classes(tmp_path):
    root = tmp_path / "y"
    write(root / "data.yaml", "nc: 2\ntrain: images\n")
    img(root / "images/a.jpg")
    write(root / "labels/a.txt", "1 0.5 0.5 0.2 0.2\n")
    assert scan(root).classes == ["class0", "class1"]


def test_yolo_split_list_file(tmp_path):
    root = tmp_path / "y"
    write(root / "data.yaml", "train: train.txt\nval: val.txt\nnames: [a]\n")
    write(root / "train.txt", "./images/a.jpg\n./images/b.jpg\n")
    write(root / "val.txt", "./images/c.jpg\n./images/missing.jpg\n")
    for n in "abcd":
        img(root / f"images/{n}.jpg")
    found = scan(root, format="yolo")  # background images only: too little evidence for auto
    assert {p: f.split for p, f in by_path(found).items()} == {"images/a.jpg": "train", "images/b.jpg": "train",
                                                              "images/c.jpg": "validation"}
    assert reasons(found) == {"images/missing.jpg": "listed in val.txt but not found",
                              "images/d.jpg": "outside the split folders (train.txt, val.txt)"}


def test_yolo_from_s3(tmp_path, bucket):
    from conftest import upload

    root = make_ultralytics(tmp_path / "y")
    upload(root, f"s3://{bucket}/yolo")
    found = scan(f"s3://{bucket}/yolo")
    local = scan(root)
    assert found.format == "yolo" and found.root == f"s3://{bucket}/yolo"
    assert [(f.relpath, f.split, f.target) for f in found.files] == [(f.relpath, f.split, f.target)
                                                                      for f in local.files]
    assert found.annotations == local.annotations and found.skipped == local.skipped


# ---------------------------------------------------------------- VOC

def voc_xml(objects, size=(64, 48), extra="") -> str:
    objs = "".join(
        f"<object><name>{name}</name><difficult>{difficult}</difficult><truncated>1</truncated><bndbox>"
        f"<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b, difficult in objects)
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    return f"<annotation><folder>x</folder><filename>ignored.jpg</filename>{size_xml}{objs}{extra}</annotation>"


def test_voc_beside_the_images(tmp_path):
    root = tmp_path / "voc"
    cases = {
        "train/a": [("dog", (10, 5, 30, 15), 0), ("cat", (40.5, 20, 48, 28), 1)],
        "train/edge": [("cat", (0, 0, 65, 48.5), 0)],
        "valid/b": [("bird", (1, 1, 5, 5), 0)],
        "valid/empty": [],
        "train/wide": [("dog", (1, 1, 5, 5), 0), ("dog", (10, 5, 7, 9), 0)],
        "train/outside": [("dog", (60, 40, 70, 45), 0)],
    }
    for stem, objects in cases.items():
        img(root / f"{stem}.jpg")
        write(root / f"{stem}.xml", voc_xml(objects))
    img(root / "train/no_xml.jpg")
    write(root / "train/lonely.xml", voc_xml([("dog", (1, 1, 2, 2), 0)]))
    img(root / "train/broken.jpg")
    write(root / "train/broken.xml", "<annotation><object>")
    img(root / "train/nonumber.jpg")
    write(root / "train/nonumber.xml", voc_xml([("dog", ("1", "x", "5", "5"), 0)]))
    img(root / "train/evil.jpg")
    write(root / "train/evil.xml", '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "boom">]><annotation>&e;</annotation>')
    found = scan(root)
    assert (found.format, found.task, found.classes) == ("voc", "detection", ["bird", "cat", "dog"])
    files = by_path(found)
    assert sorted(files) == ["train/a.jpg", "train/edge.jpg", "valid/b.jpg", "valid/empty.jpg"]
    # the devkit's convention: [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]; the difficult object kept
    assert files["train/a.jpg"].target == Objects(((9.0, 4.0, 21.0, 11.0), (39.5, 19.0, 8.5, 9.0)), (2, 1), (0, 1))
    assert files["train/edge.jpg"].target.boxes == ((0.0, 0.0, 64.0, 48.0),)  # within 1 px: clipped
    assert files["valid/b.jpg"].target.boxes == ((0.0, 0.0, 5.0, 5.0),)
    assert files["valid/b.jpg"].split == "validation" and files["train/a.jpg"].split == "train"
    assert files["valid/empty.jpg"].target == Objects((), (), ())
    skipped = reasons(found)
    assert skipped["train/wide.jpg"] == "box 1 [9, 4, -2, 5]: width ≤ 0"
    assert skipped["train/outside.jpg"] == "box 0 [59, 39, 11, 6]: outside the 64×48 image"
    assert skipped["train/no_xml.jpg"] == "no annotation file (train/no_xml.xml)"
    assert skipped["train/lonely.xml"] == "no image for this annotation file"
    assert skipped["train/broken.jpg"].startswith("train/broken.xml: malformed XML (")
    assert skipped["train/nonumber.jpg"] == "box 0: <ymin> 'x' is not a number"
    assert skipped["train/evil.jpg"] == "train/evil.xml: refused XML (EntitiesForbidden)"


def test_voc_in_the_devkits_convention_or_zero_based(tmp_path):
    root = tmp_path / "voc"
    cases = {"whole": [("cat", (1, 1, 64, 48), 0)],  # the devkit's: every pixel, first to last
             "zero": [("cat", (0, 0, 64, 48), 0)],  # a 0-based writer's whole image
             "first": [("cat", (1, 2, 1, 2), 0)],  # the first column, the second row: one pixel
             "past": [("cat", (2, 2, 66, 48), 0)]}  # 2 px past the right edge in either convention
    for stem, objects in cases.items():
        img(root / f"{stem}.jpg")
        write(root / f"{stem}.xml", voc_xml(objects))
    devkit, zero = scan(root), scan(root, voc_zero_based=True)
    boxes = {p: f.target.boxes for p, f in by_path(devkit).items()}
    assert boxes == {"whole.jpg": ((0.0, 0.0, 64.0, 48.0),), "zero.jpg": ((0.0, 0.0, 64.0, 48.0),),
                     "first.jpg": ((0.0, 1.0, 1.0, 1.0),)}  # a 0-based file's -1 is within 1 px: clipped
    assert {p: f.target.boxes for p, f in by_path(zero).items()} == {  # as written
        "whole.jpg": ((1.0, 1.0, 63.0, 47.0),), "zero.jpg": ((0.0, 0.0, 64.0, 48.0),)}
    assert reasons(zero)["first.jpg"] == "box 0 [1, 2, 0, 0]: width ≤ 0"
    assert reasons(devkit)["past.jpg"] == "box 0 [1, 1, 65, 47]: outside the 64×48 image"
    assert reasons(zero)["past.jpg"] == "box 0 [2, 2, 64, 46]: outside the 64×48 image"


def test_a_voc_source_read_in_the_other_convention_is_another_run(tmp_path, cli):
    from augpipe import ExpandOptions, expand
    from augpipe.errors import OutputError

    root = tmp_path / "voc"
    for stem in ("a", "b"):
        img(root / f"{stem}.jpg")
        write(root / f"{stem}.xml", voc_xml([("cat", (11, 6, 30, 20), 0)]))
    out = tmp_path / "out"
    options = dict(copies=0, val_fraction=0, progress=False, workers=1)
    manifest = expand(root, "flips", out, ExpandOptions(**options))
    assert manifest["options"]["voc_zero_based"] is False
    assert expand(root, "flips", out, ExpandOptions(**options))["up_to_date"]
    with pytest.raises(OutputError):
        expand(root, "flips", out, ExpandOptions(voc_zero_based=True, **options))
    import pyarrow.parquet as pq

    expand(root, "flips", out, ExpandOptions(voc_zero_based=True, overwrite=True, **options))
    assert pq.read_table(out).column("objects").to_pylist()[0]["bbox"] == [[11.0, 6.0, 19.0, 14.0]]
    from augpipe.preview import preview_source

    drawn = [preview_source(root, "flips", rows=1, copies=0, val_fraction=0, voc_zero_based=z).rows[0].tiles[0].rgb
             for z in (False, True)]
    assert not np.array_equal(*drawn)  # preview reads the source as expand does
    for flag, box in (((), [10.0, 5.0, 20.0, 15.0]), (("--voc-zero-based",), [11.0, 6.0, 19.0, 14.0])):
        result = cli("expand", root, "-r", "flips", "--out", tmp_path / f"cli{len(flag)}", "-k", "0", "-q", *flag)
        assert result.exit_code == 0, result.output
        assert pq.read_table(tmp_path / f"cli{len(flag)}").column("objects").to_pylist()[0]["bbox"] == [box]


def test_voc_layout_with_image_sets(tmp_path):
    root = tmp_path / "VOC2012"
    for stem in ("2008_001", "2008_002", "2008_003", "2008_004", "2008_005", "2008_006"):
        img(root / f"JPEGImages/{stem}.jpg")
        write(root / f"Annotations/{stem}.xml", voc_xml([("person", (2, 3, 12, 13), 0)], size=None))
    img(root / "SegmentationClass/2008_001.png")  # a mask: not a source here
    write(root / "ImageSets/Main/train.txt", "2008_001\n2008_002\n2008_006\n")
    write(root / "ImageSets/Main/val.txt", "2008_003\n2008_006\n")
    write(root / "ImageSets/Main/trainval.txt", "2008_001\n2008_002\n2008_003\n2008_004\n")
    write(root / "ImageSets/Main/person_train.txt", "2008_001  1\n")
    found = scan(root)
    assert found.format == "voc" and found.classes == ["person"]
    assert {p: f.split for p, f in by_path(found).items()} == {
        "JPEGImages/2008_001.jpg": "train", "JPEGImages/2008_002.jpg": "train",
        "JPEGImages/2008_003.jpg": "validation", "JPEGImages/2008_004.jpg": None}
    assert by_path(found)["JPEGImages/2008_001.jpg"].target.boxes == ((1.0, 2.0, 11.0, 11.0),)
    assert reasons(found) == {
        "JPEGImages/2008_005.jpg": "not in ImageSets/Main's lists (train.txt, trainval.txt, val.txt)",
        "JPEGImages/2008_006.jpg": "in both train.txt and val.txt of ImageSets/Main"}


# ---------------------------------------------------------------- masks

def palette_mask(path: Path, w: int = 64, h: int = 48) -> Path:
    """A palette PNG whose indices are 0, 3 and 255."""
    a = np.zeros((h, w), np.uint8)
    a[5:15, 10:30] = 3
    a[0, :] = 255
    im = Image.fromarray(a, "P")
    im.putpalette([v for i in range(256) for v in (i, 255 - i, (i * 7) % 256)])
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def test_masks_images_and_masks_folders(tmp_path):
    root = tmp_path / "seg"
    for split in ("Train", "val"):
        img(root / split / "images/a.jpg")
        palette_mask(root / split / "masks/a.png")
    img(root / "Train/images/b.jpg")
    palette_mask(root / "Train/Masks/b_mask.png")  # folder names in any case, X_mask inside a mask folder too
    img(root / "val/images/nomask.jpg")
    palette_mask(root / "val/masks/orphan.png")
    write(root / "classes.txt", "background\nroad\n\ncar\n")
    found = scan(root)
    assert (found.format, found.task, found.labelled) == ("masks", "segmentation", True)
    assert found.classes == ["background", "road", "2", "car"]
    files = by_path(found)
    assert {p: (f.split, f.target.path) for p, f in files.items()} == {
        "Train/images/a.jpg": ("train", "Train/masks/a.png"),
        "Train/images/b.jpg": ("train", "Train/Masks/b_mask.png"),
        "val/images/a.jpg": ("validation", "val/masks/a.png")}
    for f in files.values():  # listed with its size and time, so a mask changed in place is noticed
        assert isinstance(f.target, MaskRef) and f.target.size > 0 and f.target.mtime_ns > 0
    assert reasons(found) == {"val/images/nomask.jpg": "no mask", "val/masks/orphan.png": "no image for this mask"}
    with Image.open(root / files["val/images/a.jpg"].target.path) as im:  # untouched: indices, not colours
        assert im.mode == "P" and set(np.unique(np.asarray(im)).tolist()) == {0, 3, 255}


def test_masks_voc_and_labels_folders(tmp_path):
    voc = tmp_path / "voc"
    img(voc / "JPEGImages/x.jpg")
    palette_mask(voc / "SegmentationClass/x.png")
    img(voc / "SegmentationObject/x.png")
    img(voc / "JPEGImages/y.jpg")
    found = scan(voc)
    assert found.format == "masks" and found.classes == [] and not found.labelled
    assert by_path(found)["JPEGImages/x.jpg"].target.path == "SegmentationClass/x.png"
    assert found.skipped == [("JPEGImages/y.jpg", "no mask")]
    lab = tmp_path / "lab"
    img(lab / "images/x.jpg")
    palette_mask(lab / "labels/x.png")
    img(lab / "labels/bad.jpg")
    img(lab / "images/bad.jpg")
    found = scan(lab)
    assert by_path(found)["images/x.jpg"].target.path == "labels/x.png"
    assert reasons(found) == {"images/bad.jpg": "no mask",
                              "labels/bad.jpg": "a JPEG mask (lossy: its pixels are not class indices): use PNG"}


def test_masks_roboflow_beside_with_classes_csv(tmp_path):
    root = tmp_path / "rf"
    for split, stem in (("train", "p"), ("valid", "q")):
        img(root / split / f"{stem}.jpg")
        palette_mask(root / split / f"{stem}_mask.png")
        write(root / split / "_classes.csv", "Pixel Value, Class\n0, background\n1, crack\n3, hole\n")
    found = scan(root)
    assert found.format == "masks" and found.classes == ["background", "crack", "2", "hole"]
    assert {p: (f.split, f.target.path) for p, f in by_path(found).items()} == {
        "train/p.jpg": ("train", "train/p_mask.png"), "valid/q.jpg": ("validation", "valid/q_mask.png")}
    write(root / "valid/_classes.csv", "Pixel Value, Class\n0, background\n1, crack\n")
    with pytest.raises(SourceError, match="name different classes"):
        scan(root)
    write(root / "valid/_classes.csv", "Pixel Value, Class\nzero, background\n1, crack\n")
    with pytest.raises(SourceError, match="valid/_classes.csv: pixel value 'zero' is not a whole number"):
        scan(root)


# ---------------------------------------------------------------- label files

def test_labelfiles_csv(tmp_path):
    root = tmp_path / "lf"
    for name in ("a", "b", "c", "d", "sub/e"):
        img(root / f"{name}.jpg")
    write(root / "labels.csv", "file_name,label\na.jpg,dog\nb.jpg,cat\nsub/e.jpg,cat\nmissing.jpg,dog\nd.jpg,\n")
    write(root / "metadata.csv", "file_name,label\na.jpg,x\n")
    found = scan(root)
    assert (found.format, found.task, found.classes, found.labelled) == ("labelfiles", "classification",
                                                                          ["cat", "dog"], True)
    assert {p: (f.class_name, f.split, f.target) for p, f in by_path(found).items()} == {
        "a.jpg": ("dog", None, None), "b.jpg": ("cat", None, None), "sub/e.jpg": ("cat", None, None)}
    assert reasons(found) == {"c.jpg": "not in labels.csv", "d.jpg": "no label in labels.csv",
                              "missing.jpg": "listed in labels.csv but not found",
                              "metadata.csv": "ignored: labels.csv beside it is used"}


def test_labelfiles_jsonl_in_split_folders(tmp_path):
    root = tmp_path / "hf"
    rows = {"train": [("t1.png", 10), ("t2.png", 2)], "test": [("s1.png", 2)]}
    for split, items in rows.items():
        for name, _ in items:
            img(root / split / name)
        write(root / split / "metadata.jsonl",
              "".join(json.dumps({"file_name": n, "label": v, "extra": 1}) + "\n" for n, v in items))
    found = scan(root)
    assert found.classes == ["2", "10"]  # integers in numeric order
    assert {p: (f.class_name, f.split) for p, f in by_path(found).items()} == {
        "train/t1.png": ("10", "train"), "train/t2.png": ("2", "train"), "test/s1.png": ("2", "test")}


def test_labelfiles_first_other_column_and_malformed(tmp_path):
    root = tmp_path / "lf"
    img(root / "a.jpg")
    write(root / "metadata.csv", "file_name,species,notes\na.jpg,heron,tall\n")
    assert by_path(scan(root))["a.jpg"].class_name == "heron"
    write(root / "metadata.csv", "name,species\na.jpg,heron\n")
    with pytest.raises(SourceError, match=r"metadata.csv: no file_name column \(the header is name,species\)"):
        scan(root)
    (root / "metadata.csv").unlink()
    write(root / "metadata.jsonl", '{"file_name": "a.jpg", "label": "x"}\n{oops\n')
    with pytest.raises(SourceError, match="metadata.jsonl: line 2: not valid JSON"):
        scan(root)


# ---------------------------------------------------------------- choosing a reader

@pytest.mark.parametrize("make, expected", [
    (make_coco, "coco"), (make_roboflow_coco, "coco"), (make_ultralytics, "yolo"),
])
def test_detection_picks_the_format(tmp_path, make, expected):
    root = make(tmp_path / "d")
    assert detect(open_store(root).list_files()) == expected


def test_detection_of_each_layout(tmp_path):
    def entries(files: dict) -> list:
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        for name, content in files.items():
            img(root / name) if content is None else write(root / name, content)
        return open_store(root).list_files()

    assert detect(entries({"a/x.jpg": None, "a/x.xml": "<annotation/>"})) == "voc"
    assert detect(entries({"Annotations/x.xml": "<annotation/>", "JPEGImages/x.jpg": None})) == "voc"
    assert detect(entries({"images/x.jpg": None, "masks/x.png": None})) == "masks"
    assert detect(entries({"x.jpg": None, "x_mask.png": None})) == "masks"
    assert detect(entries({"images/x.jpg": None, "labels/x.txt": "0 0.5 0.5 0.1 0.1"})) == "imagefolder"
    assert detect(entries({"x.jpg": None, "labels.csv": "file_name,label\nx.jpg,a\n"})) == "labelfiles"
    assert detect(entries({"train/x.jpg": None, "train/metadata.jsonl": "{}"})) == "labelfiles"
    assert detect(entries({"cat/x.jpg": None, "dog/y.jpg": None})) == "imagefolder"


def test_format_forced(tmp_path):
    root = make_roboflow_coco(tmp_path / "rf")
    found = scan(root, format="imagefolder")  # train/valid/test read as split folders without classes
    assert found.format == "imagefolder" and found.task == "classification"
    with pytest.raises(SourceError, match="--format is one of auto, coco, yolo, voc, masks, labelfiles, "
                                          "imagefolder, not 'darknet'"):
        scan(root, format="darknet")
    with pytest.raises(SourceError, match="no data.yaml"):
        scan(root, format="yolo")
    with pytest.raises(SourceError, match="--layout is one of auto, classes, splits, not 'flat'"):
        scan(root, layout="flat")


def test_coco_ids_written_as_whole_floats_are_those_numbers_others_their_position(tmp_path):
    root = tmp_path / "c"
    img(root / "train" / "a.jpg")
    write(root / "annotations" / "instances_train.json", {
        "images": [coco_image(1, "a.jpg")],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [coco_ann(7.0, 1, 1, [1, 1, 4, 4]), coco_ann(True, 1, 1, [2, 2, 4, 4]),
                        coco_ann("x", 1, 1, [3, 3, 4, 4]), coco_ann(2.5, 1, 1, [4, 4, 4, 4])]})
    found = scan(root)
    assert by_path(found)["train/a.jpg"].target.ids == (7, 1, 2, 3)
