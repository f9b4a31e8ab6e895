"""The ImageFolder format: reading what its writer writes."""

from __future__ import annotations

import pytest

from augpipe import ExpandOptions, expand
from augpipe.errors import SourceError
from augpipe.formats import imagefolder, scan
from augpipe.formats.base import Header
from conftest import img, make_folder, rows, write_image
from written import round_trip


def test_what_the_writer_writes_reads_back_as_the_same_classes(tmp_path):
    root = tmp_path / "src"
    for name in ("train/cat/a.jpg", "train/dog/b.jpg", "val/cat/c.jpg", "test/dog/d.jpg"):
        img(root / name)
    found = scan(root)
    _, again = round_trip(found, root, tmp_path / "out", "imagefolder", {})
    assert again.classes == found.classes == ["cat", "dog"]
    assert {f.relpath: (f.split, f.class_name) for f in again.files} == {f.relpath: (f.split, f.class_name)
                                                                        for f in found.files}


@pytest.mark.parametrize("name", ["a/b", "..", "", "a\\b"])
def test_a_class_that_is_no_folder_name_is_refused(name):
    with pytest.raises(SourceError, match="cannot be a folder name"):
        imagefolder.options({}, Header("classification", ["ok", name]), "ds")


QUIET = dict(progress=False, workers=1)


def test_a_class_named_train_is_ambiguous_and_refused(tmp_path, cli):
    data = make_folder(tmp_path / "vehicles", classes=("bus", "car", "train"), per_class=4)
    result = cli("expand", data, "-r", "flips", "-o", tmp_path / "out", "-q", "-w", "1")
    assert result.exit_code == 2 and "--layout" in result.output and "train" in result.output
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(layout="classes", **QUIET))
    assert m["classes"] == ["bus", "car", "train"]


@pytest.mark.parametrize("names", [("Train", "Test"), ("train", "valid"), ("TRAIN", "Val", "test")])
def test_split_folders_match_case_insensitively(tmp_path, names):
    for name in names:
        make_folder(tmp_path / "data" / name, per_class=3)
    m = expand(tmp_path / "data", "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert m["classes"] == ["cat", "dog"]
    expected = {"train": "train", "test": "test", "valid": "validation", "val": "validation"}
    assert set(m["counts"]) == {expected[n.lower()] for n in names}


def test_split_folders_are_used_as_they_are(tmp_path):
    for split in ("train", "val", "test"):
        make_folder(tmp_path / "data" / split, per_class=3)
    m = expand(tmp_path / "data", "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert set(m["counts"]) == {"train", "validation", "test"}
    assert m["counts"]["validation"]["rows"] == 6 and m["counts"]["test"]["rows"] == 6
    assert all(r["copy"] == 0 for r in rows(tmp_path / "out", "test"))
    assert all(r["source"].startswith("val/") for r in rows(tmp_path / "out", "validation"))


def test_folder_without_class_folders_is_unlabelled(tmp_path):
    for i in range(4):
        write_image(tmp_path / "data" / f"{i}.jpg", seed=i)
    m = expand(tmp_path / "data", "flips", tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    assert not m["labelled"] and m["classes"] == []
    assert {r["label"] for r in rows(tmp_path / "out")} == {None}


def test_deeper_folders_belong_to_their_first_level_class_and_hidden_files_are_ignored(tmp_path):
    data = tmp_path / "data"
    write_image(data / "cat" / "indoor" / "deep" / "a.jpg")
    write_image(data / "dog" / "b.JPEG")
    write_image(data / "dog" / ".hidden.jpg")
    write_image(data / ".cache" / "x" / "c.jpg")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    got = {(r["source"], r["label"]) for r in rows(tmp_path / "out") if r["copy"] == 0}
    assert got == {("cat/indoor/deep/a.jpg", 0), ("dog/b.JPEG", 1)}
    assert m["skipped"] == []


@pytest.mark.parametrize("name", ["cat/a.jpg", "a.JPG", "x/y/z.tar.gz", "a/.hidden", "a/.hidden.png", "a/b.", "a/b..",
                                  "noext", "a/..jpg", "dir.d/file", "dir.d/", "a/b.jpg/", "é/ü.png", "a/b c.jpeg"])
def test_scan_name_helpers_agree_with_pathlib(name):
    from pathlib import PurePosixPath

    from augpipe.formats.base import is_image, stem, suffix

    path = PurePosixPath(name)
    assert (suffix(name), stem(name)) == (path.suffix, path.stem)
    assert is_image(name) == (path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"))
