"""The YOLO format: its reader, and reading what its writer writes."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import by_path, img, make_scenes, reasons, recipe, write
from PIL import Image
from written import COPIES_0, QUIET, assert_same_boxes, boxes, masked, round_trip  # noqa: F401 (fixtures)

from augpipe import ExpandOptions, expand
from augpipe.errors import SourceError
from augpipe.export import export
from augpipe.formats import scan
from augpipe.formats.base import Objects


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
    ("names: [a]\nkpt_shape: [17, 4]\n", r"kpt_shape is \[K, 2 or 3\]"),
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


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_what_the_writer_writes_reads_back_as_the_same_objects(tmp_path, task):
    """Boxes to the 6 decimals a label line holds; a segment line of an object without a mask is
    its box's corners, read back as that box."""
    root = make_ultralytics(tmp_path / "src")
    found = scan(root)
    found.files = [dataclasses.replace(f, target=dataclasses.replace(f.target, segments=None)) for f in found.files]
    _, again = round_trip(found, root, tmp_path / "out", "yolo", {"yolo_task": task})
    assert again.classes == found.classes
    assert {f.split for f in again.files} == {"train", "validation"}
    assert_same_boxes(found, root, again, tmp_path / "out", atol=1e-4)


# ---------------------------------------------------------------- writing

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
    assert result.exit_code == 2 and "has no keypoints: --yolo-task pose needs them (use detect)" in result.output
    result = cli("export", masked, "--format", "coco", "--yolo-task", "detect", "--out", tmp_path / "c")
    assert result.exit_code == 2 and "--yolo-task is an option of --format yolo, not coco" in result.output
    result = cli("export", masked, "--format", "yolo", "--yolo-task", "detect", "--out", tmp_path / "a")
    assert result.exit_code == 2 and "written with --yolo-task segment: choose a new --out for --yolo-task detect" \
        in result.output


def test_a_yolo_export_of_validation_rows_only_names_them_as_train_too(tmp_path):
    src = make_scenes(tmp_path / "src", n=4, fmt="coco")
    (src / "default").rename(src / "val")
    (src / "annotations" / "instances_default.json").rename(src / "annotations" / "instances_val.json")
    expand(src, COPIES_0, tmp_path / "ds", ExpandOptions(**QUIET))
    export(tmp_path / "ds", "yolo", tmp_path / "y", progress=False)
    data = yaml.safe_load((tmp_path / "y" / "data.yaml").read_text())
    assert data["train"] == data["val"] == "images/val"


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


def found_problems(found) -> set[tuple[str, str, str]]:
    return {(p.check, p.path, p.where) for p in found.problems}


def test_yolo_problems_name_every_bad_line_and_skip_as_before(tmp_path):
    root = tmp_path / "y"
    write(root / "data.yaml", "train: images\nnames: [a, b]\n")
    img(root / "images/bad.jpg")
    write(root / "labels/bad.txt", "0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.2 0.2 0.9\n2 0.5 0.5 0.2 0.2\n\n"
                                   "0 0.5 0.5 -0.1 0.2\n1 0.95 0.5 0.2 0.2\n0 nan 0.5 0.2 0.2\n0 0.5 abc 0.2 0.2\n")
    img(root / "images/latin.jpg")
    write(root / "labels/latin.txt", b"0 0.5 0.5 0.1 0.1 \xe9\n")
    write(root / "labels/orphan.txt", "0 0.5 0.5 0.1 0.1\n")
    img(root / "images/good.jpg")
    write(root / "labels/good.txt", "1 0.5 0.5 0.2 0.2\n")
    found = scan(root)
    assert found_problems(found) == {
        ("annotation_unreadable", "images/bad.jpg", "labels/bad.txt line 2"),
        ("unknown_class", "images/bad.jpg", "labels/bad.txt line 3"),
        ("box_degenerate", "images/bad.jpg", "labels/bad.txt line 5"),
        ("box_outside", "images/bad.jpg", "labels/bad.txt line 6"),
        ("annotation_unreadable", "images/bad.jpg", "labels/bad.txt line 7"),
        ("annotation_unreadable", "images/bad.jpg", "labels/bad.txt line 8"),
        ("annotation_unreadable", "images/latin.jpg", "labels/latin.txt"),
        ("annotation_unreadable", "labels/orphan.txt", ""),
    }
    assert reasons(found)["images/bad.jpg"].startswith("labels/bad.txt line 2: 6 fields")  # the first, as before
    assert list(by_path(found)) == ["images/good.jpg"]


def test_a_clean_yolo_source_has_no_problems_but_its_image_without_a_label_file(tmp_path):
    root = make_ultralytics(tmp_path / "y")
    (root / "labels/train/orphan.txt").unlink()
    assert [(p.check, p.path, p.where) for p in scan(root).problems] == [
        ("no_labels", "images/train/background.jpg", "labels/train/background.txt")]


def test_a_folder_the_yaml_names_for_two_splits_is_said(tmp_path):
    root = make_ultralytics(tmp_path / "y")
    write(root / "data.yaml", "train: images/train\nval: images/train\nnames: [person, car]\n")
    found = scan(root)
    assert {f.split for f in found.files if f.relpath.startswith("images/train/")} == {None}
    assert [w for w in found.warnings if "images/train is named for train and validation" in w]
    assert not scan(make_ultralytics(tmp_path / "z")).warnings
