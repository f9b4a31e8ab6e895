"""COCO keypoints: read (the kind, its names and skeleton, each object's keypoints, malformed ones
skipped), expanded with a flip through the CLI, and written back (annotations' keypoints and
num_keypoints, the category's names and 1-based skeleton)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from augpipe.errors import SourceError
from augpipe.formats import scan
from conftest import by_path, reasons
from keypointed import FLIP, NAMES, SIZE, SKELETON, by_name, coco_keypoints, person, points

BAD = {"short.png": [10, 10, 2, 12, 12],
       "text.png": [*person(35, 14)[:3], "x", 19, 2, *person(35, 14)[6:]],
       "seen.png": [*person(35, 14)[:14], 3],
       "empty.png": []}


def test_coco_keypoints_are_read_with_their_names_and_skeleton(tmp_path):
    found = scan(coco_keypoints(tmp_path / "src", n=2, bad=BAD))
    assert (found.format, found.task, found.classes) == ("coco", "keypoints", ["person"])
    assert found.kind_options == {"keypoint_names": NAMES, "skeleton": [[0, 2], [1, 2], [0, 3], [1, 4]],
                                  "flip_idx": None}
    files = by_path(found)
    p0 = files["train2017/p0.png"].target
    assert p0.fields["keypoints"] == (tuple(person(5, 8)), tuple(person(35, 14)))
    assert files["train2017/empty.png"].target.fields["keypoints"][1] == (0.0,) * 15  # [] : none labelled
    skipped = reasons(found)
    assert skipped["train2017/short.png"] == "box 1: keypoints is not 3 × 5 numbers, x y v ([10, 10, 2, 12, 12])"
    assert skipped["train2017/text.png"] == 'box 1: keypoint 1 is not numbers (["x", 19, 2])'
    assert skipped["train2017/seen.png"] == "box 1: keypoint 4: visibility 3, not 0, 1 or 2"


def test_a_detection_book_stays_detection(tmp_path):
    root = coco_keypoints(tmp_path / "src", n=1)
    book = root / "annotations" / "instances_train2017.json"
    doc = json.loads(book.read_text())
    del doc["categories"][0]["keypoints"]
    book.write_text(json.dumps(doc))
    found = scan(root)
    assert (found.task, found.kind_options) == ("detection", {})
    assert all(not f.target.fields for f in found.files)


@pytest.mark.parametrize("change, needle", [
    ({"keypoints": ["a", "b"], "skeleton": [[1, 2]]}, "category 2 of annotations/instances_train2017.json have different keypoints"),
    ({"skeleton": [[0, 1]]}, "skeleton pair [0, 1] is not two keypoints' numbers, 1 to 5"),
    ({"keypoints": "nose"}, "keypoints is not a list of different names"),
])
def test_categories_with_other_keypoints_are_refused_in_one_line(tmp_path, change, needle):
    root = coco_keypoints(tmp_path / "src", n=1)
    book = root / "annotations" / "instances_train2017.json"
    doc = json.loads(book.read_text())
    doc["categories"].append({"id": 2, "name": "other", "keypoints": NAMES, "skeleton": SKELETON, **change})
    book.write_text(json.dumps(doc))
    with pytest.raises(SourceError) as error:
        scan(root)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_a_flipped_coco_keypoints_source_exports_to_coco_and_yolo_pose(cli, tmp_path):
    src = coco_keypoints(tmp_path / "src", bad={"seen.png": [*person(35, 14)[:14], 3]})
    (tmp_path / "flip.yaml").write_text(FLIP)
    result = cli("expand", src, "--recipe", tmp_path / "flip.yaml", "--out", tmp_path / "ds", "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "ds" / "_augpipe.json").read_text())
    assert {s["path"]: s["reason"] for s in manifest["skipped"]}["train2017/seen.png"] == \
        "box 1: keypoint 4: visibility 3, not 0, 1 or 2"
    rows = by_name(tmp_path / "ds")
    for i in range(4):
        original, flipped = points(rows[f"p{i}.png"]), points(rows[f"p{i}.aug1.png"])
        assert original.shape == flipped.shape == (2 + i % 2, len(NAMES), 3)
        # the left eye is where the right eye is seen in the mirror: x → width - x, to a pixel
        # (albumentations 2 flips keypoints as pixel indices, width - 1 - x)
        assert flipped[:, 0, 0] == pytest.approx(SIZE[0] - original[:, 1, 0], abs=1)
        assert flipped[:, 0, 1] == pytest.approx(original[:, 1, 1])
        assert (flipped[:, NAMES.index("left_hand"), 2] == original[:, NAMES.index("right_hand"), 2]).all()

    result = cli("export", tmp_path / "ds", "--format", "coco", "--out", tmp_path / "coco")
    assert result.exit_code == 0, result.output
    book = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    assert [(c["keypoints"], c["skeleton"]) for c in book["categories"]] == [(NAMES, SKELETON)]
    names = {im["id"]: im["file_name"] for im in book["images"]}
    for name, row in rows.items():
        held = points(row)
        written = [a for a in book["annotations"] if names[a["image_id"]] == name]
        np.testing.assert_allclose([a["keypoints"] for a in written], held.reshape(len(held), -1), atol=1e-3)
        assert [a["num_keypoints"] for a in written] == [int((p[:, 2] > 0).sum()) for p in held]
    again = scan(tmp_path / "coco")  # read back: the same keypoints dataset
    assert (again.task, again.kind_options) == ("keypoints", scan(src).kind_options)

    result = cli("export", tmp_path / "ds", "--format", "yolo", "--out", tmp_path / "yolo")
    assert result.exit_code == 0 and "(pose)" in result.output, result.output
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert (data["kpt_shape"], data["flip_idx"], data["kpt_names"]) == ([5, 3], [1, 0, 2, 4, 3], {0: NAMES})
    line = (tmp_path / "yolo" / "labels" / "train" / "p0.txt").read_text().splitlines()[0].split()
    held = points(rows["p0.png"])[0]
    assert [float(v) for v in line[5:]] == pytest.approx(
        [v for x, y, s in held for v in (x / SIZE[0], y / SIZE[1], s)], abs=1e-6)


def test_yolo_task_pose_needs_keypoints_and_detect_leaves_them_out(cli, tmp_path):
    src = coco_keypoints(tmp_path / "src", n=1)
    (tmp_path / "flip.yaml").write_text(FLIP)
    assert cli("expand", src, "--recipe", tmp_path / "flip.yaml", "--out", tmp_path / "ds", "-w", "1", "-q").exit_code == 0
    result = cli("export", tmp_path / "ds", "--format", "yolo", "--yolo-task", "detect", "--out", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert all(len(ln.split()) == 5 for f in (tmp_path / "d" / "labels").rglob("*.txt") for ln in f.read_text().splitlines())
    assert "kpt_shape" not in yaml.safe_load((tmp_path / "d" / "data.yaml").read_text())


def test_a_map_of_one_pair_leaves_the_other_pairs_swapped_and_the_manifest_says_the_flip_applied(cli, tmp_path):
    """A recipe's keypoint_flip of the eyes alone turned the name pairs off for the hands (a
    flipped copy's left hand was the original's left hand mirrored), and the manifest kept the
    dataset's flip_idx, which was not what was applied."""
    src = coco_keypoints(tmp_path / "src", n=2)
    for line, flip_idx in [("{left_eye: right_eye}", [1, 0, 2, 4, 3]), ("{left_eye: left_eye}", [0, 1, 2, 4, 3])]:
        (tmp_path / "r.yaml").write_text(f"keypoint_flip: {line}\n{FLIP}")
        out = tmp_path / f"ds-{len(flip_idx)}-{line.count('right')}"
        result = cli("expand", src, "--recipe", tmp_path / "r.yaml", "--out", out, "-w", "1", "-q")
        assert result.exit_code == 0, result.output
        assert json.loads((out / "_augpipe.json").read_text())["keypoints"]["flip_idx"] == flip_idx
        rows = by_name(out)
        original, flipped = points(rows["p0.png"]), points(rows["p0.aug1.png"])
        hand = NAMES.index("left_hand")  # seen in the mirror where the right hand was
        assert flipped[:, hand, 0] == pytest.approx(SIZE[0] - 1 - original[:, flip_idx[hand], 0], abs=1e-3)
