"""The label files format (classification): its reader."""

from __future__ import annotations

import json

import pytest

from augpipe.errors import SourceError
from augpipe.formats import scan
from conftest import by_path, img, reasons, write


def test_labelfiles_csv(tmp_path):
    root = tmp_path / "lf"
    for name in ("a", "b", "c", "d", "sub/e"):
        img(root / f"{name}.jpg")
    write(root / "labels.csv", "file_name,label\na.jpg,dog\nb.jpg,cat\nsub/e.jpg,cat\nmissing.jpg,dog\nd.jpg,\n")
    write(root / "metadata.csv", "file_name,label\na.jpg,x\n")
    found = scan(root)
    assert (found.format, found.task, found.classes, found.labelled) == ("labelfiles", "classification",
                                                                          ["cat", "dog"], True)
    assert {p: (f.class_name, f.split, f.target) for p, f in by_path(found).items()} == {
        "a.jpg": ("dog", None, None), "b.jpg": ("cat", None, None), "sub/e.jpg": ("cat", None, None)}
    assert reasons(found) == {"c.jpg": "not in labels.csv", "d.jpg": "no label in labels.csv",
                              "missing.jpg": "listed in labels.csv but not found",
                              "metadata.csv": "ignored: labels.csv beside it is used"}


def test_labelfiles_jsonl_in_split_folders(tmp_path):
    root = tmp_path / "hf"
    rows = {"train": [("t1.png", 10), ("t2.png", 2)], "test": [("s1.png", 2)]}
    for split, items in rows.items():
        for name, _ in items:
            img(root / split / name)
        write(root / split / "metadata.jsonl",
              "".join(json.dumps({"file_name": n, "label": v, "extra": 1}) + "\n" for n, v in items))
    found = scan(root)
    assert found.classes == ["2", "10"]  # integers in numeric order
    assert {p: (f.class_name, f.split) for p, f in by_path(found).items()} == {
        "train/t1.png": ("10", "train"), "train/t2.png": ("2", "train"), "test/s1.png": ("2", "test")}


def test_labelfiles_first_other_column_and_malformed(tmp_path):
    root = tmp_path / "lf"
    img(root / "a.jpg")
    write(root / "metadata.csv", "file_name,species,notes\na.jpg,heron,tall\n")
    assert by_path(scan(root))["a.jpg"].class_name == "heron"
    write(root / "metadata.csv", "name,species\na.jpg,heron\n")
    with pytest.raises(SourceError, match=r"metadata.csv: no file_name column \(the header is name,species\)"):
        scan(root)
    (root / "metadata.csv").unlink()
    write(root / "metadata.jsonl", '{"file_name": "a.jpg", "label": "x"}\n{oops\n')
    with pytest.raises(SourceError, match="metadata.jsonl: line 2: not valid JSON"):
        scan(root)
