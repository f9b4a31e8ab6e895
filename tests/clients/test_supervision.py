"""supervision's own loaders read augpipe's exports at the shards' boxes and masks: from_coco
(force_masks), from_yolo (detect and segment) and from_pascal_voc (the devkit's 1-based
convention, no negative coordinate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

sv = pytest.importorskip("supervision")

from exported import box_error, boxes_only, made_with, masked, mixed, polygon_box, run_export, shards  # noqa: E402


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("supervision")
    return {"masked": masked(root / "masked"), "boxes": boxes_only(root / "boxes"), "mixed": mixed(root / "mixed")}


def xyxy(boxes) -> np.ndarray:
    b = np.asarray(boxes, float).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def covers(filled: np.ndarray, mask: np.ndarray) -> bool:
    """supervision fills COCO polygons with cv2.fillPoly, which takes the pixels on the outline's
    right and bottom edges too: the mask, and at most a pixel more to its right and below (RLE
    masks come back exactly)."""
    grown = mask.copy()
    grown[:, 1:] |= mask[:, :-1]
    grown[1:, :] |= grown[:-1, :].copy()
    return bool((filled >= mask).all() and (filled <= grown).all())


def folders(root: Path) -> list[Path]:
    """supervision lists one folder's images, not below it."""
    return sorted({p.parent for p in root.rglob("*.png")})


@pytest.mark.parametrize("which", ["masked", "mixed"])
def test_from_coco_with_masks(datasets, tmp_path, which):
    ds = datasets[which]
    out = run_export(ds, "coco", tmp_path / "coco")
    held, mosaics = shards(ds), made_with(ds, "Mosaic")
    assert bool(mosaics) == (which == "mixed")
    seen = set()
    for split in ("train", "val"):
        images = out / "images" / split
        loaded = sv.DetectionDataset.from_coco(str(images), str(out / "annotations" / f"instances_{split}.json"),
                                               force_masks=True)
        assert len(loaded) == sum(1 for k in held if k[0] == split)
        for path, _, detections in loaded:
            name = (split, Path(path).relative_to(images.resolve()).as_posix())
            seen.add(name)
            objects = held[name]
            assert box_error(detections.xyxy, xyxy([o["box"] for o in objects])) <= 1e-3
            assert [loaded.classes[c] for c in detections.class_id] == [("box", "disc")[o["category"]] for o in objects]
            for mask, o in zip(detections.mask, objects, strict=True):
                assert covers(mask, o["mask"].astype(bool))
    assert seen == set(held) and mosaics <= seen


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_from_yolo(datasets, tmp_path, task):
    ds = datasets["masked"]
    out = run_export(ds, "yolo", tmp_path / "yolo", yolo_task=task)
    held = shards(ds)
    worst, seen = 0.0, 0
    for folder in folders(out / "images"):
        labels = out / "labels" / folder.relative_to(out / "images")
        loaded = sv.DetectionDataset.from_yolo(str(folder), str(labels), str(out / "data.yaml"))
        split = folder.relative_to(out / "images").parts[0]
        for path, _, detections in loaded:
            objects = held[(split, Path(path).resolve().relative_to((out / "images" / split).resolve()).as_posix())]
            want = [polygon_box(o["mask"], o["box"]) if task == "segment" else o["box"] for o in objects]
            worst = max(worst, box_error(detections.xyxy, xyxy(want)))
            seen += 1
    assert seen == len(held) and worst <= 0.5


@pytest.mark.parametrize("which", ["masked", "boxes"])
def test_from_pascal_voc_is_at_the_shards_boxes(datasets, tmp_path, which):
    ds = datasets[which]
    out = run_export(ds, "voc", tmp_path / "voc")
    held = {name.replace("/", "__").rsplit(".", 1)[0]: objects for (_, name), objects in shards(ds).items()}
    loaded = sv.DetectionDataset.from_pascal_voc(str(out / "JPEGImages"), str(out / "Annotations"))
    assert len(loaded) == len(held)
    worst = 0.0
    for path, _, detections in loaded:
        want = xyxy([o["box"] for o in held[Path(path).stem]])
        assert (detections.xyxy >= 0).all()
        worst = max(worst, box_error(detections.xyxy, want))
    assert worst <= 0.5 + 1e-3  # rounded to whole pixels
