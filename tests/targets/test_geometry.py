"""The geometry every target shares with its image (augpipe/targets/geometry.py): EXIF orientation and
`output.resize`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from augpipe import ExpandOptions, expand
from augpipe.formats.base import Objects
from augpipe.recipe import parse_recipe
from augpipe.sample import SourceItem, augment_sample
from augpipe.targets import kind_for
from conftest import H, W, boxes_of, extent, picture, recipe, segmented

QUIET = dict(progress=False, workers=1, val_fraction=0)


def objects_of(out: Path) -> dict[str, dict]:
    rows = pq.read_table(sorted(out.glob("*.parquet"))).to_pylist()
    return {r["source"]: r for r in rows if r["copy"] == 0}


UPRIGHT = (40, 100)  # width, height as shown


def exif_jpeg(path: Path, orientation: int) -> None:
    """A JPEG shown UPRIGHT (40 wide, 100 high) with a white square at x 10..20, y 60..80 as shown,
    its pixels stored turned as `orientation` says (6: on its side, 3: upside down)."""
    shown = np.zeros((UPRIGHT[1], UPRIGHT[0], 3), np.uint8)
    shown[60:80, 10:20] = 255
    stored = {6: np.rot90(shown, 1), 3: np.rot90(shown, 2), 1: shown}[orientation]  # 6: turn clockwise to show
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(stored)).save(path, "JPEG", quality=95, exif=exif)


def yolo_exif(root: Path) -> Path:
    for name, orientation in (("side", 6), ("down", 3), ("plain", 1)):
        exif_jpeg(root / "images" / "train" / f"{name}.jpg", orientation)
        (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
        # the square as shown: centre (15, 70) of 40×100
        (root / "labels" / "train" / f"{name}.txt").write_text("0 0.375 0.7 0.25 0.2\n")
    (root / "data.yaml").write_text("names: [square]\ntrain: images/train\n")
    return root


def test_exif_tagged_images_take_their_labels_on_the_upright_image_as_ultralytics(tmp_path, cli):
    data = yolo_exif(tmp_path / "y")
    with Image.open(data / "images" / "train" / "side.jpg") as im:
        assert im.size == (100, 40) and im.getexif()[0x0112] == 6  # really stored on its side
    result = cli("expand", data, "-r", "flips", "-o", tmp_path / "out", "-w", "1", "--val-fraction", "0",
                 "--copies", "0")
    assert result.exit_code == 0, result.output
    rows = objects_of(tmp_path / "out")
    for name in ("side", "down", "plain"):
        row = rows[f"images/train/{name}.jpg"]
        assert (row["width"], row["height"]) == UPRIGHT
        assert np.allclose(row["objects"]["bbox"], [[10, 60, 10, 20]])
        with Image.open(io.BytesIO(row["image"]["bytes"])) as im:
            pixels = np.asarray(im.convert("L"))
            assert im.getexif().get(0x0112) in (None, 1)
        assert pixels[62:78, 12:18].min() > 200 and pixels[:50].max() < 60  # upright: the square low down
    warning = "2 labelled images carry an EXIF orientation tag (e.g. images/train/down.jpg): their labels were " \
              "read on the upright image, as ultralytics reads them"
    m = json.loads((tmp_path / "out" / "_augpipe.json").read_text())
    assert m["exif_oriented"] == 2 and any(w.startswith(warning) for w in m["warnings"])
    assert "warning     " + warning in result.output


def test_no_exif_warning_for_untagged_images(tmp_path):
    data = yolo_exif(tmp_path / "y")
    for name in ("side", "down"):
        (data / "images" / "train" / f"{name}.jpg").unlink()
        (data / "labels" / "train" / f"{name}.txt").unlink()
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert m["exif_oriented"] == 0 and not any("EXIF" in w for w in m["warnings"])


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


@pytest.mark.parametrize("polygons", [None, [[10, 10, 71, 10, 71, 16, 10, 16], None]])
def test_resize_judges_boxes_by_the_recipes_sizes_and_counts_what_it_drops(polygons):
    """`bbox_params` min_height 2 and min_area 50, and a resize to 10 px high: a 6 px high box
    became 0.6 px and was written (with masks, 1 px), counted as dropped by nothing."""
    boxes = [[10, 10, 61, 6], [10, 30, 60, 25]]
    text = ("copies: 1\noutput: {format: png, resize: {height: 10, width: 100}}\n"
            "bbox_params: {min_height: 2, min_area: 50}\ntransforms: [{HorizontalFlip: {p: 1}}]\n")
    if polygons is None:
        result = augment_sample(picture(boxes), SourceItem("a.png", None, (0, 1), target=Objects(
            tuple(tuple(b) for b in boxes), (0, 0), (0, 1))), parse_recipe(text), 0, 10**8,
            kind=kind_for("detection"))
    else:
        result = segmented(boxes, polygons, "[{HorizontalFlip: {p: 1}}]",
                           output="{format: png, resize: {height: 10, width: 100}}",
                           top="bbox_params: {min_height: 2, min_area: 50}\n")
    for row in result.rows:
        kept = boxes_of(row)  # the tall one: 25 px → 4.17 (with a mask, its extent: 5 whole pixels)
        assert len(kept) == 1 and kept[0][3] == pytest.approx(25 * 10 / H if polygons is None else 5, abs=1e-3)
    assert result.drops == {("resize", 0): 2} and result.dropped == 2


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
