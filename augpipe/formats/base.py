"""The contract of a format, and what its two sides read and write.

A format is a module of `augpipe.formats` (`formats/<name>.py`) holding its reading and its
writing side by side (the `Format` protocol below). Its reader turns a listing of the source (one
`store.list_files()`) into a `Scan`; annotations are parsed in the driver, once, and travel to the
workers inside each `SourceFile` as plain, picklable data, validated against the image's real
size in the worker (`targets`). Its writer takes the rows of an expanded dataset as `Item`s, each
detection target the same `Objects` the readers produce.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from augpipe.errors import SourceError, one_of

# Split folder names, matched case-insensitively; `valid` is Roboflow's.
SPLIT_FOLDERS = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation",
                 "test": "test"}


@dataclass(frozen=True, slots=True)
class Objects:
    """One image's objects: what a reader gives and a writer takes, in the box convention its
    annotation file uses (`box_format` on `canvas`, like torchvision's BoundingBoxes)."""

    boxes: tuple[tuple[float, float, float, float], ...]
    categories: tuple[int, ...]  # indices into the classes
    ids: tuple[int, ...] = ()  # the annotation's own ids (COCO), else 0..n-1
    # Per object, an instance mask or None: ("polygon", ((x1, y1, x2, y2, ...), ...)) in the
    # boxes' coordinates, ("rle", {"size": [h, w], "counts": ...}) as COCO writes it, or ("png",
    # bytes) as the shards hold it (0 outside the object).
    segments: tuple | None = None
    # "xywh": COCO's [x, y, w, h] in pixels; "cxcywhn": YOLO's centre and size, fractions of the
    # canvas (the worker converts them once the image's size is known)
    box_format: str = "xywh"
    iscrowd: tuple[int, ...] = ()  # COCO's flag per object (0 or 1); () for every other source: all 0
    canvas: tuple[int, int] | None = None  # (width, height) when known; a reader's: the decoded image's
    fields: dict[str, tuple] = field(default_factory=dict)  # per-object values a target kind adds

    @property
    def normalised(self) -> bool:
        return self.box_format == "cxcywhn"

    def xywh(self) -> tuple[tuple[float, float, float, float], ...]:
        """The boxes as COCO's [x, y, w, h] in pixels (normalised ones on the canvas)."""
        if not self.normalised:
            return self.boxes
        w, h = self.canvas
        return tuple(((cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h) for cx, cy, bw, bh in self.boxes)


@dataclass(frozen=True, slots=True)
class MaskRef:
    """A semantic mask: another file of the source, its pixel values the class indices."""

    path: str
    size: int = 0  # as listed: with --split-by path, a mask changed in place is noticed by these
    mtime_ns: int = 0
    values: tuple[int, ...] | None = None  # the values it holds, once read (--balance reads them)


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
    category_supercategories: list[str] | None = None  # COCO: each class's supercategory, kept likewise
    kind_options: dict = field(default_factory=dict)  # per-dataset values the target kind needs
    # where each object of an image was read, where the format says more than its position
    # (YOLO: "labels/x.txt line 3"): the health report's problems name it
    places: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # every label problem found while reading the annotations (augpipe.health.base.Problem), all of
    # a file's, not only the first (which `skipped` gives as the reason the image is skipped)
    problems: list = field(default_factory=list)

    def within(self, max_pixels: int) -> Scan:
        """This scan less the files larger than any image of `max_pixels` pixels could be, skipped
        as they are listed: a 3 GB file that is no image was read whole, twice over in memory, to
        learn it is not one. 32 bytes a pixel and 64 MB: 16-bit RGBA uncompressed is 8, and a
        multi-page TIFF holds pages after the first it is read by."""
        limit = max_pixels * 32 + (64 << 20)
        large = [f for f in self.files if f.size > limit]
        if not large:
            return self
        why = (f"too large a file for an image of at most {max_pixels:,} pixels (--max-pixels): more than "
               f"{limit / 1e6:,.0f} MB")
        return dataclasses.replace(self, files=[f for f in self.files if f.size <= limit],
                                   skipped=[*self.skipped, *((f.relpath, f"{why} ({f.size / 1e6:,.0f} MB)") for f in large)])


class EverySkipped(SourceError):
    """No image of a source is usable: the message, and the scan as it was (its skips and its
    problems), which `inspect` reports."""

    def __init__(self, message: str, scan: Scan):
        super().__init__(message)
        self.scan = scan


# ---------------------------------------------------------------- the writing side

@dataclass(frozen=True)
class Header:
    """What a writer is told of the dataset beside its rows: its kind, classes and per-dataset values."""

    kind: str
    classes: list[str]
    instance_masks: bool = False  # detection: the objects carry masks
    category_ids: list[int] | None = None  # COCO's ids of the classes, when the source was COCO
    kind_options: dict = field(default_factory=dict)  # what the kind records (Target.manifest_fields)
    category_supercategories: list[str] | None = None  # COCO's supercategories of the classes, likewise


@dataclass(frozen=True, slots=True)
class Item:
    """One image for a writer: its split, its name in the format's image folder, its bytes as the
    shards hold them, and its target (detection: Objects; segmentation: the mask PNG; a
    classification image's class is the first folder of its name)."""

    split: str  # train | validation | test
    name: str
    data: bytes
    width: int
    height: int
    target: Objects | bytes | None = None


def item_of(split: str, name: str, row: dict) -> Item:
    """A shard row as an Item: the one place rows become the formats' annotation type."""
    width, height = _row_size(name, row)
    target = None
    if "objects" in row:
        if why := _unpaired(row.get("objects") or {}, (width, height)):
            raise SourceError(f"{name}: {why}")
        target = objects_of(row, (width, height))
    elif "annotation" in row:
        target = row["annotation"]["bytes"]
        if (size := stored_size(target or b"")) is not None and size != (width, height):
            raise SourceError(f"{name}: mask is {size[0]}×{size[1]}, the row's size {width}×{height}")
    return Item(split, name, row["image"]["bytes"], width, height, target)


def _unpaired(objects: dict, canvas: tuple[int, int]) -> str | None:
    """Why a row's objects' fields do not pair up (their categories, their instance masks), which
    `objects_of` would pair to the shorter."""
    from augpipe.targets.boxes import masks_unpaired

    n, categories = len(objects.get("bbox") or ()), len(objects.get("category") or ())
    if categories != n:
        return f"{n} box{'' if n == 1 else 'es'} but {categories} categor{'y' if categories == 1 else 'ies'}"
    if None in (listed := list(objects.get("category") or ())):
        return f"box {listed.index(None)} has no category (null)"
    if "mask" not in objects:
        return None
    masks = list(objects["mask"] or ())
    if why := masks_unpaired(masks, n):
        return why
    for k, m in enumerate(masks):  # the size in its header: the writers decode them one by one later
        if (size := stored_size(m["bytes"])) is not None and size != canvas:
            return f"instance mask {k} is {size[0]}×{size[1]}, the row's size {canvas[0]}×{canvas[1]}"
    return None


def stored_size(data: bytes) -> tuple[int, int] | None:
    """A stored mask's (width, height) as its header gives it; None where none reads (the writer's
    decode then says so)."""
    from augpipe.errors import SkipInput
    from augpipe.headers import read_header

    try:
        header = read_header(data)
    except SkipInput:
        return None
    return header.width, header.height


def _row_size(name: str, row: dict) -> tuple[int, int]:
    """The row's (width, height); where it has none (a null, edited by hand), its image's header's."""
    from augpipe.decode import oriented_size
    from augpipe.errors import SkipInput
    from augpipe.targets.base import row_size

    try:
        return row_size(row)
    except SkipInput as exc:
        try:
            return oriented_size((row.get("image") or {}).get("bytes") or b"", 1 << 62)
        except (SkipInput, ValueError) as unread:
            raise SourceError(f"{name}: {exc.reason}, and its image's header does not read ({unread})") from None


# a row's per-object columns that Objects holds under its own names (`area` is the box's, derived)
_OWN = ("bbox", "category", "id", "iscrowd", "area", "mask")


def objects_of(row: dict, canvas: tuple[int, int]) -> Objects:
    """A row's `objects` column: boxes COCO [x, y, w, h] in pixels on its image, `canvas` (width, height)."""
    objects = row.get("objects") or {}
    bboxes = objects.get("bbox") or []
    masks = objects.get("mask") or [None] * len(bboxes)
    held = list(zip(bboxes, objects.get("category") or [], masks))
    segments = tuple(None if (m or {}).get("bytes") is None else ("png", m["bytes"]) for _, _, m in held)
    return Objects(tuple(tuple(b) for b, _, _ in held), tuple(int(c) for _, c, _ in held),
                   tuple(objects.get("id") or ()), segments if any(segments) else None,
                   iscrowd=tuple(0 if c is None else int(c) for c in objects.get("iscrowd") or ()),
                   canvas=canvas,
                   fields={k: tuple(v) for k, v in objects.items() if k not in _OWN and v is not None})


@dataclass(frozen=True)
class Option:
    """An export option a format owns: its CLI flag, its choices (name → what it writes; none for
    an on/off flag) and the rest of its help. The CLI's help and the checks read these."""

    flag: str
    choices: dict[str, str]
    help: str

    def names(self) -> str:
        """The choices' names as a sentence: `detect or segment`."""
        return one_of(list(self.choices))

    def text(self) -> str:
        """The choices as a sentence: `detect (box lines) or segment (…)`."""
        return one_of([f"{name} ({what})" for name, what in self.choices.items()])


class Format(Protocol):
    """A format module (`formats/<name>.py`, listed in `formats.FORMATS`): what reads a source."""

    name: str
    kinds: tuple[str, ...]  # the target kinds it holds: classification, detection, segmentation, ...

    def matches(self, entries: list) -> float | bool | None:
        """The share of the images its annotations cover (None: its files are absent; True: present)."""

    def read(self, store, entries: list, layout: str = "auto", **options) -> Scan: ...


class Writer(Format, Protocol):
    """A format `augpipe export` writes (listed in `formats.WRITERS`): its reading and writing side by side."""

    OPTIONS: dict[str, Option]  # its export options, by keyword

    NAME_COLUMNS: tuple[str, ...]  # the row columns `image_name` reads beside image.path and source

    def options(self, given: dict, header: Header, where: str) -> dict:
        """Its OPTIONS checked and defaulted (`given`: what the user set; `where`: the dataset, for
        messages); refuses, in one line, what it cannot write."""

    def keeps_masks(self, options: dict) -> bool:
        """Whether a dataset's instance masks are written."""

    def image_name(self, row: dict, classes: list[str]) -> str:
        """A row's name in the format's image folder."""

    def files(self, split: str, name: str, options: dict) -> list[str]:
        """The files an image of that name becomes, relative to the folder: the image first."""

    def write(self, store, items: Iterable[Item], header: Header, options: dict) -> dict:
        """Every Item written, and what goes beside them; {"images": {split: count}}, and "notes": lines
        the command line shows (what the files cannot say, e.g. a split named by another's images)."""


def is_image(name: str) -> bool:
    from augpipe.decode import SUPPORTED_SUFFIXES  # here: the CLI reads the formats' options without OpenCV

    return suffix(name).lower() in SUPPORTED_SUFFIXES


# A scan asks these of every file, several times: string methods, as PurePosixPath answers for
# the relative file names a listing gives (a tenth of the time of making a PurePosixPath)

def suffix(name: str) -> str:
    """`a/b/x.tar.gz` → `.gz`; `a/.hidden` and `a/x.` → ''."""
    base = name.rstrip("/").rsplit("/", 1)[-1]
    i = base.rfind(".")
    return base[i:] if 0 < i < len(base) - 1 else ""


def stem(name: str) -> str:
    """`a/b/x.tar.gz` → `x.tar`; `a/.hidden` → `.hidden`."""
    base = name.rstrip("/").rsplit("/", 1)[-1]
    i = base.rfind(".")
    return base[:i] if 0 < i < len(base) - 1 else base


def digest(parts: list[tuple[str, bytes]]) -> str:
    """One sha256 over (name, bytes) pairs: what the annotations were when the run was planned."""
    h = hashlib.sha256()
    for name, data in sorted(parts):
        h.update(name.encode("utf-8", "surrogateescape") + b"\x00" + hashlib.sha256(data).digest())
    return h.hexdigest()


def split_of_folder(name: str) -> str | None:
    return SPLIT_FOLDERS.get(name.lower())


def no_images(where: str) -> SourceError:
    from augpipe.decode import SUPPORTED_SUFFIXES

    return SourceError(f"no images found in {where} (looked for {', '.join(SUPPORTED_SUFFIXES)})")
