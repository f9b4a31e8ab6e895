"""The ImageFolder layout: a folder a class (`data/cat/x.jpg`), optional split folders.

Written (`augpipe export --format imagefolder`): {split}/{class}/…, the path below the source's
class folder (`{split}/cat/a/x0.png`); unlabelled images in `(unlabelled)/`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

from augpipe.errors import SourceError
from augpipe.formats.base import SPLIT_FOLDERS, Scan, SourceFile, is_image, no_images
from augpipe.formats.common import SPLIT_DIR, file_name

name = "imagefolder"
kinds = ("classification",)

LAYOUTS = ("auto", "classes", "splits")


def read(store, entries: list, layout: str = "auto") -> Scan:
    images, skipped = [], []
    for e in entries:
        if e.problem:
            skipped.append((e.name, e.problem))
        elif is_image(e.name):
            images.append(e)
        else:
            skipped.append((e.name, f"unsupported file type '{PurePosixPath(e.name).suffix or '(none)'}'"))
    split_of = split_folders(sorted({e.name.split("/", 1)[0] for e in entries if "/" in e.name}), layout,
                             store.display())
    files = _classify(images, split_of, skipped)
    if not files:
        raise no_images(store.display())
    labelled = any(f.class_name is not None for f in files)
    if labelled:
        for f in files:
            if f.class_name is None:
                skipped.append((f.relpath, "not inside a class folder"))
        files = [f for f in files if f.class_name is not None]
    classes = sorted({f.class_name for f in files if f.class_name is not None})
    skipped.sort()
    return Scan(root=store.uri, files=files, classes=classes, labelled=labelled, split_folders=split_of is not None,
                skipped=skipped)


def split_folders(top: list[str], layout: str, where: str) -> dict[str, str] | None:
    """{folder: split} when the top-level folders are splits, None when they are classes.

    A mix (`vehicles/{bus,car,train}`) is ambiguous and refused: a class named `train` must not
    quietly turn the dataset into splits, nor split folders quietly into classes."""
    if layout not in LAYOUTS:
        raise SourceError(f"--layout is one of {', '.join(LAYOUTS)}, not '{layout}'")
    splitish = [t for t in top if t.lower() in SPLIT_FOLDERS]
    if layout == "classes" or (layout == "auto" and not splitish):
        return None
    others = [t for t in top if t.lower() not in SPLIT_FOLDERS]
    if layout == "auto" and others:
        raise SourceError(
            f"{where}: the folders {', '.join(splitish)} look like splits but {', '.join(others[:3])}"
            f"{' …' if len(others) > 3 else ''} do not: say how to read it, --layout splits (train/val/test "
            "folders with classes inside) or --layout classes (every folder is a class)")
    split_of = {t: SPLIT_FOLDERS[t.lower()] for t in splitish}
    by_split: dict[str, list[str]] = {}
    for folder, split in split_of.items():
        by_split.setdefault(split, []).append(folder)
    for split, folders in by_split.items():
        if len(folders) > 1:
            raise SourceError(f"{where}: {' and '.join(folders)} are both the {split} split: merge or rename them")
    return split_of


def _classify(images: list, split_of: dict[str, str] | None, skipped: list) -> list[SourceFile]:
    out = []
    for e in images:
        parts = e.name.split("/")
        split = None
        if split_of is not None:
            split = split_of.get(parts[0])
            if split is None or len(parts) == 1:
                skipped.append((e.name, f"outside the split folders ({', '.join(split_of)})"))
                continue
            parts = parts[1:]
        class_name = parts[0] if len(parts) > 1 else None
        out.append(SourceFile(e.name, split, class_name, e.size, e.mtime_ns))
    return out


# ---------------------------------------------------------------- writing

OPTIONS = {}
NAME_COLUMNS = ("label",)


def options(given: dict, header, where: str) -> dict:
    """No options; a class that cannot be one folder name (`/` or `\\` in it, `.`, `..`, empty) is refused."""
    for c in header.classes:
        if c in ("", ".", "..") or any(ch in c for ch in "/\\\0"):
            raise SourceError(f"class {c!r} cannot be a folder name (imagefolder writes one folder a class; "
                              "a name without '/' or '\\' and not '.' or '..'): rename it in the source's labels")
    return {}


def keeps_masks(options: dict) -> bool:
    return False


def image_name(row: dict, classes: list[str]) -> str:
    """{class}/{the path below the source's class folder}."""
    label = row.get("label")
    folder = classes[label] if label is not None else "(unlabelled)"
    parts = file_name(row).split("/")
    if len(parts) > 1 and parts[0] == folder:  # the source's own class folder
        parts.pop(0)
    return "/".join([folder, *parts])


def files(split: str, name: str, options: dict) -> list[str]:
    return [f"{SPLIT_DIR[split]}/{name}"]


def write(store, items, header, options: dict) -> dict:
    counts = defaultdict(int)
    for item in items:
        store.write_bytes(files(item.split, item.name, options)[0], item.data, sync=False)
        counts[item.split] += 1
    return {"images": dict(counts)}
