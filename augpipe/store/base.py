"""The Store contract: what augpipe asks of a place that holds sources and outputs.

Everything outside `augpipe.store` reaches files through these methods only: it never asks which
kind of store it has. A new backend is one class that does all of this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from augpipe.errors import SkipInput

LIST_THREADS = 16  # object-store listings are latency-bound: list prefixes in parallel
# Object stores answer each read after a round trip: a reader keeps this many in flight while it
# works on the files already read. Local files are read when they are needed.
PREFETCH = 8


@dataclass(frozen=True)
class Entry:
    name: str  # relative to the store's root, POSIX
    size: int
    mtime_ns: int
    problem: str | None = None  # why it cannot be read (a broken link, an unreadable folder, ...)


class NotRegularFile(OSError):
    """A pipe, socket or device where a file was listed."""


@runtime_checkable
class Store(Protocol):
    """A folder of files, named by POSIX paths relative to its root (`cat/x.jpg`).

    Reading: `exists`, `is_dir`, `is_file`, `size` (None when not a file), `names` (a folder's
    direct children, sorted; [] when there is none), `list_files` (every non-hidden file below,
    sorted, each unreadable one an `Entry` with its `problem`), `read_bytes`/`read_text`
    (FileNotFoundError when absent), `read_many` (the files in order, read ahead where a read is a
    round trip), `open_input` (a random-access file for Parquet), `arrow` (a pyarrow filesystem
    and the full paths of names, for pyarrow's own readers), `sha256` (None when absent),
    `in_memory` (whether reading these names seems to wait on nothing: local files in the page
    cache; False where the store cannot tell).

    Writing: `write_bytes` replaces a file whole (a reader never sees half of it); a shard is
    written in `temp_dir(work)` on local disk and `publish`ed under its final name whole, or not
    at all; `create_exclusive` writes only if nothing is there (True/False; None where the store
    cannot tell, and the caller must settle it another way); `delete`/`delete_tree` ignore what is
    not there; `makedirs` makes a folder where folders exist.

    Naming: `uri` is the location as given, `display(name)` a file as a user should see it,
    `canonical()` the location as it names itself from anywhere (an absolute path, or the URI);
    `check()` raises StoreError when the store cannot be used at all (no bucket, no credentials);
    `not_a_folder()` says, in words, why the location cannot be a folder (a file, a broken link)
    or None. Stores pickle: tasks carry them to worker processes and Ray nodes.
    """

    uri: str

    def display(self, name: str = "") -> str: ...
    def canonical(self) -> str: ...
    def check(self) -> None: ...
    def not_a_folder(self) -> str | None: ...
    def exists(self, name: str = "") -> bool: ...
    def is_dir(self, name: str = "") -> bool: ...
    def is_file(self, name: str) -> bool: ...
    def size(self, name: str) -> int | None: ...
    def names(self, prefix: str = "") -> list[str]: ...
    def list_files(self, prefix: str = "") -> list[Entry]: ...
    def read_bytes(self, name: str) -> bytes: ...
    def read_text(self, name: str) -> str: ...
    def read_many(self, names: list[str], read: Callable[[str], Any] | None = None,
                  ahead: int = PREFETCH) -> Iterator[tuple[str, Any]]: ...
    def open_input(self, name: str): ...
    def arrow(self, names: list[str]) -> tuple[Any, list[str]]: ...
    def sha256(self, name: str) -> str | None: ...
    def in_memory(self, names: list[str]) -> bool: ...
    def write_bytes(self, name: str, data: bytes, sync: bool = True) -> None: ...
    def create_exclusive(self, name: str, data: bytes) -> bool | None: ...
    def temp_dir(self, work: str) -> Path: ...
    def publish(self, local_file: Path, name: str) -> None: ...
    def delete(self, name: str) -> None: ...
    def delete_tree(self, name: str) -> None: ...
    def makedirs(self, name: str = "") -> None: ...


def read_ahead(names: list[str], read: Callable[[str], Any], ahead: int) -> Iterator[tuple[str, Any]]:
    """(name, read(name)) in order, with `ahead` reads in flight on threads: for stores where a read
    is a round trip. `read` returns its failures: one raised ends the iteration."""
    with ThreadPoolExecutor(ahead) as pool:
        pending = [(n, pool.submit(read, n)) for n in names[:ahead]]
        for i in range(len(names)):
            name, future = pending.pop(0)
            if i + ahead < len(names):
                pending.append((names[i + ahead], pool.submit(read, names[i + ahead])))
            yield name, future.result()


def hidden(name: str) -> bool:
    """The one listing rule of every store: a file or folder whose name starts with '.'
    (`.DS_Store`, `.ipynb_checkpoints/`, `.git/`) is not part of a dataset, at any depth."""
    return any(part.startswith(".") and part not in (".", "..") for part in name.split("/"))


_NOT_REGULAR, _A_FOLDER, _VANISHED = ("not a regular file (a pipe, socket or device)", "is a folder, not a file",
                                      "vanished during the run (not found)")
_CANNOT_READ = "cannot read: "


def read_source(store: Store, name: str) -> bytes:
    """A source file's bytes, or SkipInput with the reason it cannot be read."""
    try:
        return store.read_bytes(name)
    except NotRegularFile:
        raise SkipInput(_NOT_REGULAR) from None
    except IsADirectoryError:
        raise SkipInput(_A_FOLDER) from None
    except FileNotFoundError:
        raise SkipInput(_VANISHED) from None
    except OSError as exc:
        raise SkipInput(f"{_CANNOT_READ}{exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]}") from None
    except Exception as exc:
        if not is_arrow_error(exc):
            raise
        raise SkipInput(f"{_CANNOT_READ}{(str(exc).splitlines() or [type(exc).__name__])[0]}") from None


def unread(reason: str) -> bool:
    """Whether a skip's reason is `read_source`'s: the file was not read (gone, not permitted, an
    I/O error, replaced by a folder), which says nothing of its content: a later run may read it."""
    return reason in (_NOT_REGULAR, _A_FOLDER, _VANISHED) or reason.startswith(_CANNOT_READ)


def read_or_skip(store: Store, name: str):
    """A source's bytes, or the SkipInput saying why not (returned: a read ahead does not raise)."""
    try:
        return read_source(store, name)
    except SkipInput as exc:
        return exc


def is_arrow_error(exc: BaseException) -> bool:
    """pyarrow's own error for one key (ArrowInvalid: a key it cannot address): that key's problem."""
    import pyarrow as pa

    return isinstance(exc, pa.ArrowException)


def stream_sha256(open_stream: Callable[[], Any]) -> str | None:
    """The sha256 of what `open_stream()` reads, in 1 MB pieces; None when it cannot be read."""
    import hashlib

    h = hashlib.sha256()
    try:
        with open_stream() as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()
