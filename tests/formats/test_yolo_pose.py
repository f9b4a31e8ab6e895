"""YOLO pose: data.yaml's kpt_shape, flip_idx and kpt_names read as a keypoints dataset, label lines
with K keypoints (malformed ones skipped), and a pose source expanded and written again keeping
its keypoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from augpipe.errors import SourceError
from augpipe.formats import scan
from conftest import by_path, img, reasons, write
from keypointed import NAMES, SIZE

COPIES_0 = "copies: 0\noutput: {format: png}\ntransforms: [HorizontalFlip]\n"
LINES = {"a": ["0 0.2 0.4 0.2 0.4 0.15 0.3 2 0.25 0.3 2 0.2 0.35 1 0.12 0.5 2 0 0 0",
               "0 0.6 0.5 0.25 0.5 0.55 0.4 2 0.65 0.4 2 0.6 0.45 2 0.5 0.6 1 0.7 0.62 2"],
         "b": ["0 0.5 0.5 0.4 0.6 0.4 0.4 2 0.6 0.4 2 0.5 0.5 2 0.35 0.7 2 0.65 0.7 2"]}


def pose_source(root: Path, lines: dict, shape=(5, 3), **extra) -> Path:
    config = {"train": "images/train", "val": "images/train", "names": {0: "person"}, "kpt_shape": list(shape),
              "flip_idx": [1, 0, 2, 4, 3], **extra}
    write(root / "data.yaml", yaml.safe_dump(config))
    for name, content in lines.items():
        img(root / "images" / "train" / f"{name}.png", *SIZE)
        write(root / "labels" / "train" / f"{name}.txt", "".join(f"{ln}\n" for ln in content))
    return root


def test_a_pose_source_is_read_with_its_flip_idx_and_names(tmp_path):
    found = scan(pose_source(tmp_path / "src", LINES, kpt_names={0: NAMES}))
    assert (found.format, found.task, found.classes) == ("yolo", "keypoints", ["person"])
    assert found.kind_options == {"keypoint_names": NAMES, "skeleton": [], "flip_idx": [1, 0, 2, 4, 3]}
    a = by_path(found)["images/train/a.png"].target
    assert a.boxes == ((0.2, 0.4, 0.2, 0.4), (0.6, 0.5, 0.25, 0.5)) and a.box_format == "cxcywhn"
    assert a.fields["keypoints"][0] == (0.15, 0.3, 2, 0.25, 0.3, 2, 0.2, 0.35, 1, 0.12, 0.5, 2, 0, 0, 0)


def test_without_names_the_keypoints_are_numbered_and_without_visibility_labelled(tmp_path):
    found = scan(pose_source(tmp_path / "src", {"a": ["0 0.5 0.5 0.4 0.6 0.4 0.4 0.6 0.4 -1 -1 0.3 0.7 0.6 0.7"]},
                             shape=(5, 2)))
    assert found.kind_options["keypoint_names"] == ["0", "1", "2", "3", "4"]
    assert found.files[0].target.fields["keypoints"][0] == (0.4, 0.4, 2, 0.6, 0.4, 2, 0, 0, 0, 0.3, 0.7, 2, 0.6, 0.7, 2)


def test_malformed_pose_lines_are_recorded_skips(tmp_path):
    lines = {"ok": LINES["b"], "short": ["0 0.5 0.5 0.4 0.6 0.4 0.4 2"],
             "seen": ["0 0.5 0.5 0.4 0.6 0.4 0.4 2 0.6 0.4 5 0.5 0.5 2 0.35 0.7 2 0.65 0.7 2"],
             "word": ["0 0.5 0.5 0.4 0.6 0.4 0.4 2 0.6 0.4 2 0.5 0.5 2 0.35 0.7 2 0.65 0.7 two"]}
    found = scan(pose_source(tmp_path / "src", lines))
    assert [f.relpath for f in found.files] == ["images/train/ok.png"]
    skipped = reasons(found)
    assert skipped["images/train/short.png"] == ("labels/train/short.txt line 1: 8 fields (a pose line is 20, class "
                                                 "cx cy w h and 5 keypoints of 3 values, the yaml's kpt_shape)")
    assert skipped["images/train/seen.png"] == "labels/train/seen.txt line 1: box 0: keypoint 1: visibility 5, not 0, 1 or 2"
    assert skipped["images/train/word.png"] == "labels/train/word.txt line 1: 'two' is not a number"


@pytest.mark.parametrize("extra, needle", [
    ({"kpt_shape": [5, 4]}, "kpt_shape is [K, 2 or 3]"),
    ({"kpt_shape": 17}, "kpt_shape is [K, 2 or 3]"),
    ({"flip_idx": [0, 1, 2, 3, 3]}, "flip_idx is not a permutation of 0..4"),
    ({"kpt_names": {0: NAMES[:4]}}, "kpt_names is not 5 different names"),
    ({"names": {0: "a", 1: "b"}, "kpt_names": {0: NAMES, 1: NAMES[::-1]}}, "kpt_names differ between classes"),
])
def test_a_bad_pose_yaml_is_refused_in_one_line(tmp_path, extra, needle):
    with pytest.raises(SourceError) as error:
        scan(pose_source(tmp_path / "src", LINES, **extra))
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_a_pose_source_expanded_and_written_again_keeps_its_keypoints(cli, tmp_path):
    src = pose_source(tmp_path / "src", LINES, kpt_names={0: NAMES})
    (tmp_path / "copies0.yaml").write_text(COPIES_0)
    result = cli("expand", src, "--recipe", tmp_path / "copies0.yaml", "--out", tmp_path / "ds", "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    result = cli("export", tmp_path / "ds", "--format", "yolo", "--out", tmp_path / "yolo")
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert (data["kpt_shape"], data["flip_idx"], data["kpt_names"]) == ([5, 3], [1, 0, 2, 4, 3], {0: NAMES})
    for name, lines in LINES.items():
        again = (tmp_path / "yolo" / "labels" / "train" / f"{name}.txt").read_text().splitlines()
        np.testing.assert_allclose([[float(v) for v in ln.split()] for ln in again],
                                   [[float(v) for v in ln.split()] for ln in lines], atol=1e-5)
    found = scan(tmp_path / "yolo")
    assert (found.task, found.kind_options["flip_idx"], found.kind_options["keypoint_names"]) == \
        ("keypoints", [1, 0, 2, 4, 3], NAMES)
