"""Detection and segmentation end to end (issue 10): boxes and masks through the recipe, the shards,
preview, inspect, export and Hugging Face datasets."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from augpipe import ExpandOptions, expand
from augpipe.recipe import parse_recipe
from augpipe.sample import SourceItem, augment_sample, moves_pixels
from augpipe.formats.base import Objects
from augpipe.targets import kind_for
from conftest import make_scenes, shard_hashes, write_image

QUIET = dict(progress=False, workers=1)
W, H = 100, 60


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def picture(boxes) -> bytes:
    image = np.zeros((H, W, 3), np.uint8)
    for x, y, w, h in boxes:
        cv2.rectangle(image, (int(x), int(y)), (int(x + w) - 1, int(y + h) - 1), (255, 255, 255), -1)
    return png(image)


def recipe(transforms: str, copies: int = 1, **top) -> object:
    extra = "".join(f"{k}: {json.dumps(v)}\n" for k, v in top.items())
    return parse_recipe(f"copies: {copies}\noutput: {{format: png}}\n{extra}transforms: {transforms}\n")


def run(boxes, transforms: str, categories=None, masks=False, **top):
    objects = Objects(tuple(tuple(b) for b in boxes), tuple(categories or [0] * len(boxes)),
                      tuple(range(10, 10 + len(boxes))),
                      segments=tuple(("polygon", ((x, y, x + w, y, x + w, y + h, x, y + h),)) for x, y, w, h in boxes)
                      if masks else None)
    kind = kind_for("detection", instance_masks=masks)
    return augment_sample(picture(boxes), SourceItem("a.png", None, (0, 1), target=objects),
                          recipe(transforms, **top), 0, 10**8, kind=kind)


def boxes_of(row) -> list[list[float]]:
    return np.asarray(row["objects"]["bbox"]).tolist()


# ---------------------------------------------------------------- geometry

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


def test_exif_orientation_turns_the_image_and_leaves_the_boxes_on_the_upright_image():
    from PIL import Image as PILImage

    image = np.zeros((H, W, 3), np.uint8)
    cv2.rectangle(image, (10, 20), (39, 34), (255, 255, 255), -1)
    buf = io.BytesIO()
    exif = PILImage.Exif()
    exif[0x0112] = 6  # stored on its side: shown turned 90° clockwise
    PILImage.fromarray(image).save(buf, "JPEG", quality=95, exif=exif)
    objects = Objects(((10.0, 20.0, 30.0, 15.0),), (0,), (1,))  # drawn on the upright image, as ultralytics reads it
    result = augment_sample(buf.getvalue(), SourceItem("a.jpg", None, (0,), target=objects),
                            recipe("[HorizontalFlip]"), 0, 10**8, kind=kind_for("detection"))
    row = result.rows[0]
    assert (row["width"], row["height"]) == (H, W) and result.orientation == 6
    assert boxes_of(row) == [[10, 20, 30, 15]]


def extent(mask_png: bytes) -> list[int]:
    ys, xs = np.nonzero(np.asarray(Image.open(io.BytesIO(mask_png))))
    return [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] if len(xs) else []


def segmented(boxes, polygons, transforms: str, top: str = "", output: str = "{format: png}"):
    """augment_sample on objects given by their box and their polygon (None: no segment)."""
    objects = Objects(tuple(tuple(b) for b in boxes), (0,) * len(boxes), tuple(range(len(boxes))),
                      segments=tuple(None if p is None else ("polygon", (tuple(p),)) for p in polygons))
    r = parse_recipe(f"copies: 1\noutput: {output}\n{top}transforms: {transforms}\n")
    return augment_sample(picture(boxes), SourceItem("a.png", None, (0, 1), target=objects), r, 0, 10**8,
                          kind=kind_for("detection", instance_masks=True))


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


def test_resize_gives_objects_their_resized_masks_extent():
    boxes = [[10, 10, 31, 21], [50, 30, 30, 20]]
    polygons = [[10, 10, 41, 10, 41, 31, 10, 31], None]
    result = segmented(boxes, polygons, "[{HorizontalFlip: {p: 1}}]",
                       output="{format: png, resize: {height: 37, width: 53}}")
    for row in result.rows:
        for box, mask in zip(boxes_of(row), row["objects"]["mask"]):
            assert box == extent(mask["bytes"])
    plain = augment_sample(picture(boxes), SourceItem("a.png", None, (0,), target=Objects(
        tuple(tuple(b) for b in boxes), (0, 0), (0, 1))), parse_recipe(
        "copies: 0\noutput: {format: png, resize: {height: 37, width: 53}}\ntransforms: []\n"),
        0, 10**8, kind=kind_for("detection")).rows[0]
    # without instance masks in the dataset: albumentations' box, scaled exactly
    assert boxes_of(plain)[1] == pytest.approx([50 * 53 / W, 30 * 37 / H, 30 * 53 / W, 20 * 37 / H], abs=1e-3)


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


def test_masks_keep_their_indices_through_rotation_and_resize():
    mask = np.zeros((H, W), np.uint8)
    mask[10:30, 10:40], mask[35:55, 50:90], mask[0:5, 0:5] = 3, 255, 7
    im = Image.fromarray(mask, "L").convert("P")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    from augpipe.formats.base import MaskRef

    kind = kind_for("segmentation")
    r = parse_recipe("copies: 3\noutput: {format: png, resize: {height: 45, width: 75}}\n"
                     "transforms: [{Rotate: {limit: [-30, 30], p: 1}}, {RandomScale: {scale_limit: 0.2, p: 1}}]\n")
    result = augment_sample(png(np.zeros((H, W, 3), np.uint8)), SourceItem("a.png", None, (0, 1, 2, 3),
                            target=MaskRef("a_mask.png")), r, 0, 10**8, kind=kind, extra=buf.getvalue())
    for row in result.rows:
        out = np.asarray(Image.open(io.BytesIO(row["annotation"]["bytes"])))
        assert out.shape == (45, 75)
        assert set(np.unique(out).tolist()) <= {0, 3, 7, 255}
        assert {3, 255} <= set(np.unique(out).tolist())


# ---------------------------------------------------------------- whole datasets

@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scenes")
    return {fmt: make_scenes(root / fmt, n=16, fmt=fmt) for fmt in ("coco", "yolo", "masks")}


@pytest.mark.parametrize("fmt", ["coco", "masks"])
def test_byte_identical_across_worker_counts_with_boxes_and_masks(scenes, tmp_path, fmt):
    one, two = tmp_path / "one", tmp_path / "two"
    expand(scenes[fmt], "classic", one, ExpandOptions(workers=1, shard_size=20_000, progress=False))
    expand(scenes[fmt], "classic", two, ExpandOptions(workers=2, shard_size=20_000, progress=False))
    assert len(shard_hashes(one)) > 2 and shard_hashes(one) == shard_hashes(two)


def test_preview_equals_expand_with_boxes(scenes, tmp_path):
    from augpipe.preview import preview_shards, preview_source

    out = tmp_path / "out"
    expand(scenes["coco"], "classic", out, ExpandOptions(val_fraction=0, **QUIET))
    from_source = preview_source(scenes["coco"], "classic", rows=3, seed=0, val_fraction=0)
    from_shards = preview_shards(out, rows=16)
    by_source = {r.source: r for r in from_shards.rows}
    for row in from_source.rows:
        shard_row = by_source[row.source]
        assert [t.caption for t in row.tiles] == [t.caption for t in shard_row.tiles]
        assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(row.tiles, shard_row.tiles))


def test_hugging_face_reads_detection_and_segmentation_shards(scenes, tmp_path):
    import datasets

    det, seg = tmp_path / "det", tmp_path / "seg"
    expand(scenes["coco"], "flips", det, ExpandOptions(**QUIET))
    expand(scenes["masks"], "flips", seg, ExpandOptions(**QUIET))
    ds = datasets.load_dataset("parquet", data_dir=str(det), cache_dir=str(tmp_path / "c1"))
    objects = ds["train"].features["objects"]
    names = objects.feature["category"].names if hasattr(objects, "feature") else objects["category"].feature.names
    assert names == ["box", "disc"]
    first = ds["train"][0]
    assert first["image"].size == (80, 64)
    boxes = first["objects"]["bbox"] if isinstance(first["objects"], dict) else [o["bbox"] for o in first["objects"]]
    assert boxes and all(len(b) == 4 for b in boxes)
    ds = datasets.load_dataset("parquet", data_dir=str(seg), cache_dir=str(tmp_path / "c2"))
    assert "label" not in ds["train"].features
    mask = ds["train"][0]["annotation"]
    assert mask.size == (80, 64) and mask.mode in ("L", "P")
    assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_export_and_read_again_gives_the_same_files_and_boxes(scenes, tmp_path, fmt):
    from augpipe.export import export
    from augpipe.formats import scan

    out = tmp_path / "x"
    keep_png = recipe("[HorizontalFlip]", copies=0)  # the originals' bytes are kept when the format is theirs
    expand(scenes[fmt], keep_png, out, ExpandOptions(val_fraction=0, **QUIET))
    export(out, fmt, tmp_path / "back", progress=False)
    before, after = scan(str(scenes[fmt])), scan(str(tmp_path / "back"))
    assert after.format == fmt and after.classes == before.classes

    def by_name(found):
        return {Path(f.relpath).name: f for f in found.files}

    b, a = by_name(before), by_name(after)
    assert set(a) == set(b)
    for name, f in b.items():
        assert (scenes[fmt] / f.relpath).read_bytes() == (tmp_path / "back" / a[name].relpath).read_bytes()
        assert a[name].target.categories == f.target.categories
        np.testing.assert_allclose(np.array(a[name].target.boxes), np.array(f.target.boxes), atol=1e-4)


def test_export_voc_imagefolder_and_masks(scenes, tmp_path, folder):
    from augpipe.export import export
    from augpipe.formats import scan

    for source, fmt, task in ((scenes["coco"], "voc", "detection"), (folder, "imagefolder", "classification"),
                              (scenes["masks"], "masks", "segmentation")):
        out = tmp_path / f"{fmt}-x"
        m = expand(source, "flips", out, ExpandOptions(**QUIET))
        export(out, fmt, tmp_path / fmt, progress=False)
        found = scan(str(tmp_path / fmt))
        assert found.task == task and found.classes == m["classes"]
        assert len(found.files) == sum(c["rows"] for c in m["counts"].values())


def test_export_refuses_another_task_and_a_folder_it_did_not_write(scenes, tmp_path, cli):
    out = tmp_path / "x"
    expand(scenes["masks"], "flips", out, ExpandOptions(**QUIET))
    result = cli("export", out, "--format", "yolo", "--out", tmp_path / "y")
    assert result.exit_code == 2 and "segmentation dataset" in result.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    result = cli("export", out, "--format", "masks", "--out", tmp_path / "mine")
    assert result.exit_code == 2 and "not an augpipe export" in result.output


def test_verify_finds_a_box_outside_its_image(scenes, tmp_path, cli):
    import pyarrow as pa

    out = tmp_path / "out"
    expand(scenes["coco"], "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    assert cli("inspect", out, "--verify").exit_code == 0
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["objects"]["bbox"][0] = [70.0, 50.0, 40.0, 40.0]
    fixed = pa.Table.from_pylist(rows, schema=table.schema)
    pq.write_table(fixed, shard)
    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and "outside the 80×64 image" in result.output


def test_a_mask_of_another_size_and_a_lying_coco_size_are_recorded_skips(scenes, tmp_path):
    import shutil

    data = tmp_path / "masks"
    shutil.copytree(scenes["masks"], data)
    Image.fromarray(np.zeros((10, 10), np.uint8), "L").save(data / "masks" / "scene_003.png")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert {"path": "images/scene_003.png", "reason": "mask masks/scene_003.png is 10×10, the image 80×64"} \
        in m["skipped"]
    coco = tmp_path / "coco"
    shutil.copytree(scenes["coco"], coco)
    small = cv2.imread(str(coco / "default" / "scene_004.png"))[:20, :20]
    cv2.imwrite(str(coco / "default" / "scene_004.png"), small)  # the JSON still says 80×64
    m = expand(coco, "flips", tmp_path / "out2", ExpandOptions(**QUIET))
    reasons = {s["path"]: s["reason"] for s in m["skipped"]}
    assert "outside the 20×20 image" in reasons["default/scene_004.png"]


def test_balance_for_detection_counts_by_the_rarest_class(tmp_path):
    data = make_scenes(tmp_path / "coco", n=20)
    plain = expand(data, "flips", tmp_path / "plain", ExpandOptions(val_fraction=0, **QUIET))
    balanced = expand(data, "flips", tmp_path / "bal", ExpandOptions(val_fraction=0, balance=True, **QUIET))
    p, b = plain["counts"]["train"]["by_class"], balanced["counts"]["train"]["by_class"]
    assert b["box"] / b["disc"] != p["box"] / p["disc"]
    assert balanced["counts"]["train"]["rows"] > plain["counts"]["train"]["rows"]


def test_check_refuses_a_transform_the_dataset_cannot_use(tmp_path, cli, scenes):
    path = tmp_path / "r.yaml"
    path.write_text("transforms: [{MaskDropout: {p: 1}}]\n")
    result = cli("expand", scenes["coco"], "-r", path, "-o", tmp_path / "o", "-q", "-w", "1")
    assert result.exit_code == 2 and "needs 'mask', which a detection dataset does not have" in result.output
    assert cli("check", path, "--task", "segmentation").exit_code == 0


def test_datasets_3_feature_names_in_the_schema(scenes, tmp_path):
    out = tmp_path / "out"
    expand(scenes["coco"], "flips", out, ExpandOptions(**QUIET))
    schema = pq.read_schema(next(out.glob("train-*.parquet")))
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert features["objects"]["_type"] == "Sequence" and '"List"' not in json.dumps(features)
    bbox = schema.field("objects").type.field("bbox").type.value_type  # list<fixed_size_list<float32>[4]>
    assert bbox.list_size == 4 and bbox.value_type == pa.float32()


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


@pytest.mark.parametrize("split_by", ["content", "path"])
def test_a_mask_changed_in_place_is_noticed(scenes, tmp_path, split_by):
    import os
    import shutil

    from augpipe.errors import OutputError

    data = tmp_path / "masks"
    shutil.copytree(scenes["masks"], data)
    options = ExpandOptions(split_by=split_by, **QUIET)
    expand(data, "flips", tmp_path / "out", options)
    mask = data / "masks" / "scene_002.png"
    stat = mask.stat()
    Image.fromarray(np.ones((64, 80), np.uint8), "L").save(mask)
    os.utime(mask, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(OutputError, match="made before the source files changed"):
        expand(data, "flips", tmp_path / "out", options)


def test_a_mask_that_changes_during_the_run_is_a_recorded_skip(scenes):
    from augpipe.formats import scan
    from augpipe.store import open_store

    found = scan(str(scenes["masks"]))
    f = found.files[0]
    store = open_store(str(scenes["masks"]))
    from augpipe.errors import SkipInput

    task = SourceItem(f.relpath, None, (0,), None, f.target, extra_sha256="f" * 64)
    with pytest.raises(SkipInput, match="its mask changed during the run"):
        augment_sample(store.read_bytes(f.relpath), task, recipe("[HorizontalFlip]"), 0, 10**8,
                       kind=kind_for("segmentation"), extra=store.read_bytes(f.target.path))


# ---------------------------------------------------------------- what a hostile tester found

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


def test_a_reflecting_border_is_a_warning_for_detection_and_leaves_no_empty_box(scenes, tmp_path, cli):
    path = tmp_path / "mirror.yaml"
    path.write_text("output: {format: png}\ntransforms: [{Affine: {translate_percent: {x: [0.2, 0.3], y: 0},"
                    " border_mode: 4, p: 1}}]\n")
    result = cli("check", path, "--task", "detection")
    assert result.exit_code == 1 and "mirrors objects into the border" in result.output
    out = tmp_path / "out"
    m = expand(scenes["coco"], path, out, ExpandOptions(val_fraction=0, **QUIET))
    assert any("mirrors objects" in w for w in m["warnings"])
    for row in pq.read_table(out, columns=["objects"]).to_pylist():
        assert all(w > 0 and h > 0 for _, _, w, h in row["objects"]["bbox"])
    assert cli("inspect", out, "--verify").exit_code == 0


# ---------------------------------------------------------------- export: what a hostile tester broke

def files_below(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_export_refuses_a_class_or_a_row_path_that_would_leave_out(tmp_path, scenes, cli):
    data = tmp_path / "lf"
    write_image(data / "im1.jpg")
    write_image(data / "im2.jpg", seed=1)
    (data / "labels.csv").write_text("file_name,label\nim1.jpg,../../ESCAPED\nim2.jpg,ok\n")
    expand(data, recipe("[HorizontalFlip]", copies=0), tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))
    result = cli("export", tmp_path / "ds", "--format", "imagefolder", "--out", tmp_path / "lf-exp" / "sub")
    assert result.exit_code == 2 and "class '../../ESCAPED' cannot be a folder name" in result.output
    assert files_below(tmp_path / "lf-exp") == [] and not (tmp_path / "ESCAPED").exists()
    # a row's own path (a tampered shard) is checked too, in every format, before anything is written
    out = tmp_path / "det"
    expand(scenes["coco"], "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["image"]["path"] = "../../../x.png"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    for fmt in ("yolo", "coco", "voc"):
        result = cli("export", out, "--format", fmt, "--out", tmp_path / "x" / fmt)
        assert result.exit_code == 2 and "'../../../x.png'" in result.output and "inside --out" in result.output
    assert files_below(tmp_path / "x") == [] and not (tmp_path / "x.png").exists()


def test_export_imagefolder_keeps_the_path_below_the_class_folder(tmp_path):
    from augpipe.export import export

    data = tmp_path / "data"
    for i, rel in enumerate(("cat/a/x0.png", "cat/b/x0.png", "dog/x0.png")):
        write_image(data / rel, seed=i, fmt=".png")
    expand(data, recipe("[HorizontalFlip]", copies=1), tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))
    done = export(tmp_path / "ds", "imagefolder", tmp_path / "out", progress=False)
    assert files_below(tmp_path / "out") == ["train/cat/a/x0.aug1.png", "train/cat/a/x0.png", "train/cat/b/x0.aug1.png",
                                             "train/cat/b/x0.png", "train/dog/x0.aug1.png", "train/dog/x0.png"]
    assert done["images"] == {"train": 6} and done["renamed"] == 0


@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc"])
def test_export_gives_rows_whose_names_collide_names_of_their_own(tmp_path, fmt):
    from augpipe.export import export
    from augpipe.formats import scan

    data = tmp_path / "yolo"
    boxes = {"train/a.png": [10, 10, 20, 20], "train/a.jpg": [50, 20, 30, 30], "train/sub/b.jpg": [5, 5, 10, 10],
             "train2017/sub/b.jpg": [60, 30, 20, 20], "train/c.jpg": [30, 30, 10, 10]}
    for rel, (x, y, w, h) in boxes.items():
        (data / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        image = cv2.imdecode(np.frombuffer(picture([(x, y, w, h)]), np.uint8), cv2.IMREAD_COLOR)
        cv2.imwrite(str(data / "images" / rel), image)
        if rel != "train/a.jpg":  # a.png and a.jpg share YOLO's label file labels/train/a.txt
            (data / "labels" / rel).parent.mkdir(parents=True, exist_ok=True)
            (data / "labels" / rel).with_suffix(".txt").write_text(
                f"0 {(x + w / 2) / W} {(y + h / 2) / H} {w / W} {h / H}\n")
    (data / "data.yaml").write_text("train: [images/train, images/train2017]\nnames: [thing]\n")
    # an original keeps its bytes and its name unless it is resized: to its own size here
    jpeg = parse_recipe(f"copies: 0\noutput: {{format: jpeg, resize: {{height: {H}, width: {W}}}}}\n"
                        "transforms: [HorizontalFlip]\n")
    expand(data, jpeg, tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))  # a.png becomes a.jpg
    done = export(tmp_path / "ds", fmt, tmp_path / "out", progress=False)
    assert done["images"] == {"train": 5} and done["renamed"] == 4  # c.jpg keeps its name
    back = scan(str(tmp_path / "out"))
    assert len(back.files) == 5 and len({Path(f.relpath).stem for f in back.files}) == 5
    assert sum(1 for f in back.files if Path(f.relpath).name == "c.jpg") == 1
    found = sorted(np.round(np.array(f.target.boxes), 3).tolist()[0] for f in back.files)
    if fmt == "voc":  # the devkit's 1-based whole pixels, read from the files (not by augpipe's reader)
        found = sorted(voc_boxes(p)[0] for p in (tmp_path / "out" / "Annotations").glob("*.xml"))
    if fmt == "yolo":  # normalised cx, cy, w, h back to pixels
        found = sorted([round((cx - w / 2) * W), round((cy - h / 2) * H), round(w * W), round(h * H)]
                       for cx, cy, w, h in found)
    expected = {**boxes, "train/a.jpg": boxes["train/a.png"]}  # from their shared label file
    assert [[float(v) for v in b] for b in found] == sorted([[float(v) for v in b] for b in expected.values()])
    if fmt == "coco":
        book = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
        assert len({i["file_name"] for i in book["images"]}) == 5


def voc_boxes(xml: Path) -> list[list[float]]:
    """A VOC file's boxes as [x, y, w, h] in pixels, read in the devkit's convention (xmin and
    ymin 1-based, xmax and ymax the last pixel inside)."""
    import xml.etree.ElementTree as ET

    out = []
    for box in ET.parse(xml).getroot().iter("bndbox"):
        x0, y0, x1, y1 = (float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append([x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1])
    return out


def test_export_into_an_export_writes_the_same_dataset_again_and_refuses_another(tmp_path, scenes, cli, monkeypatch):
    from augpipe.cli import _error_table, _state
    from augpipe.store import LocalStore

    one, two, out = tmp_path / "one", tmp_path / "two", tmp_path / "out"
    expand(scenes["yolo"], recipe("[HorizontalFlip]", copies=0), one, ExpandOptions(val_fraction=0, **QUIET))
    expand(scenes["yolo"], recipe("[VerticalFlip]", copies=0), two, ExpandOptions(val_fraction=0, **QUIET))
    write = LocalStore.write_bytes
    written = []

    def interrupted(self, name, data, sync=True):
        if name.startswith("images/") and len(written) == 3:
            raise KeyboardInterrupt
        written.append(name)
        return write(self, name, data, sync)

    monkeypatch.setattr(LocalStore, "write_bytes", interrupted)
    result = cli("export", one, "--format", "yolo", "--out", out)
    assert result.exit_code == 130
    assert "the export is unfinished; run the same command again" in result.output
    marker = json.loads((out / ".augpipe-export").read_text())
    assert marker["complete"] is False and marker["format"] == "yolo" and marker["from"] == str(one.resolve())
    monkeypatch.setattr(LocalStore, "write_bytes", write)
    _state["command"] = "expand"  # expand's wording is its own
    assert "finished shards are kept" in _error_table(KeyboardInterrupt())[1]
    result = cli("export", one, "--format", "yolo", "--out", out)  # the same command, again
    assert result.exit_code == 0 and "train 16 images" in result.output
    assert json.loads((out / ".augpipe-export").read_text())["complete"] is True
    assert len(files_below(out / "images")) == 16
    result = cli("export", two, "--format", "yolo", "--out", out)
    assert result.exit_code == 2 and f"holds a yolo export of {one.resolve()}" in result.output
    result = cli("export", one, "--format", "coco", "--out", out)
    assert result.exit_code == 2 and "holds a yolo export of this dataset" in result.output


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


def test_mask_values_past_the_named_classes_are_a_recorded_skip(scenes, tmp_path):
    import shutil

    data = tmp_path / "masks"
    shutil.copytree(scenes["masks"], data)
    mask = np.zeros((64, 80), np.uint8)
    mask[10:20, 10:20], mask[30:40, 30:40] = 200, 255  # 255: "no class", allowed
    Image.fromarray(mask, "L").save(data / "masks" / "scene_001.png")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert {"path": "images/scene_001.png",
            "reason": "mask masks/scene_001.png has values [200] past the 3 named classes (0–2, and 255 for none)"} \
        in m["skipped"]


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


@pytest.mark.parametrize("name", ["local", "ray"])
def test_every_engine_keeps_the_engine_protocol(name):
    import inspect

    from augpipe.engines import make_engine
    from augpipe.engines.base import Engine

    if name == "ray":
        pytest.importorskip("ray")
    engine = make_engine(name, 1)
    assert isinstance(engine, Engine)
    for method in ("map", "describe", "start_early"):
        wanted = list(inspect.signature(getattr(Engine, method)).parameters)[1:]
        assert len(inspect.signature(getattr(engine, method)).parameters) == len(wanted), method
