"""Where datasets live: a folder on this machine, or a prefix on an object store (s3://, gs://, …).

`open_store(location)` is the one way augpipe reaches sources and outputs: local paths are a
`LocalStore` (store/local.py: the operating system directly, atomic renames, O_NONBLOCK reads);
any URI that `pyarrow.fs.FileSystem.from_uri` understands is an `ArrowStore` (store/arrow.py).
Both keep the contract written in store/base.py; nothing outside this package asks which one
it has. Names passed to a store are POSIX paths relative to its root.
"""

from __future__ import annotations

import os
from pathlib import Path

from augpipe.errors import StoreError
from augpipe.store.arrow import ArrowStore, _cause
from augpipe.store.base import (LIST_THREADS, PREFETCH, Entry, NotRegularFile, Store, hidden, is_arrow_error,
                                read_or_skip, read_source)
from augpipe.store.local import LocalStore, read_regular_file

__all__ = ["LIST_THREADS", "PREFETCH", "ArrowStore", "Entry", "LocalStore", "NotRegularFile", "Store", "hidden",
           "is_arrow_error", "is_uri", "normalise_location", "open_store", "read_or_skip", "read_regular_file",
           "read_source", "store_for"]


def is_uri(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def normalise_location(location: str | os.PathLike) -> str:
    """A location as every check and every store sees it. A URI's path may not climb or hold
    empty parts: `s3://out/../other` would name bucket `out` to a check and write into `other`
    (pyarrow decodes `%2e%2e` too), so `.`, `..` and `//` inside it, encoded or not, are refused;
    a trailing `/` is dropped. Local paths are the operating system's to resolve."""
    from urllib.parse import unquote

    text = str(location)
    if not text.strip():  # '' would be the working directory to the operating system
        raise StoreError("an empty path names no folder: write the folder's path (. for this one)")
    if not is_uri(text) or text.startswith("file://"):
        return text
    scheme, _, rest = text.partition("://")
    path, mark, query = rest.partition("?")
    parts = path.rstrip("/").split("/")
    for part in parts:
        decoded = unquote(part)
        if decoded in (".", "..") or (not decoded and len(parts) > 1) or "/" in decoded or "\\" in decoded \
                or any(ord(ch) < 32 or ord(ch) == 127 for ch in decoded):
            shown = part if part == decoded else f"{part} ({decoded})"
            raise StoreError(f"{text!r}: the part {shown!r} is refused in an object-store URI (no '.', '..', "
                             "empty, encoded '/' or control-character parts: object stores have no folders to "
                             "climb): write the path without it")
    return f"{scheme}://{'/'.join(parts)}{mark}{query}"


_STORES: dict[str, Store] = {}


def store_for(location: str) -> Store:
    """One store per location per process (an S3 client is worth keeping)."""
    if location not in _STORES:
        _STORES[location] = open_store(location)
    return _STORES[location]


def open_store(location: str | os.PathLike) -> Store:
    """A store for a local path, a file:// URI or any URI pyarrow's filesystems understand."""
    text = normalise_location(location)
    if text.startswith("file://"):
        return LocalStore(Path(text[len("file://"):]))
    if not is_uri(text):
        return LocalStore(Path(text))
    import pyarrow.fs as pafs

    scheme, _, rest = text.partition("://")
    if not rest.split("?", 1)[0].strip("/"):
        raise StoreError(f"{text}: no bucket or path after {scheme}://")
    if scheme == "gs" and not _google_credentials(text):
        # without them, Google's client asks a metadata server that exists only on Google's
        # machines, and waits: say what to do instead of hanging
        raise StoreError(f"{text}: no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS (or run "
                         "`gcloud auth application-default login`), or add ?anonymous=true for a public bucket")
    try:
        fs, root = pafs.FileSystem.from_uri(text)
    except Exception as exc:  # pyarrow raises ArrowInvalid, ValueError or OSError by scheme
        raise StoreError(f"{text}: {_cause(exc)}") from None
    if isinstance(fs, pafs.LocalFileSystem):
        return LocalStore(Path(root))
    return ArrowStore(fs, root.rstrip("/"), text.split("?", 1)[0].rstrip("/"))


def _google_credentials(uri: str) -> bool:
    if "anonymous=true" in uri.lower() or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return True
    if os.environ.get("GCE_METADATA_HOST") or _on_google_cloud():  # the metadata server answers there
        return True
    config = Path(os.environ.get("CLOUDSDK_CONFIG", Path.home() / ".config" / "gcloud"))
    return (config / "application_default_credentials.json").is_file()


def _on_google_cloud() -> bool:
    """What google-auth checks too: the machine's firmware names Google (no network asked)."""
    try:
        return "Google" in Path("/sys/class/dmi/id/product_name").read_text()
    except OSError:
        return False


