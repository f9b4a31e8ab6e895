"""The Pascal VOC format: its reader, and reading what its writer writes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from augpipe import ExpandOptions, expand
from augpipe.export import export
from augpipe.formats import scan
from augpipe.formats.base import Objects
from conftest import by_path, coco_named, img, reasons, write
from written import COPIES_0, QUIET, assert_same_boxes, boxes, coco_source, round_trip, rows  # noqa: F401 (boxes: a fixture)


def voc_xml(objects, size=(64, 48), extra="") -> str:
    objs = "".join(
        f"<object><name>{name}</name><difficult>{difficult}</difficult><truncated>1</truncated><bndbox>"
        f"<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b, difficult in objects)
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    return f"<annotation><folder>x</folder><filename>ignored.jpg</filename>{size_xml}{objs}{extra}</annotation>"


def test_voc_beside_the_images(tmp_path):
    root = tmp_path / "voc"
    cases = {
        "train/a": [("dog", (10, 5, 30, 15), 0), ("cat", (40.5, 20, 48, 28), 1)],
        "train/edge": [("cat", (0, 0, 65, 48.5), 0)],
        "valid/b": [("bird", (1, 1, 5, 5), 0)],
        "valid/empty": [],
        "train/wide": [("dog", (1, 1, 5, 5), 0), ("dog", (10, 5, 7, 9), 0)],
        "train/outside": [("dog", (60, 40, 70, 45), 0)],
    }
    for stem, objects in cases.items():
        img(root / f"{stem}.jpg")
        write(root / f"{stem}.xml", voc_xml(objects))
    img(root / "train/no_xml.jpg")
    write(root / "train/lonely.xml", voc_xml([("dog", (1, 1, 2, 2), 0)]))
    img(root / "train/broken.jpg")
    write(root / "train/broken.xml", "<annotation><object>")
    img(root / "train/nonumber.jpg")
    write(root / "train/nonumber.xml", voc_xml([("dog", ("1", "x", "5", "5"), 0)]))
    img(root / "train/evil.jpg")
    write(root / "train/evil.xml", '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "boom">]><annotation>&e;</annotation>')
    img(root / "train/encoding.jpg")
    write(root / "train/encoding.xml", '<?xml version="1.0" encoding="nosuch-enc"?><annotation></annotation>')
    found = scan(root)
    assert (found.format, found.task, found.classes) == ("voc", "detection", ["bird", "cat", "dog"])
    files = by_path(found)
    assert sorted(files) == ["train/a.jpg", "train/edge.jpg", "valid/b.jpg", "valid/empty.jpg"]
    # the devkit's convention: [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]; the difficult object kept
    assert files["train/a.jpg"].target == Objects(((9.0, 4.0, 21.0, 11.0), (39.5, 19.0, 8.5, 9.0)), (2, 1), (0, 1),
                                                  canvas=(64.0, 48.0))
    assert files["train/edge.jpg"].target.boxes == ((0.0, 0.0, 64.0, 48.0),)  # within 1 px: clipped
    assert files["valid/b.jpg"].target.boxes == ((0.0, 0.0, 5.0, 5.0),)
    assert files["valid/b.jpg"].split == "validation" and files["train/a.jpg"].split == "train"
    assert files["valid/empty.jpg"].target == Objects((), (), (), canvas=(64.0, 48.0))
    skipped = reasons(found)
    assert skipped["train/wide.jpg"] == "box 1 [9, 4, -2, 5]: width ≤ 0"
    assert skipped["train/outside.jpg"] == "box 0 [59, 39, 11, 6]: outside the 64×48 image"
    assert skipped["train/no_xml.jpg"] == "no annotation file (train/no_xml.xml)"
    assert skipped["train/lonely.xml"] == "no image for this annotation file"
    assert skipped["train/broken.jpg"].startswith("train/broken.xml: malformed XML (")
    assert skipped["train/nonumber.jpg"] == "box 0: <ymin> 'x' is not a number"
    assert skipped["train/evil.jpg"] == "train/evil.xml: refused XML (EntitiesForbidden)"
    assert skipped["train/encoding.jpg"].startswith("train/encoding.xml: malformed XML (unknown encoding")


def test_voc_in_the_devkits_convention_or_zero_based(tmp_path):
    root = tmp_path / "voc"
    cases = {"whole": [("cat", (1, 1, 64, 48), 0)],  # the devkit's: every pixel, first to last
             "zero": [("cat", (0, 0, 64, 48), 0)],  # a 0-based writer's whole image
             "first": [("cat", (1, 2, 1, 2), 0)],  # the first column, the second row: one pixel
             "past": [("cat", (2, 2, 66, 48), 0)]}  # 2 px past the right edge in either convention
    for stem, objects in cases.items():
        img(root / f"{stem}.jpg")
        write(root / f"{stem}.xml", voc_xml(objects))
    devkit, zero = scan(root), scan(root, voc_zero_based=True)
    boxes = {p: f.target.boxes for p, f in by_path(devkit).items()}
    assert boxes == {"whole.jpg": ((0.0, 0.0, 64.0, 48.0),), "zero.jpg": ((0.0, 0.0, 64.0, 48.0),),
                     "first.jpg": ((0.0, 1.0, 1.0, 1.0),)}  # a 0-based file's -1 is within 1 px: clipped
    assert {p: f.target.boxes for p, f in by_path(zero).items()} == {  # as written
        "whole.jpg": ((1.0, 1.0, 63.0, 47.0),), "zero.jpg": ((0.0, 0.0, 64.0, 48.0),)}
    assert reasons(zero)["first.jpg"] == "box 0 [1, 2, 0, 0]: width ≤ 0"
    assert reasons(devkit)["past.jpg"] == "box 0 [1, 1, 65, 47]: outside the 64×48 image"
    assert reasons(zero)["past.jpg"] == "box 0 [2, 2, 64, 46]: outside the 64×48 image"


def test_a_voc_source_read_in_the_other_convention_is_another_run(tmp_path, cli):
    from augpipe import ExpandOptions, expand
    from augpipe.errors import OutputError

    root = tmp_path / "voc"
    for stem in ("a", "b"):
        img(root / f"{stem}.jpg")
        write(root / f"{stem}.xml", voc_xml([("cat", (11, 6, 30, 20), 0)]))
    out = tmp_path / "out"
    options = dict(copies=0, val_fraction=0, progress=False, workers=1)
    manifest = expand(root, "flips", out, ExpandOptions(**options))
    assert manifest["options"]["voc_zero_based"] is False
    assert expand(root, "flips", out, ExpandOptions(**options))["up_to_date"]
    with pytest.raises(OutputError):
        expand(root, "flips", out, ExpandOptions(voc_zero_based=True, **options))
    import pyarrow.parquet as pq

    expand(root, "flips", out, ExpandOptions(voc_zero_based=True, overwrite=True, **options))
    assert pq.read_table(out).column("objects").to_pylist()[0]["bbox"] == [[11.0, 6.0, 19.0, 14.0]]
    from augpipe.preview import preview_source

    drawn = [preview_source(root, "flips", rows=1, copies=0, val_fraction=0, voc_zero_based=z).rows[0].tiles[0].rgb
             for z in (False, True)]
    assert not np.array_equal(*drawn)  # preview reads the source as expand does
    for flag, box in (((), [10.0, 5.0, 20.0, 15.0]), (("--voc-zero-based",), [11.0, 6.0, 19.0, 14.0])):
        result = cli("expand", root, "-r", "flips", "--out", tmp_path / f"cli{len(flag)}", "-k", "0", "-q", *flag)
        assert result.exit_code == 0, result.output
        assert pq.read_table(tmp_path / f"cli{len(flag)}").column("objects").to_pylist()[0]["bbox"] == [box]


def test_voc_layout_with_image_sets(tmp_path):
    root = tmp_path / "VOC2012"
    for stem in ("2008_001", "2008_002", "2008_003", "2008_004", "2008_005", "2008_006"):
        img(root / f"JPEGImages/{stem}.jpg")
        write(root / f"Annotations/{stem}.xml", voc_xml([("person", (2, 3, 12, 13), 0)], size=None))
    img(root / "SegmentationClass/2008_001.png")  # a mask: not a source here
    write(root / "ImageSets/Main/train.txt", "2008_001\n2008_002\n2008_006\n")
    write(root / "ImageSets/Main/val.txt", "2008_003\n2008_006\n")
    write(root / "ImageSets/Main/trainval.txt", "2008_001\n2008_002\n2008_003\n2008_004\n")
    write(root / "ImageSets/Main/person_train.txt", "2008_001  1\n")
    found = scan(root)
    assert found.format == "voc" and found.classes == ["person"]
    assert {p: f.split for p, f in by_path(found).items()} == {
        "JPEGImages/2008_001.jpg": "train", "JPEGImages/2008_002.jpg": "train",
        "JPEGImages/2008_003.jpg": "validation", "JPEGImages/2008_004.jpg": None}
    assert by_path(found)["JPEGImages/2008_001.jpg"].target.boxes == ((1.0, 2.0, 11.0, 11.0),)
    assert reasons(found) == {
        "JPEGImages/2008_005.jpg": "not in ImageSets/Main's lists (train.txt, trainval.txt, val.txt)",
        "JPEGImages/2008_006.jpg": "in both train.txt and val.txt of ImageSets/Main"}
    assert [(p.check, p.path) for p in found.problems if p.group == "leakage"] == [("exact_leak", "JPEGImages/2008_006.jpg")]


@pytest.mark.parametrize("zero_based", [False, True])
def test_what_the_writer_writes_reads_back_as_the_same_objects(tmp_path, zero_based):
    """Whole pixels in the devkit's convention (a box on half pixels rounds to them), any value 0-based."""
    root = tmp_path / "src"
    boxes = [("dog", (10, 5, 30, 15), 0), ("cat", (40.5 if zero_based else 41, 20, 48, 28), 0)]
    for stem, objects in {"train/a": boxes, "train/b": boxes[1:], "val/c": []}.items():
        img(root / f"{stem}.jpg")
        write(root / f"{stem}.xml", voc_xml(objects))
    found = scan(root, voc_zero_based=zero_based)
    _, again = round_trip(found, root, tmp_path / "out", "voc", {"voc_zero_based": zero_based},
                          voc_zero_based=zero_based)
    assert again.classes == found.classes
    assert {f.relpath: f.split for f in again.files} == {"JPEGImages/a.jpg": "train", "JPEGImages/b.jpg": "train",
                                                         "JPEGImages/c.jpg": "validation"}
    assert_same_boxes(found, root, again, tmp_path / "out")


# ---------------------------------------------------------------- writing

def test_voc_is_written_in_the_devkits_convention(boxes, tmp_path):
    export(boxes, "voc", tmp_path / "v", progress=False)
    export(boxes, "voc", tmp_path / "z", progress=False, voc_zero_based=True)
    assert (tmp_path / "v" / "labelmap.txt").read_text() == "box:::\ndisc:::\n"
    for row in rows(boxes):
        stem = row["image"]["path"].split("/")[-1].rsplit(".", 1)[0]
        devkit = [[float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
                  for b in ET.parse(tmp_path / "v" / "Annotations" / f"{stem}.xml").iter("bndbox")]
        zero = [[float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
                for b in ET.parse(tmp_path / "z" / "Annotations" / f"{stem}.xml").iter("bndbox")]
        for (x, y, w, h), d, z in zip(row["objects"]["bbox"], devkit, zero, strict=True):
            assert d == [np.floor(x + 0.5) + 1, np.floor(y + 0.5) + 1, np.floor(x + w + 0.5), np.floor(y + h + 0.5)]
            assert all(v == int(v) for v in d) and min(d) >= 1
            np.testing.assert_allclose(z, [x, y, x + w, y + h], atol=1e-3)


def test_a_voc_box_of_less_than_a_pixel_at_an_edge_stays_inside_and_reads_back(tmp_path):
    src = coco_source(tmp_path / "src", [[63.6, 0, 0.4, 1], [0, 47.7, 2, 0.3], [10, 10, 5, 5]], ["a.png"])
    expand(src, COPIES_0, tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))
    export(tmp_path / "ds", "voc", tmp_path / "v", progress=False)
    written = [[int(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
               for b in ET.parse(tmp_path / "v" / "Annotations" / "default__a.xml").iter("bndbox")]
    assert written == [[64, 1, 64, 1], [1, 48, 2, 48], [11, 11, 15, 15]]
    again = expand(tmp_path / "v", COPIES_0, tmp_path / "again", ExpandOptions(val_fraction=0, **QUIET))
    assert not again["skipped"] and rows(tmp_path / "again")[0]["objects"]["bbox"] == [
        [63, 0, 1, 1], [0, 47, 2, 1], [10, 10, 5, 5]]


def test_voc_names_with_spaces_read_back_whole(tmp_path):
    src = coco_source(tmp_path / "src", [[10, 10, 5, 5]], ["a b.png", "c.png", "a_b.png"])
    expand(src, COPIES_0, tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))
    export(tmp_path / "ds", "voc", tmp_path / "v", progress=False)
    lines = (tmp_path / "v" / "ImageSets" / "Main" / "train.txt").read_text().split("\n")
    assert all(" " not in line for line in lines) and len([ln for ln in lines if ln]) == 3
    again = expand(tmp_path / "v", COPIES_0, tmp_path / "again", ExpandOptions(val_fraction=0, **QUIET))
    assert not again["skipped"] and len(rows(tmp_path / "again")) == 3


def test_a_voc_export_of_a_class_with_a_colon_lists_it_where_datumaro_reads_it(tmp_path):
    from augpipe.export import export

    expand(coco_named(tmp_path / "d", "person:adult"), "flips", tmp_path / "ds", ExpandOptions(copies=0, **QUIET))
    export(tmp_path / "ds", "voc", tmp_path / "voc", progress=False)
    assert not (tmp_path / "voc" / "labelmap.txt").exists()
    assert json.loads((tmp_path / "voc" / "dataset_meta.json").read_text()) == {"labels": ["person:adult"]}


def test_voc_problems_name_every_bad_object(tmp_path):
    root = tmp_path / "voc"
    img(root / "bad.jpg")
    bad = voc_xml([("cat", (1, 1, 10, 10), 0), ("cat", ("x", 1, 10, 10), 0), ("cat", (10, 1, 5, 10), 0),
                   ("cat", (60, 40, 80, 48), 0)])
    write(root / "bad.xml", bad.replace("<object><name>cat</name>", "<object>", 1).replace(
        "<annotation>", "<annotation>", 1))
    img(root / "edge.jpg")
    write(root / "edge.xml", voc_xml([("dog", (1, 1, 64.5, 48), 0)]))
    img(root / "broken.jpg")
    write(root / "broken.xml", "<annotation><object>")
    img(root / "bare.jpg")
    write(root / "orphan.xml", voc_xml([("cat", (1, 1, 10, 10), 0)]))
    img(root / "good.jpg")
    write(root / "good.xml", voc_xml([("cat", (1, 1, 64, 48), 0)]))
    found = scan(root)
    assert {(p.check, p.path, p.where) for p in found.problems} == {
        ("annotation_unreadable", "bad.jpg", "bad.xml object 0"),  # no <name>
        ("annotation_unreadable", "bad.jpg", "bad.xml object 1"),
        ("box_degenerate", "bad.jpg", "bad.xml object 2"),
        ("box_outside", "bad.jpg", "bad.xml object 3"),
        ("box_outside", "edge.jpg", "edge.xml object 0"),  # within 1 px: clipped, and said
        ("annotation_unreadable", "broken.jpg", "broken.xml"),
        ("no_labels", "bare.jpg", ""),
        ("annotation_unreadable", "orphan.xml", ""),
    }
    assert reasons(found)["bad.jpg"] == "box 0: no <name>"  # the first, as before


def test_a_clean_voc_source_has_no_problems(tmp_path):
    img(tmp_path / "voc/a.jpg")
    write(tmp_path / "voc/a.xml", voc_xml([("cat", (1, 1, 64, 48), 0)]))
    assert scan(tmp_path / "voc").problems == []


def test_a_size_that_is_not_the_images_is_a_health_problem_and_expand_unchanged(tmp_path):
    from augpipe.health import check_source

    root = tmp_path / "voc"
    for stem, size in (("train/right", (64, 48)), ("train/wrong", (128, 48))):
        img(root / f"{stem}.jpg")
        write(root / f"{stem}.xml", voc_xml([("dog", (10, 5, 30, 15), 0)], size=size))
    problems = [p for p in check_source(str(root))["problems"] if p["check"] == "annotation_unreadable"]
    assert [(p["path"], "128×48" in p["detail"] and "64×48" in p["detail"]) for p in problems] == [("train/wrong.jpg", True)]
    assert {f.relpath for f in scan(root).files} == {"train/right.jpg", "train/wrong.jpg"}  # expand reads both
