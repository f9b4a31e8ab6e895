"""Hostile annotations (issue 15, items 7, 11, 12, 13): each one a recorded skip, a dropped object
with its reason, or the format's own convention, never a crash or a silent wrong label."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from augpipe import ExpandOptions, expand
from augpipe.errors import SkipInput
from augpipe.sample import SourceItem, augment_sample
from augpipe.formats.base import Objects
from augpipe.targets import kind_for
from augpipe.targets.boxes import _rle

QUIET = dict(progress=False, workers=1, val_fraction=0)


def png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def coco(root: Path, annotations: list[dict], n_images: int = 2, size=(64, 48)) -> Path:
    """COCO with `n_images` images; the annotations are on the first, the others have one good box."""
    w, h = size
    (root / "default").mkdir(parents=True)
    for i in range(n_images):
        (root / "default" / f"a{i}.png").write_bytes(png(w, h))
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


# ---------------------------------------------------------------- 12. RLE strings

HOSTILE_COUNTS = [
    "o" * 1_000_000 + "0",  # one number of five million bits: 52 s, then a 4300-digit error
    "o" * 3000 + "0",  # a number past Python's digit limit in the skip message
    "1" * 1_500_000,  # a million and a half small runs
    "0" * 1_000_000,  # a million runs of nothing
]


@pytest.mark.parametrize("counts", HOSTILE_COUNTS, ids=["long-number", "4300-digits", "many-runs", "zero-runs"])
def test_a_hostile_rle_string_is_one_short_skip(counts):
    with pytest.raises(SkipInput) as caught:
        _rle({"size": [48, 64], "counts": counts}, (48, 64))
    assert len(caught.value.reason) < 120
    assert caught.value.reason.startswith("an RLE mask's")


def test_rle_runs_past_the_image_stop_with_a_short_message_in_a_run(tmp_path):
    data = coco(tmp_path / "c", [{"bbox": [1, 1, 10, 10], "segmentation": {"size": [48, 64],
                                                                           "counts": "o" * 20000 + "0"}}])
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert skips(m) == {"default/a0.png": "an RLE mask's runs cover more than the image's 3,072 pixels"}
    m = expand(coco(tmp_path / "d", [{"bbox": [1, 1, 10, 10], "segmentation": {"size": [48, 64],
                                                                               "counts": [10 ** 4000]}}]),
               "flips", tmp_path / "out2", ExpandOptions(**QUIET))
    assert skips(m) == {"default/a0.png": "an RLE mask's runs cover more than the image's 3,072 pixels"}


# ---------------------------------------------------------------- 13. overflow and odd numbers

@pytest.mark.parametrize("size", ["NaN", "Infinity", "-Infinity", "2.5", "1e400"])
def test_an_rle_size_that_is_no_whole_number_is_a_recorded_skip_without_image_size(tmp_path, size):
    root = coco(tmp_path / "c", [{"bbox": [1, 1, 10, 10], "segmentation": {"size": [48, 64], "counts": [3072]}}])
    path = root / "annotations" / "instances_default.json"
    doc = json.loads(path.read_text())
    for im in doc["images"]:
        del im["width"], im["height"]
    text = json.dumps(doc).replace('"size": [48, 64]', f'"size": [{size}, 64]')
    path.write_text(text)
    m = expand(root, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert skips(m)["default/a0.png"].startswith("box 0: segmentation RLE is not {size: [h, w], counts}")


@pytest.mark.parametrize("value", [1e300, -1e300, 1e308])
def test_a_polygon_point_far_outside_the_image_is_a_recorded_skip(tmp_path, value):
    data = coco(tmp_path / "c", [{"bbox": [1, 1, 10, 10], "segmentation": [[1, 1, value, 1, 11, 11]]}])
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert skips(m) == {"default/a0.png": f"box 0: a polygon point ({value:.6g}, 1) lies far outside the 64×48 image"}
    assert set(objects_of(tmp_path / "out")) == {"default/a1.png"}


def test_an_unforeseen_failure_in_one_annotation_is_a_recorded_skip(monkeypatch):
    from augpipe.targets import boxes

    def broken(*args):
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(boxes, "fill_polygon", broken)
    objects = Objects(((1.0, 1.0, 10.0, 10.0),), (0,), (1,), segments=(("polygon", ((1, 1, 11, 1, 11, 11),)),))
    with pytest.raises(SkipInput, match="its annotation cannot be used: OverflowError: cannot convert float"):
        augment_sample(png(64, 48), SourceItem("a.png", None, (0,), target=objects), _recipe(), 0, 10**8,
                       kind=kind_for("detection", instance_masks=True))


def _recipe():
    from augpipe.recipe import parse_recipe

    return parse_recipe("copies: 0\noutput: {format: png}\ntransforms: [HorizontalFlip]\n")


# ---------------------------------------------------------------- 11. degenerate polygons

DEGENERATE = [
    [5, 5, 5, 5, 5, 5],  # one point three times
    [5, 5, 20, 5, 5, 5],  # two distinct points
    [5, 5, 10, 10, 20, 20],  # three points on a line
    [5, 5, 30, 5.2, 5, 5.3],  # thinner than a pixel: covers no pixel centre
]


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
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert m["dropped_objects"] == [{"path": "default/a0.png", "reason": "box 0 (id 1): its RLE mask covers no pixel"}]
    assert objects_of(tmp_path / "out")["default/a0.png"]["objects"]["id"] == []


# ---------------------------------------------------------------- 7. EXIF orientation

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


def test_an_object_of_more_polygon_points_than_its_image_can_show_is_a_recorded_skip():
    rgb = np.zeros((32, 40, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    square = (1.0, 1.0, 30.0, 1.0, 30.0, 30.0, 1.0, 30.0)
    objects = Objects(((1.0, 1.0, 29.0, 29.0),), (0,), (1,), segments=(("polygon", (square,) * 2000),))
    with pytest.raises(SkipInput, match="its polygons have 8,000 points, more than a 40×32 image can show"):
        augment_sample(buf.getvalue(), SourceItem("a.png", None, (0,), target=objects), _recipe(), 0, 10**8,
                       kind=kind_for("detection", instance_masks=True))
