"""What the annotation readers share: reading many small files, checking a box, paths, the Scan.

Every problem with one image is a reason (a string) recorded in `Scan.skipped`; readers never
raise for one bad file, only when nothing at all can be read.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import PurePosixPath

from augpipe.errors import SourceError
from augpipe.sources.base import Scan, SourceFile, digest, is_image, no_images, split_of_folder
from augpipe.store import LIST_THREADS, is_arrow_error

# A box may overhang the image by this much (pixels) and is clipped: the rounding of the tool
# that wrote it, or Pascal VOC's 1-based xmax = width. Further out, the image is skipped.
EDGE = 1.0


# --format auto reads a layout only when its annotations cover at least this share of the images:
# a stray data.yaml, .xml or _mask.png in a folder of classes is no dataset of that kind
EVIDENCE = 0.5


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


def stem(name: str) -> str:
    return PurePosixPath(name).stem


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
    x, y, w, h = box
    if not all(math.isfinite(v) for v in box):
        return None, f"{shown(k, box)}: not a number"
    if w <= 0 or h <= 0:
        return None, f"{shown(k, box)}: {'width' if w <= 0 else 'height'} ≤ 0"
    if size is None:
        return (x, y, w, h), None
    width, height = size
    if x < -EDGE or y < -EDGE or x + w > width + EDGE or y + h > height + EDGE:
        return None, f"{shown(k, box)}: outside the {size_text(width, height)} image"
    # within EDGE of the image: clipped to it
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        return None, f"{shown(k, box)}: outside the {size_text(width, height)} image"
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
           annotation_files: list[tuple[str, bytes]], labelled: bool = True) -> Scan:
    """The Scan, or SourceError when no image is left (naming the commonest reasons)."""
    if not files:
        if not any(is_image(p) for p, _ in skipped):
            raise no_images(store.display())
        reasons = Counter(reason for _, reason in skipped)
        top = "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common(3))
        raise SourceError(f"every image in {store.display()} was skipped ({fmt}): {top}")
    files = sorted(files, key=lambda f: f.relpath)
    return Scan(root=store.uri, files=files, classes=list(classes), labelled=labelled,
                split_folders=any(f.split is not None for f in files), skipped=sorted(set(skipped)), task=task,
                format=fmt, annotations=digest(annotation_files))
