"""Detection's target (augpipe/targets/boxes.py): boxes and instance masks through the recipe, and
hostile annotations, each a recorded skip or a dropped object with its reason, never a crash."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from augpipe import ExpandOptions, expand
from augpipe.errors import SkipInput
from augpipe.formats.base import Objects
from augpipe.recipe import parse_recipe
from augpipe.sample import SourceItem, augment_sample, moves_pixels
from augpipe.targets import kind_for
from augpipe.targets.boxes import _rle
from conftest import H, W, boxes_of, extent, make_scenes, peak_bytes, picture, recipe, segmented

TRAIN_ONLY = dict(progress=False, workers=1, val_fraction=0)


def blank_png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def coco(root: Path, annotations: list[dict], n_images: int = 2, size=(64, 48)) -> Path:
    """COCO with `n_images` images; the annotations are on the first, the others have one good box."""
    w, h = size
    (root / "default").mkdir(parents=True)
    for i in range(n_images):
        (root / "default" / f"a{i}.png").write_bytes(blank_png(w, h))
    good = [{"image_id": i, "bbox": [2, 2, 10, 10], "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]}
            for i in range(1, n_images)]
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_default.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": f"a{i}.png", "width": w, "height": h} for i in range(n_images)],
        "annotations": [{"id": k + 1, "category_id": 1, "iscrowd": 0, "image_id": 0, **a}
                        for k, a in enumerate(annotations)] + [{"id": 100 + k, "category_id": 1, **a}
                                                                for k, a in enumerate(good)],
        "categories": [{"id": 1, "name": "thing"}]}))
    return root


def skips(m: dict) -> dict[str, str]:
    return {s["path"]: s["reason"] for s in m["skipped"]}


def objects_of(out: Path) -> dict[str, dict]:
    rows = pq.read_table(sorted(out.glob("*.parquet"))).to_pylist()
    return {r["source"]: r for r in rows if r["copy"] == 0}


HOSTILE_COUNTS = [
    "o" * 1_000_000 + "0",  # one number of five million bits: 52 s, then a 4300-digit error
    "o" * 3000 + "0",  # a number past Python's digit limit in the skip message
    "1" * 1_500_000,  # a million and a half small runs
    "0" * 1_000_000,  # a million runs of nothing
]


def _recipe():
    from augpipe.recipe import parse_recipe

    return parse_recipe("copies: 0\noutput: {format: png}\ntransforms: [HorizontalFlip]\n")


DEGENERATE = [
    [5, 5, 5, 5, 5, 5],  # one point three times
    [5, 5, 20, 5, 5, 5],  # two distinct points
    [5, 5, 10, 10, 20, 20],  # three points on a line
    [5, 5, 30, 5.2, 5, 5.3],  # thinner than a pixel: covers no pixel centre
]


QUIET = dict(progress=False, workers=1)


def run(boxes, transforms: str, categories=None, masks=False, **top):
    objects = Objects(tuple(tuple(b) for b in boxes), tuple(categories or [0] * len(boxes)),
                      tuple(range(10, 10 + len(boxes))),
                      segments=tuple(("polygon", ((x, y, x + w, y, x + w, y + h, x, y + h),)) for x, y, w, h in boxes)
                      if masks else None)
    kind = kind_for("detection", instance_masks=masks)
    return augment_sample(picture(boxes), SourceItem("a.png", None, (0, 1), target=objects),
                          recipe(transforms, **top), 0, 10**8, kind=kind)


def coco_one(root: Path, annotations: list[dict], size=(64, 48)) -> Path:
    w, h = size
    (root / "default").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "default" / "a.png"), np.full((h, w, 3), 90, np.uint8))
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / "instances_default.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": w, "height": h}],
        "annotations": [{"image_id": 1, "category_id": 1, "iscrowd": 0, **a} for a in annotations],
        "categories": [{"id": 1, "name": "thing", "supercategory": "none"}]}))
    return root


@pytest.mark.parametrize("counts", HOSTILE_COUNTS, ids=["long-number", "4300-digits", "many-runs", "zero-runs"])
def test_a_hostile_rle_string_is_one_short_skip(counts):
    with pytest.raises(SkipInput) as caught:
        _rle({"size": [48, 64], "counts": counts}, (48, 64))
    assert len(caught.value.reason) < 120
    assert caught.value.reason.startswith("an RLE mask's")


def test_rle_runs_past_the_image_stop_with_a_short_message_in_a_run(tmp_path):
    data = coco(tmp_path / "c", [{"bbox": [1, 1, 10, 10], "segmentation": {"size": [48, 64],
                                                                           "counts": "o" * 20000 + "0"}}])
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**TRAIN_ONLY))
    assert skips(m) == {"default/a0.png": "an RLE mask's runs cover more than the image's 3,072 pixels"}
    m = expand(coco(tmp_path / "d", [{"bbox": [1, 1, 10, 10], "segmentation": {"size": [48, 64],
                                                                               "counts": [10 ** 4000]}}]),
               "flips", tmp_path / "out2", ExpandOptions(**TRAIN_ONLY))
    assert skips(m) == {"default/a0.png": "an RLE mask's runs cover more than the image's 3,072 pixels"}


@pytest.mark.parametrize("size", ["NaN", "Infinity", "-Infinity", "2.5", "1e400"])
def test_an_rle_size_that_is_no_whole_number_is_a_recorded_skip_without_image_size(tmp_path, size):
    root = coco(tmp_path / "c", [{"bbox": [1, 1, 10, 10], "segmentation": {"size": [48, 64], "counts": [3072]}}])
    path = root / "annotations" / "instances_default.json"
    doc = json.loads(path.read_text())
    for im in doc["images"]:
        del im["width"], im["height"]
    text = json.dumps(doc).replace('"size": [48, 64]', f'"size": [{size}, 64]')
    path.write_text(text)
    m = expand(root, "flips", tmp_path / "out", ExpandOptions(**TRAIN_ONLY))
    assert skips(m)["default/a0.png"].startswith("box 0: segmentation RLE is not {size: [h, w], counts}")


@pytest.mark.parametrize("value", [1e300, -1e300, 1e308])
def test_a_polygon_point_far_outside_the_image_is_a_recorded_skip(tmp_path, value):
    data = coco(tmp_path / "c", [{"bbox": [1, 1, 10, 10], "segmentation": [[1, 1, value, 1, 11, 11]]}])
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**TRAIN_ONLY))
    assert skips(m) == {"default/a0.png": f"box 0: a polygon point ({value:.6g}, 1) lies far outside the 64×48 image"}
    assert set(objects_of(tmp_path / "out")) == {"default/a1.png"}


def test_an_unforeseen_failure_in_one_annotation_is_a_recorded_skip(monkeypatch):
    from augpipe.targets import boxes

    def broken(*args):
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(boxes, "fill_polygons", broken)
    objects = Objects(((1.0, 1.0, 10.0, 10.0),), (0,), (1,), segments=(("polygon", ((1, 1, 11, 1, 11, 11),)),))
    with pytest.raises(SkipInput, match="its annotation cannot be used: OverflowError: cannot convert float"):
        augment_sample(blank_png(64, 48), SourceItem("a.png", None, (0,), target=objects), _recipe(), 0, 10**8,
                       kind=kind_for("detection", instance_masks=True))


@pytest.mark.parametrize("polygon", DEGENERATE, ids=["one-point", "two-points", "collinear", "sliver"])
def test_an_object_of_no_area_is_dropped_with_its_reason_and_the_others_kept(tmp_path, polygon, cli):
    data = coco(tmp_path / "c", [{"bbox": [5, 5, 25, 5], "segmentation": [polygon]},
                                 {"bbox": [30, 20, 10, 10], "segmentation": [[30, 20, 40, 20, 40, 30, 30, 30]]}])
    result = cli("expand", data, "-r", "flips", "-o", tmp_path / "out", "-q", "-w", "1", "--val-fraction", "0")
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "out" / "_augpipe.json").read_text())
    assert m["dropped_objects"] == [{"path": "default/a0.png",
                                     "reason": "box 0 (id 1): its polygon covers no pixel"}]
    assert any(w.startswith("1 object left out, their mask empty") for w in m["warnings"])
    row = objects_of(tmp_path / "out")["default/a0.png"]
    assert row["objects"]["id"] == [2] and row["objects"]["area"] == [100.0]
    assert all(a > 0 for r in objects_of(tmp_path / "out").values() for a in r["objects"]["area"])


def test_an_rle_of_zeros_is_dropped_too(tmp_path):
    data = coco(tmp_path / "c", [{"bbox": [5, 5, 25, 5], "segmentation": {"size": [48, 64], "counts": [3072]},
                                  "iscrowd": 1}])
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**TRAIN_ONLY))
    assert m["dropped_objects"] == [{"path": "default/a0.png", "reason": "box 0 (id 1): its RLE mask covers no pixel"}]
    assert objects_of(tmp_path / "out")["default/a0.png"]["objects"]["id"] == []


def test_an_object_of_more_polygon_points_than_its_image_can_show_is_a_recorded_skip():
    rgb = np.zeros((32, 40, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    square = (1.0, 1.0, 30.0, 1.0, 30.0, 30.0, 1.0, 30.0)
    objects = Objects(((1.0, 1.0, 29.0, 29.0),), (0,), (1,), segments=(("polygon", (square,) * 2000),))
    with pytest.raises(SkipInput, match="its polygons have 8,000 points, more than a 40×32 image can show"):
        augment_sample(buf.getvalue(), SourceItem("a.png", None, (0,), target=objects), _recipe(), 0, 10**8,
                       kind=kind_for("detection", instance_masks=True))


def test_a_horizontal_flip_moves_every_box_to_w_minus_x_minus_w():
    boxes = [[10, 20, 30, 15], [0, 0, 7, 9], [61.5, 30.25, 38.5, 29.75]]
    original, flipped = run(boxes, "[{HorizontalFlip: {p: 1}}]").rows
    assert boxes_of(original) == boxes
    assert boxes_of(flipped) == [[W - x - w, y, w, h] for x, y, w, h in boxes]


def test_a_quarter_turn_moves_a_known_box():
    # RandomRotate90 by one quarter counter-clockwise: a W×H image becomes H×W and
    # (x, y, w, h) becomes (y, W − x − w, h, w)
    result = run([[10, 20, 30, 15]], "[{RandomRotate90: {p: 1}}]", rotate_method="largest_box")
    rotated = result.rows[1]
    assert (rotated["width"], rotated["height"]) == (H, W)
    factor = json.loads(rotated["transforms"])[0][1]["factor"]
    expected = {1: [20, W - 10 - 30, 15, 30], 3: [H - 20 - 15, 10, 15, 30], 2: [W - 40, H - 35, 30, 15]}[factor]
    assert boxes_of(rotated) == [expected]
    decoded = cv2.imdecode(np.frombuffer(rotated["image"]["bytes"], np.uint8), cv2.IMREAD_GRAYSCALE)
    x, y, w, h = expected
    assert decoded[y:y + h, x:x + w].min() == 255  # the white rectangle is where its box says


def test_a_box_pushed_out_of_the_image_is_dropped_and_counted_with_its_mask():
    boxes = [[5, 5, 20, 10], [70, 30, 20, 20]]
    result = run(boxes, "[{Affine: {translate_px: {x: [35, 35], y: 0}, p: 1}}]", categories=[0, 1], masks=True,
                 bbox_params={"min_visibility": 0.5})
    original, moved = result.rows
    assert moved["objects"]["id"].tolist() == [10]  # the second box left the image
    assert boxes_of(moved) == [[40, 5, 20, 10]]
    assert result.dropped == 1
    masks = [np.asarray(Image.open(io.BytesIO(m["bytes"]))) for m in moved["objects"]["mask"]]
    assert len(masks) == 1 and masks[0].shape == (H, W)
    ys, xs = np.nonzero(masks[0])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (40, 59, 5, 14)  # its own mask, moved with it
    assert kind_for("detection", instance_masks=True).caption(moved, original) == "1 box, 1 dropped"


def test_a_rotated_object_gets_its_masks_extent_with_or_without_a_segment():
    boxes = [[20, 10, 40, 12], [60, 30, 30, 20]]
    polygons = [[20, 22, 60, 10, 60, 14, 24, 22], None]  # a thin sliver on the diagonal of its box
    rotate = "[{Affine: {rotate: [25, 25], border_mode: 0, p: 1}}]"
    original, rotated = segmented(boxes, polygons, rotate).rows
    assert boxes_of(original) == boxes  # no step moved pixels: the boxes as given
    sliver, plain = boxes_of(rotated)
    masks = rotated["objects"]["mask"]
    assert sliver == extent(masks[0]["bytes"])
    # albumentations' box of the sliver's rotated box (ellipse method) is not the sliver's extent
    alone = augment_sample(picture(boxes), SourceItem("a.png", None, (1,), target=Objects(
        tuple(tuple(b) for b in boxes), (0, 0), (0, 1))), parse_recipe(
        f"copies: 1\noutput: {{format: png}}\ntransforms: {rotate}\n"), 0, 10**8, kind=kind_for("detection")).rows[0]
    assert plain == extent(masks[1]["bytes"])  # without a segment: its filled box's extent
    assert np.abs(np.asarray(boxes_of(alone)[0]) - sliver).max() > 4


def test_an_object_whose_mask_left_the_image_is_dropped_though_its_box_did_not():
    # the annotated box is looser than the segment: shifted 15 px right, the segment is all outside
    boxes = [[5, 5, 20, 10], [40, 10, 60, 20]]
    polygons = [[5, 5, 25, 5, 25, 15, 5, 15], [90, 12, 98, 12, 98, 20, 90, 20]]
    result = segmented(boxes, polygons, "[{Affine: {translate_px: {x: [15, 15], y: 0}, p: 1}}]")
    moved = result.rows[1]
    assert moved["objects"]["id"].tolist() == [0] and len(moved["objects"]["mask"]) == 1
    assert boxes_of(moved) == [[20, 5, 20, 10]]
    assert result.dropped == 1


def test_a_tight_box_under_the_recipes_min_width_is_dropped():
    boxes = [[10, 10, 30, 20]]
    polygons = [[10, 10, 16, 10, 16, 30, 10, 30]]  # 6 px wide in a 30 px box
    shift = "[{Affine: {translate_px: {x: [3, 3], y: 0}, p: 1}}]"
    assert segmented(boxes, polygons, shift).rows[1]["objects"]["id"].tolist() == [0]
    result = segmented(boxes, polygons, shift, top="bbox_params: {min_width: 10}\n")
    assert result.rows[1]["objects"]["id"].tolist() == [] and result.dropped == 1


def test_after_a_colour_step_alone_the_boxes_are_as_given():
    boxes = [[10.25, 10.5, 30.5, 20.25]]
    polygons = [[12, 12, 38, 12, 38, 28, 12, 28]]
    row = segmented(boxes, polygons, "[{ColorJitter: {p: 1}}]").rows[1]
    assert json.loads(row["transforms"])[0][0] == "ColorJitter" and boxes_of(row) == boxes
    assert not moves_pixels("ColorJitter") and moves_pixels("HorizontalFlip") and moves_pixels("Affine")


@pytest.mark.parametrize("transforms", ["detection", "[{Affine: {rotate: [-30, 30], translate_percent: [-0.2, 0.2], "
                                                      "border_mode: 0, p: 1}}]"])
def test_every_box_of_an_expanded_dataset_is_its_masks_extent(scenes, tmp_path, transforms):
    r = transforms if transforms == "detection" else parse_recipe(
        f"copies: 3\noutput: {{format: png}}\ntransforms: {transforms}\n")
    out = tmp_path / "out"
    expand(scenes["coco"], r, out, ExpandOptions(copies=3, val_fraction=0, **QUIET))
    given = json.loads((scenes["coco"] / "annotations/instances_default.json").read_text())["annotations"]
    given = {a["id"]: a["bbox"] for a in given}
    worst, moved = 0.0, 0
    for row in pq.read_table(out).to_pylist():
        objects = row["objects"]
        if not any(moves_pixels(name) for name, _ in json.loads(row["transforms"])):
            assert [given[i] for i in objects["id"]] == objects["bbox"]  # originals, colour alone: as given
            continue
        moved += 1
        for box, mask in zip(objects["bbox"], objects["mask"]):
            worst = max(worst, float(np.abs(np.asarray(box) - extent(mask["bytes"])).max()))
    assert moved > 20 and worst <= 0.5


def test_the_objects_column_is_built_without_pandas():
    """`pa.array` on nested lists imports pandas (0.3 s in every worker): built from buffers."""
    import subprocess

    code = ("import sys, numpy as np; from augpipe.targets.boxes import objects_array\n"
            "a = objects_array([{'bbox': np.zeros((2, 4)), 'category': [0, 1], 'area': [1.0, 2.0], 'id': [3, 4],"
            " 'mask': [{'bytes': b'x', 'path': None}] * 2}, {'bbox': np.zeros((0, 4)), 'category': [], 'area': [],"
            " 'id': [], 'mask': []}], True)\n"
            "assert a.to_pylist()[0]['category'] == [0, 1] and a.to_pylist()[1]['id'] == []\n"
            "print('pandas' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("rle, reason", [
    ({"size": [48, 64], "counts": [5, 10]}, "runs cover 15 pixels"),
    ({"size": [48, 64], "counts": [3000, 70, 1]}, "runs cover 3,071 pixels"),
    ({"size": [48, 64], "counts": [5000, 10000, 7]}, "runs cover more than the image's 3,072 pixels"),
    ({"size": [48, 64], "counts": [-5, 10]}, "not a list of whole numbers"),
    ({"size": [48, 64], "counts": ["a", "b"]}, "not a list of whole numbers"),
    ({"size": [48, 64], "counts": [10**30]}, "runs cover"),
    ({"size": [48, 64], "counts": "P"}, "cut short or too long"),  # a continuation bit, then nothing
    ({"size": [30000, 30000], "counts": [900000000]}, "RLE is 30000×30000, the image 64×48"),
])
def test_a_bad_rle_mask_is_a_recorded_skip(tmp_path, rle, reason):
    from augpipe.errors import SourceError

    data = coco_one(tmp_path / "c", [{"id": 1, "bbox": [1, 1, 10, 10], "segmentation": rle},
                                      {"id": 2, "bbox": [20, 20, 5, 5], "segmentation": [[20, 20, 25, 20, 25, 25]]}])
    with pytest.raises(SourceError, match=re.escape(reason)):  # its one image skipped: nothing to write
        expand(data, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))


def test_colliding_and_huge_object_ids_keep_every_mask_with_its_box(tmp_path):
    big = 9007199254740993  # 2**53 + 1: not a float
    data = coco_one(tmp_path / "c", [
        {"id": 7, "bbox": [2, 2, 10, 10], "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]},
        {"id": 7, "bbox": [30, 20, 10, 10], "segmentation": [[30, 20, 40, 20, 40, 30, 30, 30]]},
        {"id": big, "bbox": [50, 30, 8, 8], "segmentation": [[50, 30, 58, 30, 58, 38, 50, 38]]}])
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, copies=0, **QUIET))
    assert m["skipped"] == []
    row = pq.read_table(tmp_path / "out").to_pylist()[0]
    assert row["objects"]["id"] == [7, 7, big]
    assert row["objects"]["area"] == [100.0, 100.0, 64.0]  # each mask is its own object's
    data = coco_one(tmp_path / "d", [{"id": 2**70, "bbox": [2, 2, 10, 10]}])
    from augpipe.errors import SourceError

    with pytest.raises(SourceError, match="an annotation id is not a whole number that fits in 64 bits"):
        expand(data, "flips", tmp_path / "out2", ExpandOptions(val_fraction=0, **QUIET))


def test_iscrowd_is_carried_with_each_object_and_zero_for_other_sources(scenes, tmp_path):
    coco = tmp_path / "coco"
    make_scenes(coco, n=8)
    doc = json.loads((coco / "annotations/instances_default.json").read_text())
    for a in doc["annotations"]:
        a["iscrowd"] = a["id"] % 2
    (coco / "annotations/instances_default.json").write_text(json.dumps(doc))
    crowd = {a["id"]: a["id"] % 2 for a in doc["annotations"]}
    out = tmp_path / "out"
    shifts = recipe("[{Affine: {translate_percent: [-0.4, 0.4], border_mode: 0, p: 1}}]", copies=4,
                    bbox_params={"min_visibility": 0.6})
    m = expand(coco, shifts, out, ExpandOptions(**QUIET))
    table = pq.read_table(out)
    feature = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]["objects"]["feature"]
    assert feature["iscrowd"] == {"dtype": "int64", "_type": "Value"}
    objects = table.column("objects").to_pylist()
    assert {c for o in objects for c in o["iscrowd"]} == {0, 1} and m["dropped_boxes"] > 0
    for o in objects:
        assert o["iscrowd"] == [crowd[i] for i in o["id"]]
    expand(scenes["yolo"], "detection", tmp_path / "yolo", ExpandOptions(copies=1, **QUIET))
    for o in pq.read_table(tmp_path / "yolo").column("objects").to_pylist():
        assert o["iscrowd"] == [0] * len(o["id"])


# ---------------------------------------------------------------- audit (augpipe inspect)

def audited(objects: Objects, size=(100, 80), classes=("cat", "dog"), masks=False):
    from augpipe.formats.base import SourceFile

    return kind_for("detection", instance_masks=masks).audit(SourceFile("a.jpg", "train", None, 1, 0, objects), None,
                                                              size, list(classes))


def test_audit_finds_every_planted_box_problem_with_its_object():
    boxes = ((-0.3, 10, 20, 20),  # over the left edge by 0.3 px: clipped by expand
             (10, 10, 0, 5),  # no width
             (50, 50, 1.5, 10),  # 1.5 px wide: tiny
             (60, 20, 20, 20), (61, 20, 20, 20),  # one object twice: IoU 19/21 × ... > 0.9
             (60, 20, 20, 20),  # the same place, another class: no duplicate
             (5, 60, 10, 10))  # class 7: unknown
    found = audited(Objects(boxes, (0, 0, 0, 0, 0, 1, 7), (11, 12, 13, 14, 15, 16, 17)))
    assert {(check, where) for check, where, _ in found.problems} == {
        ("box_outside", "object 0 (id 11)"), ("box_degenerate", "object 1 (id 12)"), ("box_tiny", "object 2 (id 13)"),
        ("box_duplicate", "object 4 (id 15)"), ("unknown_class", "object 6 (id 17)")}
    outside = next(d for c, _, d in found.problems if c == "box_outside")
    assert "left edge by 0.3 px" in outside and "clips" in outside
    duplicate = next(d for c, _, d in found.problems if c == "box_duplicate")
    assert "object 3 (id 14)" in duplicate and f"IoU {19 * 20 / (2 * 400 - 19 * 20):.3f}" in duplicate


def test_audit_sees_a_yolo_box_over_the_edge_by_a_hair_and_a_wrong_declared_size():
    hair = audited(Objects(((0.5, 0.5, 1.0008, 0.5),), (0,), (0,), box_format="cxcywhn"), size=(100, 80))
    assert [(c, w) for c, w, _ in hair.problems] == [("box_outside", "object 0"), ("box_outside", "object 0")]
    assert "by 0.04 px (0.0004 of the width)" in hair.problems[0][2]
    declared = audited(Objects(((1, 1, 10, 10),), (0,), (0,), canvas=(80, 100)), size=(100, 80))
    assert [c for c, _, _ in declared.problems] == ["annotation_unreadable"]
    assert "80×100, the image is 100×80" in declared.problems[0][2]


def test_audit_of_instance_masks_that_cover_nothing_or_cannot_be_drawn():
    flat = ("polygon", ((10.0, 10.0, 30.0, 10.0, 50.0, 10.0),))  # on one line: no pixel
    found = audited(Objects(((10, 10, 40, 5),), (0,), (0,), (flat,)), masks=True)
    assert [(c, w) for c, w, _ in found.problems] == [("box_degenerate", "object 0")]
    far = ("polygon", ((10.0, 10.0, 1e6, 10.0, 50.0, 40.0),))
    assert [c for c, _, _ in audited(Objects(((10, 10, 40, 30),), (0,), (0,), (far,)), masks=True).problems] == \
        ["annotation_unreadable"]


def test_a_clean_image_has_no_problems_and_its_figures():
    found = audited(Objects(((0, 0, 100, 80), (10, 20, 30, 10), (50, 40, 20, 20)), (0, 1, 1), (0, 1, 2)))
    assert found.problems == []
    assert found.facts == {"size": [100, 80], "objects": 3, "classes": {"cat": 1, "dog": 2},
                           "boxes": [[0, 1.0, 1.0], [1, 0.3, 0.125], [1, 0.2, 0.25]]}
    moved = audited(Objects(((50, 40, 20, 20), (0, 0, 100, 80), (10, 20, 30, 10)), (1, 0, 1), (0, 1, 2)))
    assert moved.signature == found.signature  # the same labels in another order
    assert audited(Objects(((0, 0, 100, 80),), (1,), (0,))).signature != found.signature


def test_audit_row_of_an_expanded_dataset():
    kind = kind_for("detection")
    row = {"width": 100, "height": 80, "objects": {"bbox": [[0, 0, 100.001, 80], [10, 10, 20, 20], [10, 10, 20, 20]],
                                                    "category": [0, 1, 1], "id": [5, 6, 7]}}
    found = kind.audit_row(row, ["cat", "dog"])
    assert [(c, w) for c, w, _ in found.problems] == [("box_duplicate", "object 2 (id 7)")]
    row["objects"]["bbox"][0] = [0, 0, 101, 80]
    assert [(c, w) for c, w, _ in kind.audit_row(row, ["cat", "dog"]).problems][0] == ("box_outside", "object 0 (id 5)")


def _fill_row_by_row(mask: np.ndarray, points: np.ndarray) -> None:
    """What fill_polygon did before it filled every row at once: row by row, the pixel centres
    between each pair of crossings (spans clipped to the image)."""
    h, w = mask.shape
    x, y = points[:, 0], points[:, 1]
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    for row in range(max(int(np.floor(y.min())), 0), min(int(np.ceil(y.max())), h)):
        centre = row + 0.5
        crossing = (y <= centre) != (y2 <= centre)
        xa, ya, xb, yb = x[crossing], y[crossing], x2[crossing], y2[crossing]
        xs = np.sort(xa + (centre - ya) * (xb - xa) / (yb - ya))
        for a, b in zip(xs[0::2], xs[1::2]):
            mask[row, max(int(np.ceil(a - 0.5)), 0):max(min(int(np.ceil(b - 0.5)), w), 0)] = 1


def test_polygons_fill_the_same_pixels_as_row_by_row():
    """Random polygons (self-crossing, on pixel edges and half pixels, over the image's edges, one
    of thousands of points filled a block of rows at a time) fill the pixels the row-by-row fill did."""
    from augpipe.targets import boxes

    rng = np.random.default_rng(0)
    for i in range(1500):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        n = int(rng.integers(3, 40)) if i else 5000
        points = np.column_stack([rng.uniform(-0.4 * w, 1.4 * w, n), rng.uniform(-0.4 * h, 1.4 * h, n)])
        points = np.round(points) if i % 3 == 0 else np.round(points * 2) / 2 if i % 3 == 1 else points
        ours, before = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
        ours[0, 0] = before[0, 0] = 1  # pixels already set stay set
        boxes.fill_polygon(ours, points)
        _fill_row_by_row(before, points)
        assert np.array_equal(ours, before), i


def test_all_of_a_rows_polygons_filled_at_once_fill_what_each_filled_alone_did():
    """Objects of several polygons of different lengths, in different rows, over the edges,
    self-crossing, empty, with pixels already set; every fourth image one long polygon among short
    ones; every seventh with points a hair off the half pixels: each mask the union of its
    polygons' row-by-row fills."""
    from augpipe.targets.boxes import fill_polygons

    rng = np.random.default_rng(1)
    for i in range(400):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        k = int(rng.integers(1, 6))
        masks, expected = np.zeros((k, h, w), np.uint8), np.zeros((k, h, w), np.uint8)
        masks[0, -1, -1] = expected[0, -1, -1] = 1
        polygons = []
        for obj in range(k):
            for part in range(int(rng.integers(0, 4))):
                n = 600 if i % 4 == 0 and obj == part == 0 else int(rng.integers(0, 30))
                points = np.column_stack([rng.uniform(-0.4 * w, 1.4 * w, n), rng.uniform(-0.4 * h, 1.4 * h, n)])
                points = np.round(points) if i % 3 == 0 else np.round(points * 2) / 2 if i % 3 == 1 else points
                if i % 7 == 0:
                    points = points + 1e-13 * rng.standard_normal(points.shape)
                polygons.append((obj, points))
                if n:
                    _fill_row_by_row(expected[obj], points)
        fill_polygons(list(masks), polygons)
        assert np.array_equal(masks, expected), i


def test_many_long_edges_are_filled_a_band_of_rows_at_a_time(monkeypatch):
    """A zigzag of 3,000 edges each crossing most rows (millions of crossings) is worked out a
    band of rows at a time, and its pixels a bounded number at a time: the same pixels as the
    row-by-row fill, with the bounds made small enough to take several passes."""
    from augpipe.targets import boxes

    monkeypatch.setattr(boxes, "FILL_CELLS", 1 << 14)
    h, w = 300, 200
    n = 3000
    xs = np.linspace(0.3, w - 0.3, n)
    ys = np.where(np.arange(n) % 2, h - 0.7, 0.6)
    points = np.column_stack([xs, ys])
    ours, before = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    boxes.fill_polygon(ours, points)
    _fill_row_by_row(before, points)
    assert ours.any() and np.array_equal(ours, before)
    ours[:], before[:] = 0, 0
    square = np.array([[0.2, 0.4], [w - 0.3, 0.1], [w - 0.1, h - 0.2], [0.4, h - 0.4]])  # 60,000 pixels: 4 passes
    boxes.fill_polygon(ours, square)
    _fill_row_by_row(before, square)
    assert ours.sum() > 3 * (1 << 14) and np.array_equal(ours, before)


def test_a_polygon_left_of_the_image_fills_nothing():
    """Row by row, a span wholly left of the image ended at a negative index and filled most of
    the row from its right end (numpy's slice from the end)."""
    from augpipe.targets.boxes import fill_polygon

    mask = np.zeros((20, 30), np.uint8)
    fill_polygon(mask, np.array([[-25.0, 2], [-5, 2], [-5, 12], [-25, 12]]))
    assert not mask.any()


def test_filling_a_polygon_as_large_as_the_image_holds_little_memory():
    """Every row of a block at once, but blocks bounded by rows × columns too (found by a hostile
    test: one 4000 × 4000 polygon took 260 MiB)."""
    setup = """
import numpy as np
from augpipe.targets.boxes import fill_polygon
side = 4000
mask = np.zeros((side, side), np.uint8)
points = np.array([[0.3, 0.2], [side - 0.1, 0.4], [side - 0.2, side - 0.3], [0.1, side - 0.2]])"""
    measured = "fill_polygon(mask, points)\nassert int(mask.sum()) == side * side"
    peak = peak_bytes(setup, measured)
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"
