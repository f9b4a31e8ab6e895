"""The masks format (semantic segmentation): its reader, and reading what its writer writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augpipe.errors import SourceError
from augpipe.formats import scan
from augpipe.formats.base import MaskRef
from conftest import by_path, img, reasons, write
from written import round_trip


def palette_mask(path: Path, w: int = 64, h: int = 48) -> Path:
    """A palette PNG whose indices are 0, 3 and 255."""
    a = np.zeros((h, w), np.uint8)
    a[5:15, 10:30] = 3
    a[0, :] = 255
    im = Image.fromarray(a, "P")
    im.putpalette([v for i in range(256) for v in (i, 255 - i, (i * 7) % 256)])
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def test_masks_images_and_masks_folders(tmp_path):
    root = tmp_path / "seg"
    for split in ("Train", "val"):
        img(root / split / "images/a.jpg")
        palette_mask(root / split / "masks/a.png")
    img(root / "Train/images/b.jpg")
    palette_mask(root / "Train/Masks/b_mask.png")  # folder names in any case, X_mask inside a mask folder too
    img(root / "val/images/nomask.jpg")
    palette_mask(root / "val/masks/orphan.png")
    write(root / "classes.txt", "background\nroad\n\ncar\n")
    found = scan(root)
    assert (found.format, found.task, found.labelled) == ("masks", "segmentation", True)
    assert found.classes == ["background", "road", "2", "car"]
    files = by_path(found)
    assert {p: (f.split, f.target.path) for p, f in files.items()} == {
        "Train/images/a.jpg": ("train", "Train/masks/a.png"),
        "Train/images/b.jpg": ("train", "Train/Masks/b_mask.png"),
        "val/images/a.jpg": ("validation", "val/masks/a.png")}
    for f in files.values():  # listed with its size and time, so a mask changed in place is noticed
        assert isinstance(f.target, MaskRef) and f.target.size > 0 and f.target.mtime_ns > 0
    assert reasons(found) == {"val/images/nomask.jpg": "no mask", "val/masks/orphan.png": "no image for this mask"}
    with Image.open(root / files["val/images/a.jpg"].target.path) as im:  # untouched: indices, not colours
        assert im.mode == "P" and set(np.unique(np.asarray(im)).tolist()) == {0, 3, 255}


def test_masks_voc_and_labels_folders(tmp_path):
    voc = tmp_path / "voc"
    img(voc / "JPEGImages/x.jpg")
    palette_mask(voc / "SegmentationClass/x.png")
    img(voc / "SegmentationObject/x.png")
    img(voc / "JPEGImages/y.jpg")
    found = scan(voc)
    assert found.format == "masks" and found.classes == [] and not found.labelled
    assert by_path(found)["JPEGImages/x.jpg"].target.path == "SegmentationClass/x.png"
    assert found.skipped == [("JPEGImages/y.jpg", "no mask")]
    lab = tmp_path / "lab"
    img(lab / "images/x.jpg")
    palette_mask(lab / "labels/x.png")
    img(lab / "labels/bad.jpg")
    img(lab / "images/bad.jpg")
    found = scan(lab)
    assert by_path(found)["images/x.jpg"].target.path == "labels/x.png"
    assert reasons(found) == {"images/bad.jpg": "no mask",
                              "labels/bad.jpg": "a JPEG mask (lossy: its pixels are not class indices): use PNG"}


def test_masks_roboflow_beside_with_classes_csv(tmp_path):
    root = tmp_path / "rf"
    for split, stem in (("train", "p"), ("valid", "q")):
        img(root / split / f"{stem}.jpg")
        palette_mask(root / split / f"{stem}_mask.png")
        write(root / split / "_classes.csv", "Pixel Value, Class\n0, background\n1, crack\n3, hole\n")
    found = scan(root)
    assert found.format == "masks" and found.classes == ["background", "crack", "2", "hole"]
    assert {p: (f.split, f.target.path) for p, f in by_path(found).items()} == {
        "train/p.jpg": ("train", "train/p_mask.png"), "valid/q.jpg": ("validation", "valid/q_mask.png")}
    write(root / "valid/_classes.csv", "Pixel Value, Class\n0, background\n1, crack\n")
    with pytest.raises(SourceError, match="name different classes"):
        scan(root)
    write(root / "valid/_classes.csv", "Pixel Value, Class\nzero, background\n1, crack\n")
    with pytest.raises(SourceError, match="valid/_classes.csv: pixel value 'zero' is not a whole number"):
        scan(root)


def test_what_the_writer_writes_reads_back_as_the_same_masks(tmp_path):
    root = tmp_path / "src"
    for split in ("train", "val"):
        img(root / split / "images/a.jpg")
        palette_mask(root / split / "masks/a.png")
    write(root / "classes.txt", "background\nthing\n")
    found = scan(root)
    _, again = round_trip(found, root, tmp_path / "out", "masks", {})
    assert (again.format, again.classes) == ("masks", found.classes)
    masks = {f.relpath: (f.split, (tmp_path / "out" / f.target.path).read_bytes()) for f in again.files}
    assert masks == {f"{s}/images/a.jpg": (split, (root / s / "masks/a.png").read_bytes())
                     for s, split in (("train", "train"), ("val", "validation"))}


def test_masks_problems_name_images_without_masks_and_masks_that_cannot_be(tmp_path):
    root = tmp_path / "seg"
    for name in ("a", "b", "c", "bare", "lossy"):
        img(root / f"images/{name}.jpg")
    for name in ("a", "b", "c"):
        palette_mask(root / f"masks/{name}.png")
    palette_mask(root / "masks/orphan.png")
    img(root / "masks/lossy.jpg")
    found = scan(root)
    assert {(p.check, p.path) for p in found.problems} == {
        ("no_labels", "images/bare.jpg"), ("no_labels", "images/lossy.jpg"),
        ("annotation_unreadable", "masks/lossy.jpg"), ("annotation_unreadable", "masks/orphan.png")}


def test_a_clean_masks_source_has_no_problems(tmp_path):
    img(tmp_path / "seg/images/a.jpg")
    palette_mask(tmp_path / "seg/masks/a.png")
    assert scan(tmp_path / "seg").problems == []


def test_colour_masks_are_skipped_for_one_reason_that_says_what_to_do(tmp_path):
    """Masks saved as RGB colours (as many tools write them): every input skipped for one reason,
    counted once, that says how to store a mask (the new user's: a reason a file, each "(1)")."""
    from augpipe import ExpandOptions, expand
    from conftest import make_scenes

    src = make_scenes(tmp_path / "src", n=4, fmt="masks")
    for mask in (src / "masks").glob("*.png"):
        with Image.open(mask) as im:
            im.convert("RGB").save(mask)
    with pytest.raises(SourceError) as error:
        expand(src, "flips", tmp_path / "out", ExpandOptions(workers=1, progress=False))
    assert str(error.value).endswith(": a mask is RGB, not class indices (mode L or P): save each class's index as a "
                                     "grey (L) or palette (P) PNG, not its colour (4)"), str(error.value)
