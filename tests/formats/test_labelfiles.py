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


def test_a_label_file_nested_beyond_reason_is_one_line(cli, tmp_path):
    root = tmp_path / "d"
    img(root / "a.jpg")
    write(root / "metadata.jsonl", '{"file_name": "a.jpg", "label": "x"}\n' + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(SourceError, match="metadata.jsonl: line 2: not valid JSON \\(nested too deeply\\)"):
        scan(root)
    done = cli("expand", root, "-r", "flips", "-o", tmp_path / "out", "-q")
    assert done.exit_code == 2 and "nested too deeply" in done.output and "Traceback" not in done.output


def test_json_labels_1_and_1_0_are_one_class(tmp_path):
    root = tmp_path / "d"
    for n in "abc":
        img(root / f"{n}.jpg")
    write(root / "metadata.jsonl", '{"file_name": "a.jpg", "label": 1}\n{"file_name": "b.jpg", "label": 1.0}\n'
                                   '{"file_name": "c.jpg", "label": 2.5}\n')
    found = scan(root)
    assert found.classes == ["1", "2.5"]
    assert {f.relpath: f.class_name for f in found.files} == {"a.jpg": "1", "b.jpg": "1", "c.jpg": "2.5"}


def test_a_json_label_that_is_no_number_is_no_label(tmp_path):
    img(tmp_path / "d" / "a.jpg")
    img(tmp_path / "d" / "b.jpg")
    write(tmp_path / "d" / "metadata.jsonl", '{"file_name": "a.jpg", "label": NaN}\n{"file_name": "b.jpg", "label": 1}\n')
    found = scan(tmp_path / "d")
    assert found.classes == ["1"] and [p for p, _ in found.skipped] == ["a.jpg"]


def test_labelfiles_asked_for_without_a_label_file_is_one_line(tmp_path):
    img(tmp_path / "c" / "cat" / "a.jpg")
    with pytest.raises(SourceError, match=r"no label file \(labels.csv, metadata.csv, metadata.jsonl\)"):
        scan(tmp_path / "c", format="labelfiles")


def test_labelfiles_problems_name_the_lines(tmp_path):
    root = tmp_path / "lf"
    for name in ("a", "b", "c", "d"):
        img(root / f"{name}.jpg")
    write(root / "labels.csv", "file_name,label\na.jpg,dog\nb.jpg,cat\na.jpg,cat\nmissing.jpg,dog\nd.jpg,\n,cat\n")
    found = scan(root)
    assert {(p.check, p.path, p.where) for p in found.problems} == {
        ("conflicting_labels", "a.jpg", "labels.csv lines 2 and 4"),
        ("annotation_unreadable", "missing.jpg", "labels.csv"),
        ("no_labels", "d.jpg", "labels.csv line 6"),
        ("no_labels", "c.jpg", "labels.csv"),
        ("annotation_unreadable", "labels.csv", "line 7"),
    }
    assert reasons(found)["a.jpg"] == "listed twice in labels.csv, as dog and cat"  # as before


def test_a_clean_label_file_has_no_problems(tmp_path):
    img(tmp_path / "lf/a.jpg")
    write(tmp_path / "lf/labels.csv", "file_name,label\na.jpg,dog\n")
    assert scan(tmp_path / "lf").problems == []
