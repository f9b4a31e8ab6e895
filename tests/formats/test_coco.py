"""The COCO format: its reader, and reading what its writer writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import by_path, coco_ann, coco_image, img, reasons, write
from written import assert_same_boxes, boxes, mask_pixels, masked, round_trip, rows  # noqa: F401 (fixtures)

from augpipe import ExpandOptions, expand
from augpipe.errors import SourceError
from augpipe.export import export
from augpipe.formats import coco, scan, yolo
from augpipe.formats.base import Objects
from augpipe.formats.common import rings
from augpipe.targets.boxes import _rle, fill_polygon

QUIET = dict(progress=False, workers=1)

HUGE = 10 ** 400  # parses from JSON as a Python int; no float holds it


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
                        (("polygon", ((10.0, 5.0, 30.0, 5.0, 30.0, 15.0, 10.0, 15.0),)), None),
                        canvas=(64, 48))  # the JSON's width and height, which `audit` checks
    assert files["train2017/a.jpg"].split == "train" and files["val2017/c.jpg"].split == "validation"
    assert files["train2017/a.jpg"].class_name is None
    crowd = files["train2017/b.jpg"].target  # iscrowd: kept, its RLE as written
    assert crowd.boxes == ((0.0, 0.0, 64.0, 48.0),) and crowd.segments == (("rle", {"size": [48, 64],
                                                                                      "counts": [0, 10, 3062]}),)
    assert files["train2017/empty.jpg"].target.boxes == ()  # listed, no annotations
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


def test_what_the_writer_writes_reads_back_as_the_same_objects(tmp_path):
    root = make_coco(tmp_path / "src")
    found = scan(root)
    found.files = [dataclasses.replace(f, target=dataclasses.replace(f.target, segments=None)) for f in found.files]
    written, again = round_trip(found, root, tmp_path / "out", "coco", {"coco_layout": "images"})
    assert again.classes == found.classes and again.category_ids == found.category_ids
    assert_same_boxes(found, root, again, tmp_path / "out")
    ids = {f.relpath.rsplit("/", 1)[-1]: f.target.ids for f in again.files}
    assert ids == {i.name: i.target.ids for i in written}  # unique in each file: kept


# ---------------------------------------------------------------- writing

def test_coco_carries_every_mask_its_area_and_the_objects_ids(masked, tmp_path):
    export(masked, "coco", tmp_path / "c", progress=False)
    book = json.loads((tmp_path / "c" / "annotations" / "instances_train.json").read_text())
    held = {r["image"]["path"].split("/")[-1]: r for r in rows(masked)}
    annotations = iter(book["annotations"])
    for image in book["images"]:
        assert (tmp_path / "c" / "images" / "train" / image["file_name"]).is_file()
        objects = held[image["file_name"].split("/")[-1]]["objects"]
        for k, mask_png in enumerate(objects["mask"]):
            a = next(annotations)
            mask = mask_pixels(mask_png["bytes"])
            assert a["segmentation"] and a["area"] == int(mask.sum()) and a["iscrowd"] == 0
            assert a["id"] == objects["id"][k]  # unique in the file: the objects' own ids
            filled = np.zeros_like(mask)
            for polygon in a["segmentation"]:
                fill_polygon(filled, np.asarray(polygon, float).reshape(-1, 2))
            assert np.array_equal(filled, mask)


def test_coco_keeps_each_categorys_supercategory(masked, boxes, tmp_path):
    """A new user's `supercategory: "shape"` came back as "none": a COCO source's are recorded in the
    manifest and written back; a source of another format has none to give."""
    assert json.loads((masked / "_augpipe.json").read_text())["category_supercategories"] == ["shape", "shape"]
    export(masked, "coco", tmp_path / "c", progress=False)
    book = json.loads((tmp_path / "c" / "annotations" / "instances_train.json").read_text())
    assert [c["supercategory"] for c in book["categories"]] == ["shape", "shape"]
    export(boxes, "coco", tmp_path / "y", progress=False)
    book = json.loads((tmp_path / "y" / "annotations" / "instances_train.json").read_text())
    assert {c["supercategory"] for c in book["categories"]} == {"none"}


def test_coco_layouts(masked, tmp_path):
    export(masked, "coco", tmp_path / "split", progress=False, coco_layout="split")
    export(masked, "coco", tmp_path / "images", progress=False)
    book = json.loads((tmp_path / "images" / "annotations" / "instances_train.json").read_text())
    name = book["images"][0]["file_name"]
    assert (tmp_path / "split" / "train" / name).is_file() and not (tmp_path / "split" / "images").exists()
    assert (tmp_path / "images" / "images" / "train" / name).is_file()


def test_coco_reads_iscrowd_and_renumbers_repeated_ids(masked, tmp_path):
    """iscrowd as the shards hold it (0 when they do not); ids renumbered when they repeat."""
    table = pq.read_table(masked)
    changed = table.to_pylist()
    for row in changed:
        n = len(row["objects"]["id"])
        row["objects"]["iscrowd"] = [1] + [0] * (n - 1)
        row["objects"]["id"] = [7] * n
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "_augpipe.json").write_text((masked / "_augpipe.json").read_text())
    shard = json.loads((masked / "_augpipe.json").read_text())["shards"][0]["name"]
    (ds / shard).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(changed), ds / shard)
    export(ds, "coco", tmp_path / "c", progress=False)
    book = json.loads((tmp_path / "c" / "annotations" / "instances_train.json").read_text())
    crowd = [a["iscrowd"] for a in book["annotations"]]
    assert crowd == [v for row in changed for v in row["objects"]["iscrowd"]]
    assert [a["id"] for a in book["annotations"]] == list(range(1, len(crowd) + 1))


def test_a_mask_with_a_hole_goes_as_rle_and_decodes_exactly():
    mask = np.zeros((20, 30), np.uint8)
    mask[3:15, 4:20] = 1
    mask[6:10, 8:12] = 0
    written = coco.segmentation(mask)
    assert isinstance(written, dict) and written["size"] == [20, 30]
    assert np.array_equal(_rle(written, (20, 30)), mask)
    assert coco.rle_string(np.zeros((2, 2), np.uint8)) == "4" and coco.rle_string(np.ones((2, 2), np.uint8)) == "04"


def test_outlines_run_on_the_pixels_edges_and_fill_back_exactly():
    """On random masks: every vertex a pixel corner; filled by the pixel-centre rule (as
    pycocotools and augpipe's readers fill) the outlines give back the mask wherever it has no
    hole, and the YOLO polygon (parts joined by seams) spans exactly the mask's extent."""

    rng = np.random.default_rng(4)
    exact = 0
    for _ in range(400):
        h, w = (int(v) for v in rng.integers(3, 32, 2))
        mask = (cv2.GaussianBlur(rng.random((h, w)), (0, 0), float(rng.uniform(0.3, 3))) > 0.5).astype(np.uint8)
        if not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        box = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
        outlines = rings(mask)
        assert all(r.dtype.kind == "i" for r in outlines)
        written = coco.segmentation(mask)
        if isinstance(written, list):
            exact += 1
        points = np.asarray(yolo.polygon(mask, [float(v) for v in box]), float).reshape(-1, 2)
        assert [*points.min(axis=0), *(points.max(axis=0) - points.min(axis=0))] == box
        outside = np.pad(1 - mask, 1)
        cv2.floodFill(outside, None, (0, 0), 2, flags=4)
        if not (outside == 1).any():  # no hole
            assert isinstance(written, list)
            filled = np.zeros_like(mask)
            fill_polygon(filled, points)
            assert np.array_equal(filled, mask)
    assert exact > 100


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


def test_coco_asked_for_without_an_annotation_file_is_one_line(tmp_path):
    img(tmp_path / "c" / "cat" / "a.jpg")
    with pytest.raises(SourceError, match=r"no COCO annotation file \(annotations/instances_<split>.json"):
        scan(tmp_path / "c", format="coco")


def test_coco_problems_name_every_bad_annotation(tmp_path):
    root = tmp_path / "coco"
    for name in ("bad", "edge", "twice", "extra", "good"):
        img(root / f"train/{name}.jpg")
    write(root / "annotations/instances_train.json", {
        "images": [coco_image(1, "bad.jpg"), coco_image(2, "edge.jpg"), coco_image(3, "twice.jpg"),
                   coco_image(4, "twice.jpg"), coco_image(5, "gone.jpg"), coco_image(6, "good.jpg"), {"id": 7}],
        "annotations": [coco_ann(10, 1, 1, [1, 1, 5, 5]), coco_ann(11, 1, 9, [1, 1, 5, 5]),
                        coco_ann(12, 1, 1, [1, 2, 3]), coco_ann(13, 1, 1, [1, 1, 0, 5]),
                        coco_ann(14, 1, 1, [60, 40, 10, 5]),
                        coco_ann(20, 2, 1, [-0.5, 10, 20, 10]), coco_ann(30, 3, 1, [1, 1, 5, 5]),
                        coco_ann(31, 4, 1, [2, 2, 5, 5]), coco_ann(40, 99, 1, [1, 1, 5, 5]),
                        coco_ann(60, 6, 1, [1, 1, 5, 5])],
        "categories": [{"id": 1, "name": "cat"}]})
    found = scan(root)
    json_name = "annotations/instances_train.json"
    assert {(p.check, p.path, p.where) for p in found.problems} == {
        ("unknown_class", "train/bad.jpg", f"{json_name} annotation id 11 (object 1)"),
        ("annotation_unreadable", "train/bad.jpg", f"{json_name} annotation id 12 (object 2)"),
        ("box_degenerate", "train/bad.jpg", f"{json_name} annotation id 13 (object 3)"),
        ("box_outside", "train/bad.jpg", f"{json_name} annotation id 14 (object 4)"),
        ("box_outside", "train/edge.jpg", f"{json_name} annotation id 20 (object 0)"),  # clipped, and said
        ("conflicting_labels", "train/twice.jpg", json_name),
        ("annotation_unreadable", "train/gone.jpg", json_name),
        ("annotation_unreadable", json_name, "images[6]"),
        ("annotation_unreadable", json_name, "annotations[8]"),
        ("no_labels", "train/extra.jpg", ""),
    }
    assert reasons(found)["train/bad.jpg"] == "box 1: category_id 9 is not in categories"  # the first, as before
    assert by_path(found)["train/edge.jpg"].target.boxes == ((0.0, 10.0, 19.5, 10.0),)
    edge = next(p for p in found.problems if p.path == "train/edge.jpg")
    assert "left edge by 0.5 px" in edge.detail and "clips" in edge.detail


def test_a_clean_coco_source_has_no_problems(tmp_path):
    root = tmp_path / "coco"
    img(root / "train/a.jpg")
    write(root / "annotations/instances_train.json", {
        "images": [coco_image(1, "a.jpg")], "annotations": [coco_ann(1, 1, 1, [0, 0, 64, 48])],
        "categories": [{"id": 1, "name": "cat"}]})
    assert scan(root).problems == []
