"""Choosing a format (`formats.detect`, `--format`), over each format's fixtures."""

from __future__ import annotations

import pytest
from test_coco import make_coco, make_roboflow_coco
from test_yolo import make_ultralytics

from augpipe import ExpandOptions, expand
from augpipe.errors import SourceError
from augpipe.formats import detect, scan
from augpipe.store import open_store
from conftest import coco_ann, coco_image, coco_named, img, make_folder, write


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


QUIET = dict(progress=False, workers=1)


@pytest.mark.parametrize("stray, name, part", [
    ("data.yaml", "yolo", "0%"), ("cat/cat_000.xml", "voc", "10%"), ("cat/cat_000_mask.png", "masks", "10%"),
])
def test_one_stray_file_does_not_choose_the_layout(tmp_path, stray, name, part):
    data = make_folder(tmp_path / "data", per_class=5)
    if stray.endswith(".png"):
        img(data / stray)
    else:
        write(data / stray, "names: [a]\n" if stray.endswith(".yaml") else "<annotation/>")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(copies=0, **QUIET))
    assert (m["format"], m["task"], m["classes"]) == ("imagefolder", "classification", ["cat", "dog"])
    warning = next(w for w in m["warnings"] if w.startswith("--format auto"))
    assert f"{name} annotations cover only {part} of the images, too few: read as imagefolder" in warning
    assert f"--format {name} reads it as {name}" in warning


def test_two_layouts_that_fit_are_said(tmp_path):
    root = tmp_path / "d"
    img(root / "train" / "a.jpg")
    write(root / "train" / "a.xml", "<annotation><object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                                    "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    write(root / "annotations" / "instances_train.json", {
        "images": [coco_image(1, "a.jpg")], "categories": [{"id": 1, "name": "x"}],
        "annotations": [coco_ann(1, 1, 1, [1, 1, 8, 8])]})
    found = scan(root)
    assert found.format == "coco"
    assert found.warnings == ["--format auto: the files fit coco, voc; read as coco, the first (--format chooses another)"]


def test_a_failure_of_the_detected_layout_names_format(tmp_path):
    root = tmp_path / "d"
    for n in "ab":
        img(root / f"{n}.jpg")
        write(root / f"{n}.xml", "<annotation>")
    with pytest.raises(SourceError, match=r"every image .* was skipped \(voc\).*\(read as voc, the layout "
                                          r"detected: --format names another\)"):
        scan(root)


def test_a_label_file_beside_class_folders_is_said(tmp_path):
    data = make_folder(tmp_path / "data", per_class=2)
    write(data / "labels.csv", "file_name,label\ncat/cat_000.jpg,cat\ncat/cat_001.jpg,cat\n")
    found = scan(data)
    assert found.format == "labelfiles"
    assert found.warnings == ["--format auto: a label file was read, though the images also lie in folders "
                              "(cat, dog): --format imagefolder takes each folder as a class"]


@pytest.mark.parametrize("make", ["coco", "voc", "labelfiles", "imagefolder", "masks"])
def test_a_class_name_with_a_control_character_is_refused_by_every_reader(tmp_path, make):
    root = tmp_path / make
    if make == "coco":
        coco_named(root, "ca\x07t")
    elif make == "voc":
        img(root / "a.jpg")
        write(root / "a.xml", "<annotation><object><name>ca\tt</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                              "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    elif make == "labelfiles":
        img(root / "a.jpg")
        write(root / "labels.csv", "file_name,label\na.jpg,\"ca\x1bt\"\n")
    elif make == "imagefolder":
        img(root / "ca\x01t" / "a.jpg")
        img(root / "dog" / "b.jpg")
    else:
        img(root / "images" / "a.jpg")
        img(root / "masks" / "a.png")
        write(root / "classes.txt", "background\nca\x7ft\n")
    with pytest.raises(SourceError, match=r"the class name 'ca\\(x..|t)t' holds a control character \(U\+00..\): "
                                          "rename the class"):
        scan(root)


@pytest.mark.parametrize("name", ["ca\u202et", "ca\u2028t", "ca\u2066t"])
def test_a_class_name_that_reorders_or_breaks_lines_is_refused(tmp_path, name):
    coco_named(tmp_path / "c", name)
    with pytest.raises(SourceError, match="holds a control character"):
        scan(tmp_path / "c")
