"""The ImageFolder format: reading what its writer writes."""

from __future__ import annotations

import pytest

from augpipe.errors import SourceError
from augpipe.formats import imagefolder, scan
from augpipe.formats.base import Header
from conftest import img
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
