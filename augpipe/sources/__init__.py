"""Sources: the layouts augpipe reads, chosen here (the first that matches, or `--format`).

Each reader is a module with `matches(entries) -> bool` (its files are present) and
`read(store, entries, layout) -> Scan`; `detect` names the first that matches, ImageFolder the
fallback. The one place that lists a source. `layout` is ImageFolder's alone (the others place
their splits themselves).
"""

from __future__ import annotations

import importlib

from augpipe.errors import SourceError, StoreError
from augpipe.sources.base import MaskRef, Objects, Scan, SourceFile  # noqa: F401
from augpipe.sources.imagefolder import LAYOUTS
from augpipe.store import open_store

# In the order they are tried: the first whose files are present reads the source.
FORMATS = ("coco", "yolo", "voc", "masks", "labelfiles", "imagefolder")


def scan(root: str, layout: str = "auto", format: str = "auto", voc_zero_based: bool = False) -> Scan:
    """`voc_zero_based`: VOC files hold 0-based edges (else the devkit's 1-based pixels)."""
    if format != "auto" and format not in FORMATS:
        raise SourceError(f"--format is one of auto, {', '.join(FORMATS)}, not '{format}'")
    if layout not in LAYOUTS:
        raise SourceError(f"--layout is one of {', '.join(LAYOUTS)}, not '{layout}'")
    store = open_store(str(root))
    store.check()
    if not store.exists():
        raise SourceError(f"source folder not found: {store.display()}")
    if not store.is_dir():
        raise SourceError(f"source is not a folder: {store.display()}")
    try:
        entries = store.list_files()
    except PermissionError as exc:
        raise SourceError(f"cannot read source folder {store.display()}: {exc.strerror}") from None
    except StoreError:
        raise
    except OSError as exc:
        raise SourceError(f"cannot list {store.display()}: {exc}") from None
    name = detect(entries) if format == "auto" else format
    options = {"zero_based": voc_zero_based} if name == "voc" else {}
    found = reader(name).read(store, entries, layout, **options)
    found.root = str(root)
    return found


def reader(name: str):
    return importlib.import_module(f"augpipe.sources.{name}")


def detect(entries: list) -> str:
    for name in FORMATS[:-1]:
        if reader(name).matches(entries):
            return name
    return FORMATS[-1]
