"""What the formats share. Reading: many small files, checking a box, paths, the Scan; every
problem with one image is a reason (a string) recorded in `Scan.skipped`, and readers never raise
for one bad file, only when nothing at all can be read. Writing: the split folders, an image's
file name, instance masks and their outlines.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import PurePosixPath

from augpipe.formats.base import (EverySkipped, Scan, SourceFile, digest, is_image, no_images,  # noqa: F401 (stem: from here too)
                                  split_of_folder, stem)
from augpipe.store import LIST_THREADS, is_arrow_error
from augpipe.health.base import Problem


# --format auto reads a layout only when its annotations cover at least this share of the images:
# a stray data.yaml, .xml or _mask.png in a folder of classes is no dataset of that kind
EVIDENCE = 0.5


class Flaw(str):
    """A reason an image is skipped (the string `skipped` records) that knows its health check."""

    check: str

    def __new__(cls, check: str, reason: str):
        out = super().__new__(cls, reason)
        out.check = check
        return out

    def __getnewargs__(self):  # pickled (a Scan sent to workers) as what makes it again
        return self.check, str(self)


def flaw_problems(path: str, where: str, flaws: list) -> list[Problem]:
    """`Problem`s of one image's flaws: (position, Flaw) pairs, the position in `where`'s words."""
    return [Problem(f.check, path, f"{where} {at}".strip(), str(f)) for at, f in flaws]


def share(covered: int, images: int) -> float | None:
    """The share of the images a layout's annotations cover; None when they cover none."""
    return covered / images if covered else None


def usable(entries: list, skipped: list) -> list:
    """The entries that can be read; the others recorded with their problem."""
    out = []
    for e in entries:
        if e.problem:
            skipped.append((e.name, e.problem))
        else:
            out.append(e)
    return out


def read_files(store, names: list[str]) -> dict[str, bytes | str]:
    """Each file's bytes, or the reason it cannot be read. An object store is read by many
    threads: one request a label file, thousands of them, is latency-bound."""

    def one(name: str) -> bytes | str:
        try:
            return store.read_bytes(name)
        except OSError as exc:
            return f"cannot read: {exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]}"
        except Exception as exc:
            if not is_arrow_error(exc):
                raise
            return f"cannot read: {(str(exc).splitlines() or [type(exc).__name__])[0]}"

    return dict(store.read_many(names, one, ahead=LIST_THREADS))


def text(data: bytes, name: str) -> str:
    """UTF-8 (a byte-order mark allowed: spreadsheets write one), or ValueError saying so."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{name} is not UTF-8 text") from None


def parent(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def without_suffix(name: str) -> str:
    """`a/b/x.jpg` → `a/b/x`."""
    return join(parent(name), stem(name))


def split_of_path(relpath: str) -> str | None:
    """The split named by the first folder of the path that is a split folder (train, val,
    valid, validation, test; any case), else None."""
    for part in relpath.split("/")[:-1]:
        split = split_of_folder(part)
        if split is not None:
            return split
    return None


def number(value) -> float | None:
    """A JSON number as a float (not a bool, not a string), else None (an integer too large for
    a float, too: 400 digits parse as a Python int)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def size_text(width, height) -> str:
    return f"{_n(width)}×{_n(height)}"


def _n(v) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def shown(k: int, box) -> str:
    return f"box {k} [{', '.join(f'{v:.6g}' for v in box)}]"


def check_box(k: int, box: tuple[float, float, float, float], size: tuple[float, float] | None):
    """(box, None) or (None, reason): a COCO [x, y, w, h] box in pixels, checked against the
    image's size when the annotation gives it (the worker checks again against the decoded size)."""
    from augpipe.targets.boxes import box_check, box_problem

    x, y, w, h = box
    why = box_problem(box, size)
    if why is not None:
        return None, Flaw(box_check(why), f"{shown(k, box)}: {why}")
    if size is None:
        return (x, y, w, h), None
    width, height = size
    # within EDGE of the image: clipped to it
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        return None, Flaw("box_outside", f"{shown(k, box)}: outside the {size_text(width, height)} image")
    return (x0, y0, x1 - x0, y1 - y0), None


def image_size(width, height) -> tuple[float, float] | None:
    """An annotation's image size when it gives a usable one (positive numbers), else None."""
    try:
        w, h = float(width), float(height)
    except (TypeError, ValueError, OverflowError):
        return None
    if isinstance(width, bool) or isinstance(height, bool):
        return None
    if not (math.isfinite(w) and math.isfinite(h)) or w <= 0 or h <= 0:
        return None
    return w, h


def finish(store, files: list[SourceFile], skipped: list, classes: list[str], task: str, fmt: str,
           annotation_files: list[tuple[str, bytes]], labelled: bool = True, problems: list = ()) -> Scan:
    """The Scan, or SourceError when no image is left (naming the commonest reasons; `EverySkipped`,
    holding the scan, when images were there)."""
    files = sorted(files, key=lambda f: f.relpath)
    found = Scan(root=store.uri, files=files, classes=list(classes), labelled=labelled,
                 split_folders=any(f.split is not None for f in files), skipped=sorted(set(skipped)), task=task,
                 format=fmt, annotations=digest(annotation_files), problems=list(problems))
    if not files:
        if not any(is_image(p) for p, _ in skipped):
            raise no_images(store.display())
        reasons = Counter(reason for _, reason in skipped)
        top = "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common(3))
        raise EverySkipped(f"every image in {store.display()} was skipped ({fmt}): {top}", found)
    return found


# ---------------------------------------------------------------- writing

SPLIT_DIR = {"train": "train", "validation": "val", "test": "test"}
# Folders of a source layout, not of the dataset: `images/`, `train/`, COCO's `val2017/`
_LAYOUT_DIR = re.compile(r"(images|jpegimages|imgs|(train|val|valid|validation|test)(\d{4})?)", re.IGNORECASE)


def file_name(row: dict) -> str:
    """The row's file name, without the source layout's split and image folders."""
    parts = list(PurePosixPath(row["image"]["path"] or f"{row['source']}").parts)
    while len(parts) > 1 and _LAYOUT_DIR.fullmatch(parts[0]):
        parts.pop(0)
    return "/".join(parts)


def mask_of(segment):
    """An instance mask as the shards hold it, ("png", bytes), as a 0/1 uint8 array."""
    from augpipe.targets.masks import read_instance_mask

    return read_instance_mask(segment[1])


def rings(mask) -> list:
    """The outer outline of each 8-connected part of a mask, on the pixels' edges: (N, 2) int
    arrays of pixel corners, one vertex a turn. Traced at twice the size, where a contour point
    on a left or top edge is even and one on a right or bottom edge odd, so ceil(p / 2) is the
    pixel corner it stands for (diagonal steps, at inner corners and where parts touch
    diagonally, fall on one corner)."""
    import cv2
    import numpy as np

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return []
    part = np.pad(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], 1)  # the mask's extent, and a margin
    double = np.repeat(np.repeat(part, 2, axis=0), 2, axis=1)
    contours, _ = cv2.findContours(double, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = []
    for contour in contours:
        p = (contour.reshape(-1, 2) + 1) // 2 + [cols[0] - 1, rows[0] - 1]
        p = p[np.any(p != np.roll(p, 1, axis=0), axis=1)]
        before, after = np.roll(p, 1, axis=0), np.roll(p, -1, axis=0)
        turn = (p - before)[:, 0] * (after - p)[:, 1] - (p - before)[:, 1] * (after - p)[:, 0]
        p = p[turn != 0]
        if len(p) >= 4:
            out.append(p)
    return out
