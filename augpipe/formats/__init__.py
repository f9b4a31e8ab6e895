"""Formats: the layouts augpipe reads and writes, one module each (`formats/<name>.py`, the
`Format` and `Writer` protocols of base.py), found here by name and imported when first used (this module loads none of them: the
command line's help reads FORMATS). The one place that lists a format.

Reading: a module's `matches(entries)` is the share of the images its annotations cover (None when
its files are absent); `detect` names the first that covers at least half of them (EVIDENCE),
ImageFolder the fallback; the others that fit, or had some evidence, become warnings in the
summary and the manifest. `layout` is ImageFolder's alone (the others place their splits
themselves). Writing: `augpipe export` writes the WRITERS (`augpipe.export`).
"""

from __future__ import annotations

import importlib
import unicodedata
from typing import TYPE_CHECKING

from augpipe.errors import SourceError, StoreError

if TYPE_CHECKING:
    from augpipe.formats.base import Scan

# In the order they are tried: the first whose files are present reads the source.
FORMATS = ("coco", "yolo", "voc", "masks", "labelfiles", "imagefolder")
# What `augpipe export` writes, in the order its help names them.
WRITERS = ("yolo", "coco", "voc", "imagefolder", "masks")


def module(name: str):
    """The format module of that name (one of FORMATS)."""
    return importlib.import_module(f"augpipe.formats.{name}")


def scan(root: str, layout: str = "auto", format: str = "auto", voc_zero_based: bool = False) -> Scan:
    """`voc_zero_based`: VOC files hold 0-based edges (else the devkit's 1-based pixels)."""
    from augpipe.formats.base import EverySkipped
    from augpipe.formats.imagefolder import LAYOUTS
    from augpipe.store import open_store

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
    name, warnings = choose(entries) if format == "auto" else (format, [])
    options = {"zero_based": voc_zero_based} if name == "voc" else {}
    try:
        found = module(name).read(store, entries, layout, **options)
    except SourceError as exc:
        if format != "auto" or (name == FORMATS[-1] and not warnings):
            raise
        text = f"{exc} (read as {name}, the layout detected: --format names another)"
        raise (EverySkipped(text, exc.scan) if isinstance(exc, EverySkipped) else SourceError(text)) from None
    found.root = str(root)
    found.warnings = warnings + found.warnings
    _check_class_names(store, found.classes)
    return found


# bidirectional overrides and isolates: they reorder the text printed after them
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _check_class_names(store, classes: list[str]) -> None:
    """A class name with a control character (a newline, a tab, U+0007) is refused, whichever
    reader found it: XML 1.0 cannot carry most of them, and in a CSV, classes.txt or a terminal
    line they break what they are written into."""
    for name in classes:
        bad = next((ch for ch in name if unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI), None)
        if bad is not None:
            raise SourceError(f"{store.display()}: the class name {name!r} holds a control character "
                              f"(U+{ord(bad):04X}): rename the class")


def detect(entries: list) -> str:
    return choose(entries)[0]


def choose(entries: list) -> tuple[str, list[str]]:
    """The layout --format auto reads, and a line for each other layout that was plausible or
    had some evidence: the first whose annotations cover at least EVIDENCE of the images."""
    from augpipe.formats.common import EVIDENCE

    shares = {name: _share(module(name).matches(entries)) for name in FORMATS[:-1]}
    fits = [name for name, part in shares.items() if part is not None and part >= EVIDENCE]
    chosen = fits[0] if fits else FORMATS[-1]
    warnings = []
    if len(fits) > 1:
        warnings.append(f"--format auto: the files fit {', '.join(fits)}; read as {chosen}, the first "
                        f"(--format chooses another)")
    for name, part in shares.items():
        if part is not None and part < EVIDENCE:
            warnings.append(f"--format auto: {name} annotations cover only {part:.0%} of the images, too few: "
                            f"read as {chosen} (--format {name} reads it as {name})")
    folders = _class_folders(entries) if chosen == "labelfiles" else []
    if len(folders) > 1:
        warnings.append(f"--format auto: a label file was read, though the images also lie in folders "
                        f"({', '.join(folders[:3])}{', …' if len(folders) > 3 else ''}): "
                        "--format imagefolder takes each folder as a class")
    return chosen, warnings


def _share(found) -> float | None:
    """A reader's evidence: a share of the images, or None (its files are absent); True/False as 1/None."""
    if isinstance(found, bool):
        return 1.0 if found else None
    return found


def _class_folders(entries: list) -> list[str]:
    """The folders holding images directly below the root or a split folder (classes, to ImageFolder)."""
    from augpipe.formats.base import is_image, split_of_folder

    found = set()
    for e in entries:
        parts = e.name.split("/")
        if is_image(e.name) and len(parts) >= 2:
            top = parts[1] if len(parts) >= 3 and split_of_folder(parts[0]) is not None else parts[0]
            if split_of_folder(top) is None:
                found.add(top)
    return sorted(found)
