"""Choosing a format (`formats.detect`, `--format`), over each format's fixtures."""

from __future__ import annotations

import pytest

from augpipe.errors import SourceError
from augpipe.formats import detect, scan
from augpipe.store import open_store
from conftest import img, write
from test_coco import make_coco, make_roboflow_coco
from test_yolo import make_ultralytics


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
