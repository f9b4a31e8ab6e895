"""Labels across a dataset (augpipe/health/labels.py): the report's figures, and one image under two
labels, images without labels and classes that never occur, found in planted sources of every kind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from augpipe.formats import scan
from augpipe.health.labels import SAMPLE, across, summarise
from augpipe.targets import for_scan, kind_for
from augpipe.targets.base import Audit
from conftest import img, write


def audited(root: Path):
    """The scan, its kind and (path, split, sha256, Audit) of every file, as `inspect` reads them."""
    found = scan(str(root))
    kind = for_scan(found)
    seen = []
    for f in found.files:
        data = (root / f.relpath).read_bytes()
        extra = [(root / name).read_bytes() for name in kind.extra_files(f)]
        h, w = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        seen.append((f.relpath, f.split, hashlib.sha256(data).hexdigest(),
                     kind.audit(f, extra[0] if extra else None, (w, h), found.classes)))
    return found, kind, seen


def checks(problems) -> set[tuple[str, str, str | None]]:
    return {(p.check, p.path, p.split) for p in problems}


def test_summarise_gives_the_figures_by_class_and_split():
    a = Audit(facts={"size": [100, 50], "objects": 2, "classes": {"cat": 1, "dog": 1},
                     "boxes": [[0, 0.5, 0.5], [1, 0.1, 0.2]]})
    b = Audit(facts={"size": [100, 100], "objects": 1, "classes": {"cat": 1}, "boxes": [[0, 0.2, 0.1]]})
    empty = Audit(facts={"size": [10, 10], "objects": 0, "classes": {}, "boxes": []})
    out = summarise([("train", a), ("train", empty), ("validation", b), (None, empty)], ["cat", "dog", "bird"])
    assert out["images"] == {"train": 2, "validation": 1, "unsplit": 1}
    assert out["objects"] == {"train": 2, "validation": 1, "unsplit": 0}
    assert out["images_per_class"] == {"cat": {"train": 1, "validation": 1}, "dog": {"train": 1}, "bird": {}}
    assert out["objects_per_class"] == {"cat": {"train": 1, "validation": 1}, "dog": {"train": 1}, "bird": {}}
    assert out["objects_per_image"] == {"0": 2, "1": 1, "2": 1}
    assert out["empty_images"] == {"train": 1, "validation": 0, "unsplit": 1}
    boxes = out["boxes"]
    assert boxes["count"] == 3 and boxes["width"]["median"] == 0.2 and boxes["height"]["max"] == 0.5
    # aspect in pixels: 50/25, 10/10, 20/10
    assert (boxes["aspect"]["min"], boxes["aspect"]["median"], boxes["aspect"]["max"]) == (1.0, 2.0, 2.0)
    assert sorted(boxes["sample"]) == [[0.1, 0.2, 1.0, 1], [0.2, 0.1, 2.0, 0], [0.5, 0.5, 2.0, 0]]
    assert "mask_pixels" not in out and "keypoints" not in out


def test_the_box_sample_is_capped_and_the_same_for_the_same_data():
    many = [("train", Audit(facts={"size": [100, 100], "objects": 1, "classes": {"a": 1},
                                   "boxes": [[0, (i % 97 + 1) / 100, 0.5]]})) for i in range(5 * SAMPLE + 3)]
    first, again = summarise(many, ["a"])["boxes"], summarise(many, ["a"])["boxes"]
    assert first["count"] == 5 * SAMPLE + 3 and len(first["sample"]) <= SAMPLE and first["sample"] == again["sample"]


def test_one_image_in_two_class_folders_across_splits_and_within_one(tmp_path):
    root = tmp_path / "folders"
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            for i in range(3):
                at = (i * 9 + (name == "dog") * 4, 5 + (split == "val") * 9)
                img(root / split / name / f"{name}{i}.png", boxes=[(*at, 6, 6)])
    (root / "val/dog/leak.png").write_bytes((root / "train/cat/cat0.png").read_bytes())  # a cat, filed as a dog
    (root / "train/dog/again.png").write_bytes((root / "train/cat/cat1.png").read_bytes())
    (root / "train/cat/copy.png").write_bytes((root / "train/cat/cat2.png").read_bytes())  # a duplicate: one label
    found, kind, seen = audited(root)
    problems = across(seen, found.classes, kind)
    assert checks(problems) == {("conflicting_labels", "train/cat/cat0.png", "train"),
                                ("conflicting_labels", "train/cat/cat1.png", "train")}
    leak = next(p for p in problems if p.path == "train/cat/cat0.png")
    assert leak.related == ("val/dog/leak.png",) and "across splits (train, validation)" in leak.detail
    within = next(p for p in problems if p.path == "train/cat/cat1.png")
    assert within.related == ("train/dog/again.png",) and "within train" in within.detail


def yolo(root: Path, names: str, labels: dict[str, str | None]) -> Path:
    write(root / "data.yaml", f"train: images/train\nval: images/val\nnames: {names}\n")
    for k, (name, text) in enumerate(labels.items()):
        img(root / f"images/{name}.png", boxes=[(k * 3 % 50, k * 5 % 30, 8, 8)])
        if text is not None:
            write(root / f"labels/{name}.txt", text)
    return root


def test_yolo_labels_across_files(tmp_path):
    root = yolo(tmp_path / "y", "[a, b, c]", {
        "train/one": "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n", "train/two": "0 0.5 0.5 0.4 0.4\n",
        "train/empty": "", "train/missing": None, "val/three": "0 0.5 0.5 0.2 0.2\n",
        "val/relabelled": "1 0.5 0.5 0.4 0.4\n"})
    (root / "images/val/relabelled.png").write_bytes((root / "images/train/two.png").read_bytes())
    found, kind, seen = audited(root)
    problems = across(seen, found.classes, kind)
    assert checks(problems) == {
        ("conflicting_labels", "images/train/two.png", "train"),
        ("no_labels", "images/train/empty.png", "train"), ("no_labels", "images/train/missing.png", "train"),
        ("class_absent", "c", None)}
    figures = summarise([(s, a) for _, s, _, a in seen], found.classes)
    assert figures["objects_per_class"] == {"a": {"train": 2, "validation": 1}, "b": {"train": 1, "validation": 1},
                                            "c": {}}
    assert figures["empty_images"] == {"train": 2, "validation": 0}


def test_a_class_absent_from_one_split(tmp_path):
    root = yolo(tmp_path / "y", "[a, b]", {"train/one": "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n",
                                           "val/two": "0 0.5 0.5 0.2 0.2\n"})
    found, kind, seen = audited(root)
    problems = across(seen, found.classes, kind)
    assert checks(problems) == {("class_absent", "b", "validation")}
    assert "occurs in train (1) but not in validation (1 images)" in problems[0].detail


def test_masks_across_files_and_their_figures(tmp_path):
    root = tmp_path / "seg"
    write(root / "classes.txt", "background\nroad\ncar\n")
    (root / "masks").mkdir()
    for k, (name, value) in enumerate({"a": 1, "b": 1, "bare": 0}.items()):
        img(root / f"images/{name}.png", w=20, h=10, boxes=[(k, 0, 3, 3)])
        mask = np.zeros((10, 20), np.uint8)
        mask[:5, :4] = value
        Image.fromarray(mask, "L").save(root / f"masks/{name}.png")
    found, kind, seen = audited(root)
    assert checks(across(seen, found.classes, kind)) == {("no_labels", "images/bare.png", None),
                                                        ("class_absent", "car", None)}
    figures = summarise([(s, a) for _, s, _, a in seen], found.classes)
    assert figures["mask_pixels"] == {"background": 3 * 200 - 40, "road": 40}
    assert figures["mask_share"] == {"background": round(560 / 600, 6), "road": round(40 / 600, 6)}


def test_keypoint_visibility_is_summed():
    kind = kind_for("keypoints", keypoint_names=("a", "b"))
    row = {"width": 50, "height": 50, "objects": {"bbox": [[10, 10, 20, 20]] * 2, "category": [0, 0], "id": [0, 1],
                                                  "keypoints": [{"x": [15, 0], "y": [15, 0], "visibility": [2, 0]},
                                                                {"x": [15, 20], "y": [16, 20], "visibility": [1, 2]}]}}
    figures = summarise([("train", kind.audit_row(row, ["person"]))], ["person"])
    assert figures["keypoints"] == {"visible": 2, "hidden": 1, "unlabelled": 1}


def test_a_clean_dataset_has_no_problems_across_files(tmp_path):
    root = yolo(tmp_path / "y", "[a, b]", {"train/one": "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n",
                                           "val/two": "1 0.5 0.5 0.2 0.2\n0 0.2 0.2 0.2 0.2\n"})
    found, kind, seen = audited(root)
    assert found.problems == [] and across(seen, found.classes, kind) == []
    assert all(a.problems == [] for _, _, _, a in seen)
