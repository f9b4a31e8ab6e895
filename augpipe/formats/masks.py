"""Semantic segmentation: each image has a mask, an image of class indices with the same stem.

- Layouts: `images/` beside `masks/`, `annotations/` or `labels/` (a PNG there is a mask; YOLO's
  `.txt` labels are not); VOC's `JPEGImages/` beside `SegmentationClass/`; `X_mask.png` beside
  `X.jpg` (Roboflow). A mask folder may also hold `X_mask.png`. Folder names match in any case;
  stems exactly. Split folders (train/val/valid/test) anywhere above the image give its split.
- Masks are PNG, BMP or TIFF (lossless: their values are class indices); a JPEG mask is refused.
  They are not decoded here: the workers read them with PIL, which keeps palette indices.
- Class names: `classes.txt` (one a line, the index the line number) or Roboflow's
  `_classes.csv` (`Pixel Value, Class`), wherever they are (all must agree); else none.
- An image without a mask is skipped ("no mask"); a mask without an image is recorded. A mask is
  never a source itself. VOC's `SegmentationObject/` (instance ids) is ignored.

Written (`augpipe export --format masks`): {split}/images/…, {split}/masks/….png (the shards'
masks, byte for byte), classes.txt.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict

from augpipe.errors import SourceError
from augpipe.formats.base import MaskRef, Scan, SourceFile, is_image, suffix as file_suffix
from augpipe.formats.common import (
    SPLIT_DIR, file_name, finish, read_files, share, split_of_path, stem, text, usable, without_suffix,
)
from augpipe.health.base import Problem

name = "masks"
kinds = ("segmentation",)

IMAGE_FOLDERS = {"images": ("masks", "annotations", "labels"), "jpegimages": ("segmentationclass",)}
MASK_FOLDERS = {"masks", "annotations", "labels", "segmentationclass", "segmentationclassaug"}
IGNORED_FOLDERS = {"segmentationobject"}
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
LOSSY = (".jpg", ".jpeg")
CLASS_FILES = ("classes.txt", "_classes.csv")


def _key(folders: list[str], name: str) -> tuple[str, str]:
    return "/".join(f.lower() for f in folders), name


def _is_mask(path: str) -> bool:
    folders = [f.lower() for f in path.split("/")[:-1]]
    return any(f in MASK_FOLDERS for f in folders) or stem(path).endswith("_mask")


def _pairs(entries: list):
    """({image: mask}, [images without one], {mask: why unusable}, [masks without an image])."""
    masks: dict[tuple[str, str], str] = {}
    refused: dict[str, str] = {}
    images = []
    for e in entries:
        if not is_image(e.name):
            continue
        parts = e.name.split("/")
        if any(p.lower() in IGNORED_FOLDERS for p in parts[:-1]):
            continue
        if not _is_mask(e.name):
            images.append(e.name)
            continue
        suffix = file_suffix(e.name).lower()
        if suffix in LOSSY:
            refused[e.name] = "a JPEG mask (lossy: its pixels are not class indices): use PNG"
        elif suffix in MASK_SUFFIXES:
            masks.setdefault(_key(parts[:-1], stem(e.name)), e.name)
    pairs, missing = {}, []
    for path in images:
        folders, s = path.split("/")[:-1], stem(path)
        candidates = []
        for i in range(len(folders) - 1, -1, -1):
            if folders[i].lower() in IMAGE_FOLDERS:
                for m in IMAGE_FOLDERS[folders[i].lower()]:
                    there = folders[:i] + [m] + folders[i + 1:]
                    candidates += [_key(there, s), _key(there, s + "_mask")]
                break
        candidates.append(_key(folders, s + "_mask"))
        mask = next((masks[c] for c in candidates if c in masks), None)
        if mask is None:
            missing.append(path)
        else:
            pairs[path] = mask
    used = set(pairs.values())
    orphans = [m for m in masks.values() if m not in used]
    return pairs, missing, refused, orphans


def matches(entries: list) -> float | None:
    """The share of the images with a mask (None: no image has one)."""
    pairs, missing, _, _ = _pairs(entries)
    return share(len(pairs), len(pairs) + len(missing))


def read(store, entries: list, layout: str = "auto") -> Scan:
    skipped: list[tuple[str, str]] = []
    entries = usable(entries, skipped)
    by_name = {e.name: e for e in entries}
    pairs, missing, refused, orphans = _pairs(entries)
    skipped += [(p, "no mask") for p in missing]
    skipped += sorted(refused.items())
    skipped += [(m, "no image for this mask") for m in orphans]
    class_files = [e.name for e in entries if e.name.rsplit("/", 1)[-1] in CLASS_FILES]
    raw = read_files(store, class_files)
    classes = _classes(store, raw)
    files = [SourceFile(p, split_of_path(p), None, by_name[p].size, by_name[p].mtime_ns, MaskRef(m, by_name[m].size, by_name[m].mtime_ns))
             for p, m in pairs.items()]
    problems = ([Problem("no_labels", p, detail="no mask") for p in missing]
                + [Problem("annotation_unreadable", m, detail=why) for m, why in sorted(refused.items())]
                + [Problem("annotation_unreadable", m, detail="no image for this mask") for m in orphans])
    return finish(store, files, skipped, classes, "segmentation", "masks",
                  [(n, d) for n, d in raw.items() if isinstance(d, bytes)], labelled=bool(classes), problems=problems)


def _classes(store, raw: dict) -> list[str]:
    """The class names all class files agree on (one list), else SourceError naming two that differ."""
    found: list[tuple[str, list[str]]] = []
    for name, data in raw.items():
        try:
            if isinstance(data, str):
                raise ValueError(data)
            content = text(data, name)
            names = _classes_csv(content) if name.endswith(".csv") else _classes_txt(content)
        except ValueError as exc:
            raise SourceError(f"{store.display(name)}: {exc}") from None
        found.append((name, names))
    for name, names in found[1:]:
        if names != found[0][1]:
            raise SourceError(f"{store.display(found[0][0])} and {store.display(name)} name different classes "
                              f"({', '.join(found[0][1][:4])} / {', '.join(names[:4])})")
    return found[0][1] if found else []


def _classes_txt(content: str) -> list[str]:
    lines = [line.strip() for line in content.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return [line or str(i) for i, line in enumerate(lines)]


def _classes_csv(content: str) -> list[str]:
    """Roboflow's `Pixel Value, Class`: the class of each mask value (a gap named by its value)."""
    by_value: dict[int, str] = {}
    rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO(content))]
    rows = [r for r in rows if any(r)]
    if rows and rows[0][0].lower().replace(" ", "") == "pixelvalue":
        rows = rows[1:]  # the header
    for cells in rows:
        if len(cells) < 2:
            raise ValueError(f"expected 'Pixel Value, Class' rows, not '{','.join(cells)[:40]}'")
        try:
            value = int(cells[0])
        except ValueError:
            raise ValueError(f"pixel value '{cells[0][:20]}' is not a whole number") from None
        if not 0 <= value <= 255:
            raise ValueError(f"pixel value {value} is not 0..255")
        by_value[value] = cells[1]
    return [by_value.get(i, str(i)) for i in range(max(by_value) + 1)] if by_value else []


# ---------------------------------------------------------------- writing

OPTIONS = {}
NAME_COLUMNS = ()


def options(given: dict, header, where: str) -> dict:
    return {}


def keeps_masks(options: dict) -> bool:
    return False


def image_name(row: dict, classes: list[str]) -> str:
    return file_name(row)


def files(split: str, name: str, options: dict) -> list[str]:
    return [f"{SPLIT_DIR[split]}/images/{name}", f"{SPLIT_DIR[split]}/masks/{without_suffix(name)}.png"]


def write(store, items, header, options: dict) -> dict:
    counts = defaultdict(int)
    for item in items:
        image, mask = files(item.split, item.name, options)
        store.write_bytes(image, item.data, sync=False)
        store.write_bytes(mask, item.target, sync=False)
        counts[item.split] += 1
    if header.classes:
        store.write_bytes("classes.txt", "".join(f"{c}\n" for c in header.classes).encode())
    return {"images": dict(counts)}
