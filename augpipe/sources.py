"""Reading a source folder: ImageFolder layout, optional split folders, in sorted order."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from augpipe.decode import SUPPORTED_SUFFIXES
from augpipe.errors import SourceError

BROKEN_LINK, UNREADABLE = -1, -2
SPLIT_FOLDERS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


@dataclass(frozen=True)
class SourceFile:
    relpath: str  # POSIX path relative to the root: the identity of a source
    split: str | None  # from a split folder, else None (decided by hashing)
    class_name: str | None  # first-level folder inside the (split) root; None when unlabelled
    size: int


@dataclass
class Scan:
    root: Path
    files: list[SourceFile]
    classes: list[str]
    labelled: bool
    split_folders: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)


def scan(root: str | Path) -> Scan:
    root = Path(root)
    if not root.exists():
        raise SourceError(f"source folder not found: {root}")
    if not root.is_dir():
        raise SourceError(f"source is not a folder: {root}")
    try:
        entries = _walk(root)
    except PermissionError as exc:
        raise SourceError(f"cannot read source folder {root}: {exc.strerror}") from None
    images, skipped = [], []
    for rel, size in entries:
        if size == BROKEN_LINK:
            skipped.append((rel, "broken symlink"))
        elif size == UNREADABLE:
            skipped.append((rel, "cannot read: permission denied"))
        elif Path(rel).suffix.lower() in SUPPORTED_SUFFIXES:
            images.append((rel, size))
        else:
            skipped.append((rel, f"unsupported file type '{Path(rel).suffix or '(none)'}'"))
    top = {p.split("/", 1)[0] for p, _ in entries if "/" in p}
    split_folders = bool(top & set(SPLIT_FOLDERS))
    files = _classify(images, split_folders, skipped)
    if not files:
        kinds = ", ".join(SUPPORTED_SUFFIXES)
        raise SourceError(f"no images found in {root} (looked for {kinds})")
    labelled = any(f.class_name is not None for f in files)
    if labelled:
        for f in files:
            if f.class_name is None:
                skipped.append((f.relpath, "not inside a class folder"))
        files = [f for f in files if f.class_name is not None]
    classes = sorted({f.class_name for f in files if f.class_name is not None})
    skipped.sort()
    return Scan(root=root, files=files, classes=classes, labelled=labelled, split_folders=split_folders, skipped=skipped)


def _classify(images: list[tuple[str, int]], split_folders: bool, skipped: list) -> list[SourceFile]:
    out = []
    for rel, size in images:
        parts = rel.split("/")
        split = None
        if split_folders:
            split = SPLIT_FOLDERS.get(parts[0])
            if split is None:
                skipped.append((rel, "outside the train/, val/ and test/ folders"))
                continue
            parts = parts[1:]
        class_name = parts[0] if len(parts) > 1 else None
        out.append(SourceFile(relpath=rel, split=split, class_name=class_name, size=size))
    return out


def _walk(root: Path) -> list[tuple[str, int]]:
    """Every non-hidden file below root, sorted by relative path; symlinks followed, loops cut.

    A broken symlink is listed with size BROKEN_LINK, a folder that cannot be read UNREADABLE.
    """
    out: list[tuple[str, int]] = []
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path, rel: str) -> None:
        st = folder.stat()
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink loop, or the same folder reached twice
            return
        seen.add(key)
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = f"{rel}{entry.name}"
            try:
                if entry.is_dir():
                    visit(Path(entry.path), child + "/")
                elif entry.is_file():
                    out.append((child, entry.stat().st_size))
                elif entry.is_symlink():
                    out.append((child, BROKEN_LINK))
            except PermissionError:
                out.append((child, UNREADABLE))

    visit(root, "")
    out.sort()
    return out
