"""What every source reader produces: the files to expand, their targets, the class names.

A reader turns a listing of the source (one `store.list_files()`) into a `Scan`. Annotations
are parsed in the driver, once; they travel to the workers inside each `SourceFile` as plain,
picklable data, and are validated against the image's real size in the worker (`targets`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from augpipe.decode import SUPPORTED_SUFFIXES
from augpipe.errors import SourceError

# Split folder names, matched case-insensitively; `valid` is Roboflow's.
SPLIT_FOLDERS = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation",
                 "test": "test"}


@dataclass(frozen=True, slots=True)
class Objects:
    """One image's objects, as its annotation file gives them."""

    boxes: tuple[tuple[float, float, float, float], ...]  # COCO [x, y, w, h], absolute pixels
    categories: tuple[int, ...]  # indices into Scan.classes
    ids: tuple[int, ...] = ()  # the annotation's own ids (COCO), else 0..n-1
    # Per object, an instance mask or None: ("polygon", ((x1, y1, x2, y2, ...), ...)) in the
    # boxes' coordinates, or ("rle", {"size": [h, w], "counts": ...}) as COCO writes it.
    segments: tuple | None = None
    # YOLO: boxes are (cx, cy, w, h) and polygons fractions of the image's size, converted in the
    # worker once the size is known.
    normalised: bool = False
    iscrowd: tuple[int, ...] = ()  # COCO's flag per object (0 or 1); () for every other source: all 0


@dataclass(frozen=True, slots=True)
class MaskRef:
    """A semantic mask: another file of the source, its pixel values the class indices."""

    path: str
    size: int = 0  # as listed: with --split-by path, a mask changed in place is noticed by these
    mtime_ns: int = 0


@dataclass(frozen=True, slots=True)
class SourceFile:
    relpath: str  # POSIX path relative to the root: the identity of a source
    split: str | None  # from a split folder or split file, else None (decided by hashing)
    class_name: str | None  # classification: the class; None when unlabelled or another task
    size: int
    mtime_ns: int = 0
    target: Objects | MaskRef | None = None  # detection or segmentation


@dataclass
class Scan:
    root: str  # as the user gave it: a path or a URI
    files: list[SourceFile]
    classes: list[str]
    labelled: bool
    split_folders: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)
    task: str = "classification"
    format: str = "imagefolder"
    annotations: str = ""  # sha256 of the annotation files read: part of the run's identity
    warnings: list[str] = field(default_factory=list)  # how --format auto chose, when it was not clear-cut
    category_ids: list[int] | None = None  # COCO: each class's category id in the source, kept by the export


def is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in SUPPORTED_SUFFIXES


def digest(parts: list[tuple[str, bytes]]) -> str:
    """One sha256 over (name, bytes) pairs: what the annotations were when the run was planned."""
    h = hashlib.sha256()
    for name, data in sorted(parts):
        h.update(name.encode("utf-8", "surrogateescape") + b"\x00" + hashlib.sha256(data).digest())
    return h.hexdigest()


def split_of_folder(name: str) -> str | None:
    return SPLIT_FOLDERS.get(name.lower())


def no_images(where: str) -> SourceError:
    return SourceError(f"no images found in {where} (looked for {', '.join(SUPPORTED_SUFFIXES)})")
