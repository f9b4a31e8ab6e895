"""datumaro's own importers read augpipe's exports: coco_instances (the images/<split>/ layout)
and voc_detection (labelmap.txt, 1-based boxes); counts and boxes as the shards'."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("datumaro")

from exported import box_error, masked, run_export, shards  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return masked(tmp_path_factory.mktemp("datumaro") / "masked")


def imported(path: Path, fmt: str):
    from datumaro.components.dataset import Dataset

    logging.getLogger().setLevel(logging.WARNING)
    return Dataset.import_from(str(path), fmt)


def boxes_of(item, annotation_type) -> list[list[float]]:
    return [[a.x, a.y, a.w, a.h] for a in item.annotations if a.type == annotation_type]


def test_coco_instances(dataset, tmp_path):
    from datumaro.components.annotation import AnnotationType

    out = run_export(dataset, "coco", tmp_path / "coco")
    held = shards(dataset)
    found = imported(out, "coco_instances")
    assert {s: len(found.get_subset(s)) for s in found.subsets()} == \
        {s: sum(1 for k in held if k[0] == s) for s in ("train", "val")}
    names = [c.name for c in found.categories()[AnnotationType.label]]
    for item in found:
        assert item.media.has_data and Path(item.media.path).is_file()
        objects = held[(item.subset, Path(item.media.path).relative_to(out / "images" / item.subset).as_posix())]
        boxes = sorted((a for a in item.annotations if a.type == AnnotationType.bbox), key=lambda a: a.id)
        shapes = [a for a in item.annotations if a.type in (AnnotationType.polygon, AnnotationType.mask)]
        # every object's segmentation read (an outline of several parts: a polygon a part, one group)
        assert len(boxes) == len(objects) and len({a.group for a in shapes}) == len(objects)
        got = [[b.x, b.y, b.w, b.h] for b in boxes]
        assert box_error(got, [o["box"] for o in objects]) <= 0.02  # datumaro rounds corners to 2 decimals
        assert [names[b.label] for b in boxes] == [("box", "disc")[o["category"]] for o in objects]


def test_voc_detection(dataset, tmp_path):
    from datumaro.components.annotation import AnnotationType

    out = run_export(dataset, "voc", tmp_path / "voc")
    held = {(s, name.replace("/", "__").rsplit(".", 1)[0]): o for (s, name), o in shards(dataset).items()}
    found = imported(out, "voc_detection")
    assert {s: len(found.get_subset(s)) for s in found.subsets()} == \
        {s: sum(1 for k in held if k[0] == s) for s in ("train", "val")}
    names = [c.name for c in found.categories()[AnnotationType.label]]
    worst = 0.0
    for item in found:
        assert item.media.has_data
        objects = held[(item.subset, item.id)]
        boxes = [a for a in item.annotations if a.type == AnnotationType.bbox]
        assert [names[b.label] for b in boxes] == [("box", "disc")[o["category"]] for o in objects]
        # datumaro keeps the devkit's numbers as written: x = xmin, so 1-based
        got = np.array([[b.x - 1, b.y - 1, b.x - 1 + b.w + 1, b.y - 1 + b.h + 1] for b in boxes]).reshape(-1, 4)
        want = np.array([[x, y, x + w, y + h] for x, y, w, h in (o["box"] for o in objects)]).reshape(-1, 4)
        worst = max(worst, box_error(got, want))
    assert worst <= 0.5 + 1e-3


def test_voc_detection_with_a_colon_in_a_class_name(tmp_path):
    from datumaro.components.annotation import AnnotationType

    from augpipe import ExpandOptions, expand
    from augpipe.export import export
    from conftest import make_scenes

    data = make_scenes(tmp_path / "data", n=4, fmt="coco")
    book = data / "annotations" / "instances_default.json"
    book.write_text(book.read_text().replace('"name": "box"', '"name": "box:red"'))
    expand(data, "flips", tmp_path / "ds", ExpandOptions(copies=0, workers=1, progress=False, val_fraction=0))
    export(tmp_path / "ds", "voc", tmp_path / "voc", progress=False)
    found = imported(tmp_path / "voc", "voc_detection")
    names = [c.name for c in found.categories()[AnnotationType.label]]
    assert "box:red" in names and "disc" in names
    used = {names[a.label] for item in found for a in item.annotations if a.type == AnnotationType.bbox}
    assert "box:red" in used
