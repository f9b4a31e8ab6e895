"""Export's formats as the clients read them (issue 14): YOLO never mixes box and polygon lines
and its data.yaml resolves from anywhere; COCO carries every mask (polygons on the pixels'
edges, RLE where they cannot), the mask's area, iscrowd and the objects' ids; VOC in the
devkit's 1-based convention, with labelmap.txt. The clients themselves load the exports in
tests/clients/."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from augpipe import ExpandOptions, expand
from augpipe.export import export
from augpipe.formats import coco, yolo
from augpipe.formats.common import rings
from augpipe.recipe import parse_recipe
from augpipe.targets.boxes import _rle, fill_polygon
from conftest import make_scenes

COPIES_0 = parse_recipe("copies: 0\noutput: {format: png}\ntransforms: [HorizontalFlip]\n")
QUIET = dict(progress=False, workers=1)


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


# ---------------------------------------------------------------- YOLO

def test_data_yaml_has_no_path_and_names_a_val_folder(boxes, tmp_path):
    export(boxes, "yolo", tmp_path / "y", progress=False)
    data = yaml.safe_load((tmp_path / "y" / "data.yaml").read_text())
    # no `path: .` (ultralytics reads that from the working directory); no validation rows: val
    # names the training images, as ultralytics requires a val entry
    assert data == {"train": "images/train", "val": "images/train", "names": {0: "box", 1: "disc"}, "nc": 2}


def test_yolo_task_defaults_and_refusals(masked, boxes, tmp_path, cli):
    assert export(masked, "yolo", tmp_path / "a", progress=False)["yolo_task"] == "segment"
    assert export(boxes, "yolo", tmp_path / "b", progress=False)["yolo_task"] == "detect"
    lines = [ln.split() for f in (tmp_path / "a" / "labels").rglob("*.txt") for ln in f.read_text().splitlines()]
    assert lines and all(len(ln) >= 9 for ln in lines)  # every object a polygon
    result = cli("export", boxes, "--format", "yolo", "--yolo-task", "segment", "--out", tmp_path / "c")
    assert result.exit_code == 2 and "has no instance masks: --yolo-task segment needs them" in result.output
    result = cli("export", masked, "--format", "yolo", "--yolo-task", "pose", "--out", tmp_path / "c")
    assert result.exit_code == 2 and "--yolo-task is detect or segment, not 'pose'" in result.output
    result = cli("export", masked, "--format", "coco", "--yolo-task", "detect", "--out", tmp_path / "c")
    assert result.exit_code == 2 and "--yolo-task is an option of --format yolo, not coco" in result.output
    result = cli("export", masked, "--format", "yolo", "--yolo-task", "detect", "--out", tmp_path / "a")
    assert result.exit_code == 2 and "written with --yolo-task segment: choose a new --out for --yolo-task detect" \
        in result.output


@pytest.mark.parametrize("args, left_out", [(("yolo", "--yolo-task", "detect"), True), (("yolo",), False),
                                            (("voc",), True), (("coco",), False)])
def test_an_export_that_leaves_the_masks_out_says_so(masked, boxes, tmp_path, cli, args, left_out):
    result = cli("export", masked, "--format", *args, "--out", tmp_path / "m", "-q")
    assert result.exit_code == 0 and ("the instance masks are not written" in result.output) == left_out, result.output
    result = cli("export", boxes, "--format", args[0], "--out", tmp_path / "b", "-q")
    assert result.exit_code == 0 and "instance masks" not in result.output


# ---------------------------------------------------------------- COCO

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
            mask = _mask(mask_png["bytes"])
            assert a["segmentation"] and a["area"] == int(mask.sum()) and a["iscrowd"] == 0
            assert a["id"] == objects["id"][k]  # unique in the file: the objects' own ids
            filled = np.zeros_like(mask)
            for polygon in a["segmentation"]:
                fill_polygon(filled, np.asarray(polygon, float).reshape(-1, 2))
            assert np.array_equal(filled, mask)


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
    import cv2

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


# ---------------------------------------------------------------- VOC

def test_voc_is_written_in_the_devkits_convention(boxes, tmp_path):
    export(boxes, "voc", tmp_path / "v", progress=False)
    export(boxes, "voc", tmp_path / "z", progress=False, voc_zero_based=True)
    assert (tmp_path / "v" / "labelmap.txt").read_text() == "box:::\ndisc:::\n"
    for row in rows(boxes):
        stem = row["image"]["path"].split("/")[-1].rsplit(".", 1)[0]
        devkit = [[float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
                  for b in ET.parse(tmp_path / "v" / "Annotations" / f"{stem}.xml").iter("bndbox")]
        zero = [[float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
                for b in ET.parse(tmp_path / "z" / "Annotations" / f"{stem}.xml").iter("bndbox")]
        for (x, y, w, h), d, z in zip(row["objects"]["bbox"], devkit, zero, strict=True):
            assert d == [np.floor(x + 0.5) + 1, np.floor(y + 0.5) + 1, np.floor(x + w + 0.5), np.floor(y + h + 0.5)]
            assert all(v == int(v) for v in d) and min(d) >= 1
            np.testing.assert_allclose(z, [x, y, x + w, y + h], atol=1e-3)


def _mask(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return (np.asarray(Image.open(io.BytesIO(data))) > 0).astype(np.uint8)


def _coco_source(root: Path, boxes: list, names: list[str], size=(64, 48)) -> Path:
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


def test_a_voc_box_of_less_than_a_pixel_at_an_edge_stays_inside_and_reads_back(tmp_path):
    src = _coco_source(tmp_path / "src", [[63.6, 0, 0.4, 1], [0, 47.7, 2, 0.3], [10, 10, 5, 5]], ["a.png"])
    expand(src, COPIES_0, tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))
    export(tmp_path / "ds", "voc", tmp_path / "v", progress=False)
    written = [[int(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
               for b in ET.parse(tmp_path / "v" / "Annotations" / "default__a.xml").iter("bndbox")]
    assert written == [[64, 1, 64, 1], [1, 48, 2, 48], [11, 11, 15, 15]]
    again = expand(tmp_path / "v", COPIES_0, tmp_path / "again", ExpandOptions(val_fraction=0, **QUIET))
    assert not again["skipped"] and rows(tmp_path / "again")[0]["objects"]["bbox"] == [
        [63, 0, 1, 1], [0, 47, 2, 1], [10, 10, 5, 5]]


def test_voc_names_with_spaces_read_back_whole(tmp_path):
    src = _coco_source(tmp_path / "src", [[10, 10, 5, 5]], ["a b.png", "c.png", "a_b.png"])
    expand(src, COPIES_0, tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))
    export(tmp_path / "ds", "voc", tmp_path / "v", progress=False)
    lines = (tmp_path / "v" / "ImageSets" / "Main" / "train.txt").read_text().split("\n")
    assert all(" " not in line for line in lines) and len([ln for ln in lines if ln]) == 3
    again = expand(tmp_path / "v", COPIES_0, tmp_path / "again", ExpandOptions(val_fraction=0, **QUIET))
    assert not again["skipped"] and len(rows(tmp_path / "again")) == 3


def test_a_yolo_export_of_validation_rows_only_names_them_as_train_too(tmp_path):
    src = make_scenes(tmp_path / "src", n=4, fmt="coco")
    (src / "default").rename(src / "val")
    (src / "annotations" / "instances_default.json").rename(src / "annotations" / "instances_val.json")
    expand(src, COPIES_0, tmp_path / "ds", ExpandOptions(**QUIET))
    export(tmp_path / "ds", "yolo", tmp_path / "y", progress=False)
    data = yaml.safe_load((tmp_path / "y" / "data.yaml").read_text())
    assert data["train"] == data["val"] == "images/val"


@pytest.mark.parametrize("fmt, images", [("yolo", "images/train"), ("coco", "default")])
def test_copies_0_and_an_export_in_the_sources_format_give_back_its_files_byte_for_byte(tmp_path, fmt, images):
    """PNG sources under a JPEG recipe: the originals are the user's bytes, and so are the files."""
    src = make_scenes(tmp_path / "src", n=4, fmt=fmt)
    jpeg = parse_recipe("copies: 0\noutput: {format: jpeg}\ntransforms: [HorizontalFlip]\n")
    expand(src, jpeg, tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))
    export(tmp_path / "ds", fmt, tmp_path / "out", progress=False)
    written = tmp_path / "out" / ("images/train" if fmt == "yolo" else "images/train/default")
    sources = sorted((src / images).glob("*.png"))
    assert len(sources) == 4
    for path in sources:
        assert (written / path.name).read_bytes() == path.read_bytes(), path.name
