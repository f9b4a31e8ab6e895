"""Folders of static pages augpipe writes (a preview gallery, a health report): written only when
new, empty, or written by augpipe before (its page carries the mark)."""

from __future__ import annotations

from pathlib import Path

from augpipe.errors import SourceError


def claim_folder(folder: Path, mark: str, flag: str, what: str, own: tuple[tuple[str, str], ...]) -> None:
    """Refuse a folder that holds anything but a page of ours; in one of ours, remove the files
    it wrote before (`own`: (subfolder, glob) pairs), so nothing stale stays."""
    if folder.exists() and not folder.is_dir():
        raise SourceError(f"{flag} {folder} exists and is not a folder")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    try:
        ours = mark in (folder / "index.html").read_text(encoding="utf-8", errors="replace")[:200]
    except OSError:
        ours = False
    if not ours:
        raise SourceError(f"{flag} {folder} is not empty and is not {what} augpipe wrote: choose a new folder")
    for sub, pattern in own:
        for old in (folder / sub).glob(pattern):
            old.unlink()
