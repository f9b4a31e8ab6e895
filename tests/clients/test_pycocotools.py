"""pycocotools reads augpipe's COCO export: annToMask gives back every shard mask, `area` is the
mask's, COCOeval of the export against itself gives AP 1.0 for bbox and segm; and the outlines
export traces, filled by pycocotools, give back random masks exactly."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pycocotools")

from exported import box_error, boxes_only, made_with, masked, mixed, run_export, shards  # noqa: E402


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pycocotools")
    return {"masked": masked(root / "masked"), "boxes": boxes_only(root / "boxes"), "mixed": mixed(root / "mixed")}


def coco(path: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def self_eval(gt, iou_type: str) -> float:
    """AP@[.5:.95] of the annotations taken as detections of score 1."""
    from pycocotools.cocoeval import COCOeval

    detections = [{**a, "score": 1.0} for a in gt.dataset["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


@pytest.mark.parametrize("which", ["masked", "mixed"])
@pytest.mark.parametrize("layout", ["images", "split"])
def test_every_mask_comes_back_and_cocoeval_scores_itself_1(datasets, tmp_path, layout, which):
    """Every box and mask of every row, mosaics with pastes and blends included."""
    ds = datasets[which]
    out = run_export(ds, "coco", tmp_path / "coco", coco_layout=layout)
    held, mosaics = shards(ds), made_with(ds, "Mosaic")
    assert bool(mosaics) == (which == "mixed")
    rle, seen = 0, set()
    for split in ("train", "val"):
        gt = coco(out / "annotations" / f"instances_{split}.json")
        for image in gt.dataset["images"]:
            seen.add((split, image["file_name"]))
            folder = out / "images" / split if layout == "images" else out / split
            assert (folder / image["file_name"]).is_file()
            objects = held[(split, image["file_name"])]
            annotations = gt.loadAnns(gt.getAnnIds(imgIds=[image["id"]]))
            assert len(annotations) == len(objects)
            for a, o in zip(annotations, objects):
                assert a["segmentation"] and a["iscrowd"] == 0
                assert np.array_equal(gt.annToMask(a), o["mask"])
                assert a["area"] == int(o["mask"].sum())
                assert box_error(a["bbox"], o["box"]) <= 1e-3
                rle += isinstance(a["segmentation"], dict)
        assert self_eval(gt, "bbox") == 1.0 and self_eval(gt, "segm") == 1.0
    assert rle  # the rings' holes went as RLE
    assert seen == set(held) and mosaics <= seen


def test_without_masks_boxes_and_their_areas(datasets, tmp_path):
    ds = datasets["boxes"]
    out = run_export(ds, "coco", tmp_path / "coco")
    gt = coco(out / "annotations" / "instances_train.json")
    held = shards(ds)
    for image in gt.dataset["images"]:
        annotations = gt.loadAnns(gt.getAnnIds(imgIds=[image["id"]]))
        for a, o in zip(annotations, held[("train", image["file_name"])], strict=True):
            assert box_error(a["bbox"], o["box"]) <= 1e-3
            assert a["area"] == pytest.approx(o["box"][2] * o["box"][3], abs=1e-2)
    assert self_eval(gt, "bbox") == 1.0
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        gt.info()  # COCO's info block, which pycocotools prints
    assert "description: exported by augpipe" in printed.getvalue()


def random_masks(n: int, seed: int = 0):
    import cv2

    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(3, 40, 2))
        noise = cv2.GaussianBlur(rng.random((h, w)), (0, 0), float(rng.uniform(0.3, 3)))
        mask = (noise > rng.uniform(0.3, 0.7)).astype(np.uint8)
        if mask.any():
            yield mask


def test_traced_outlines_fill_back_to_the_mask_by_pycocotools(tmp_path):
    from pycocotools import mask as cocomask

    from augpipe.formats.coco import segmentation as coco_segmentation
    from augpipe.formats.common import rings
    from augpipe.formats.yolo import polygon
    from augpipe.targets.boxes import fill_polygon
    from exported import extent

    polygons = 0
    for mask in random_masks(1500):
        h, w = mask.shape
        segmentation = coco_segmentation(mask)
        if isinstance(segmentation, list):
            polygons += 1
            decoded = cocomask.decode(cocomask.merge(cocomask.frPyObjects(segmentation, h, w)))
            for ring in rings(mask):  # every vertex on a pixel corner
                assert ring.dtype.kind == "i"
        else:
            decoded = cocomask.decode(segmentation)
            assert _holes(mask)  # RLE only where a polygon cannot carry the mask
        assert np.array_equal(decoded, mask)
        points = np.asarray(polygon(mask, extent(mask)), float).reshape(-1, 2)
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        assert [x0, y0, x1 - x0, y1 - y0] == extent(mask)  # the box derived from the YOLO polygon
        if not _holes(mask):
            filled = np.zeros_like(mask)
            fill_polygon(filled, points)  # one ring, parts joined by seams: the same pixels
            assert np.array_equal(filled, mask)
    assert polygons > 300


def _holes(mask: np.ndarray) -> bool:
    """Background that the outside cannot reach through edge-sharing pixels."""
    import cv2

    outside = np.pad(1 - mask, 1).astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2, flags=4)
    return bool((outside == 1).any())


def test_the_bounded_rle_decoder_reads_what_pycocotools_writes():
    """augpipe decodes compressed RLE itself, bounded by the image's pixels (issue 15): every
    string pycocotools' encoder writes, empty, full, and random masks of any shape, decodes to
    the same mask as pycocotools' own decoder."""
    from pycocotools import mask as coco_mask

    from augpipe.targets.boxes import _rle

    rng = np.random.default_rng(0)
    for k in range(200):
        h, w = (int(v) for v in rng.integers(1, 300, 2))
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        if k % 3 == 0:
            mask[:] = k % 2
        encoded = coco_mask.encode(np.asfortranarray(mask))
        ours = _rle({"size": [h, w], "counts": encoded["counts"].decode()}, (h, w))
        assert np.array_equal(ours, coco_mask.decode(encoded)), (k, h, w)


def test_keypoints_export_loads_with_the_shards_keypoints(tmp_path):
    """A flipped COCO keypoints dataset: loadAnns gives each object's keypoints as the shards hold
    them, num_keypoints the labelled ones, and the category its names and skeleton."""
    from augpipe import ExpandOptions, expand
    from augpipe.recipe import parse_recipe
    from keypointed import FLIP, NAMES, SKELETON, by_name, coco_keypoints, points

    expand(coco_keypoints(tmp_path / "src"), parse_recipe(FLIP), tmp_path / "ds",
           ExpandOptions(workers=1, progress=False, val_fraction=0))
    out = run_export(tmp_path / "ds", "coco", tmp_path / "coco")
    gt = coco(out / "annotations" / "instances_train.json")
    assert [(c["keypoints"], c["skeleton"]) for c in gt.loadCats(gt.getCatIds())] == [(NAMES, SKELETON)]
    rows = by_name(tmp_path / "ds")
    assert len(gt.getImgIds()) == len(rows)
    for image in gt.loadImgs(gt.getImgIds()):
        held = points(rows[image["file_name"]])
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[image["id"]]))
        np.testing.assert_allclose([a["keypoints"] for a in anns], held.reshape(len(held), -1), atol=1e-3)
        assert [a["num_keypoints"] for a in anns] == [int((p[:, 2] > 0).sum()) for p in held]
