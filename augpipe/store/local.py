"""A folder on this machine: the operating system directly (atomic renames, O_NONBLOCK reads)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from augpipe.store.base import PREFETCH, Entry, NotRegularFile, stream_sha256


class LocalStore:
    """A local folder (see `augpipe.store.base.Store` for the contract)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.uri = str(root)
        self._root = str(self.root)

    def path(self, name: str = "") -> Path:
        return self.root / name if name else self.root

    def check(self) -> None:
        pass  # a local path's problems are the caller's to name (not found, not a folder)

    def display(self, name: str = "") -> str:
        return str(self.path(name))

    def canonical(self) -> str:
        return str(self.root.resolve())

    def not_a_folder(self) -> str | None:
        path = self.root
        if os.path.islink(path) and not path.exists():
            return f"{path} is a broken symlink (to {os.readlink(path)})"
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        return None if blocker is None else f"{blocker} is a file, not a folder"

    def exists(self, name: str = "") -> bool:
        return os.path.lexists(self.path(name))

    def is_dir(self, name: str = "") -> bool:
        return self.path(name).is_dir()

    def is_file(self, name: str) -> bool:
        return self.path(name).is_file()

    def size(self, name: str) -> int | None:
        try:
            return self.path(name).stat().st_size
        except OSError:
            return None

    def names(self, prefix: str = "") -> list[str]:
        """Names directly in a folder (files and folders), sorted; [] when it does not exist."""
        try:
            return sorted(os.listdir(self.path(prefix)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def list_files(self, prefix: str = "") -> list[Entry]:
        """Every non-hidden file below prefix, sorted; symlinks followed, loops cut. A linked
        folder is read after every real one: a folder or a file reached both directly and through a
        link (`cat/dogs -> ../dog`, `dog/x.png -> ../cat/x.png`) is read once, in its own place,
        and the link is a recorded skip."""
        out: list[Entry] = []
        seen: dict[tuple[int, int], str] = {}
        links: list[tuple[Path, str]] = []
        files: dict[tuple[int, int], str] = {}  # the files read in their own place
        file_links: list[tuple[os.DirEntry, str]] = []

        def visit(folder: Path, rel: str) -> None:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:  # a symlink loop, or the same folder reached twice
                if rel:
                    out.append(Entry(rel.rstrip("/"), 0, 0, f"a link to a folder read in its own place "
                                                           f"({seen[(st.st_dev, st.st_ino)] or '.'}/)"))
                return
            seen[(st.st_dev, st.st_ino)] = rel.rstrip("/")
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                child = f"{rel}{entry.name}"
                try:
                    child.encode("utf-8")
                except UnicodeEncodeError:  # bytes that are not UTF-8 (caf\xe9.jpg from another system)
                    shown = os.fsencode(child).decode("utf-8", "backslashreplace")
                    out.append(Entry(shown, 0, 0, "file name is not valid UTF-8: rename it"))
                    continue
                try:
                    if entry.is_dir():
                        if entry.is_symlink():
                            links.append((Path(entry.path), child + "/"))
                        else:
                            visit(Path(entry.path), child + "/")
                    elif entry.is_file() and entry.is_symlink():
                        file_links.append((entry, child))
                    elif entry.is_file():
                        st = entry.stat()
                        files[(st.st_dev, st.st_ino)] = child
                        out.append(Entry(child, st.st_size, st.st_mtime_ns))
                    elif entry.is_symlink():
                        out.append(Entry(child, 0, 0, "broken symlink"))
                    else:
                        out.append(Entry(child, 0, 0, "not a regular file (a pipe, socket or device)"))
                except PermissionError:
                    out.append(Entry(child, 0, 0, "cannot read: permission denied"))

        base = self.path(prefix)
        visit(base, f"{prefix.rstrip('/')}/" if prefix else "")
        while links:  # in order of their names; a link found inside a linked folder joins the queue
            links.sort(key=lambda link: link[1])
            folder, rel = links.pop(0)
            try:
                visit(folder, rel)
            except PermissionError:
                out.append(Entry(rel.rstrip("/"), 0, 0, "cannot read: permission denied"))
        for entry, child in file_links:  # a file also read in its own place is read once, there
            st = entry.stat()
            if (st.st_dev, st.st_ino) in files:
                out.append(Entry(child, 0, 0, f"a link to a file read in its own place ({files[st.st_dev, st.st_ino]})"))
            else:
                out.append(Entry(child, st.st_size, st.st_mtime_ns))
        out.sort(key=lambda e: e.name)
        return out

    def read_bytes(self, name: str) -> bytes:
        # the path as a string: pathlib's join costs more than reading a small image
        return read_regular_file(os.path.join(self._root, name) if name else self._root)

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode("utf-8")

    def read_many(self, names: list[str], read: Callable[[str], Any] | None = None,
                  ahead: int = PREFETCH) -> Iterator[tuple[str, Any]]:
        """Each file when it is needed: a local read costs no round trip worth hiding."""
        read = read or self.read_bytes
        for name in names:
            yield name, read(name)

    def sha256(self, name: str) -> str | None:
        return stream_sha256(lambda: open(self.path(name), "rb"))

    def in_memory(self, names: list[str]) -> bool:
        return in_page_cache([self.path(n) for n in names])

    def write_bytes(self, name: str, data: bytes, sync: bool = True) -> None:
        """Atomically: a temporary file beside it, then a rename."""
        path = self.path(name)
        self._folder(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                if sync:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def temp_dir(self, work: str) -> Path:
        """Where a shard is written before it is published: inside the output, so that the
        publishing rename stays on one file system."""
        return self._folder(self.path(work))

    def publish(self, local_file: Path, name: str) -> None:
        path = self.path(name)
        self._check_links(path.parent)
        os.replace(local_file, path)

    def delete(self, name: str) -> None:
        path = self.path(name)
        self._check_links(path.parent)
        path.unlink(missing_ok=True)

    def delete_tree(self, name: str) -> None:
        import shutil

        path = self.path(name)
        self._check_links(path)
        shutil.rmtree(path, ignore_errors=True)

    def makedirs(self, name: str = "") -> None:
        self._folder(self.path(name))

    def _folder(self, folder: Path) -> Path:
        """The folder, made where missing, once no folder below the root on the way is a link."""
        self._check_links(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _check_links(self, folder: Path) -> None:
        """A link below the root on the way to `folder` (the root itself is the caller's: they
        named it) is refused: what is written, replaced or deleted through it lands in a folder
        augpipe did not make (an export's labels/train made a link to another folder, then the
        export run again, wrote its files there)."""
        if folder == self.root:
            return
        try:
            parts = folder.relative_to(self.root).parts
        except ValueError:
            return
        at = self.root
        for part in parts:
            at = at / part
            if at.is_symlink():
                from augpipe.errors import OutputError

                raise OutputError(f"{at} is a link (to {os.readlink(at)}): augpipe writes only into folders it "
                                  f"made inside {self.root}; remove the link, or choose a new output")

    def create_exclusive(self, name: str, data: bytes) -> bool:
        self._check_links(self.path(name).parent)
        try:
            fd = os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return True

    def open_input(self, name: str):
        """A random-access file for Parquet readers."""
        import pyarrow as pa

        return pa.OSFile(str(self.path(name)), "rb")

    def arrow(self, names: list[str]) -> tuple[Any, list[str]]:
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), [str(self.path(n)) for n in names]


def read_regular_file(path: str | os.PathLike) -> bytes:
    """A local file's bytes, refusing anything that is not a regular file at read time (a FIFO
    swapped in after the scan would block a reader forever: O_NONBLOCK opens it at once).
    os.open/os.read: a third of what open().read() costs, which counts for small images."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"not a regular file: {path}")
        parts = [os.read(fd, st.st_size + 1)]
        while parts[-1]:  # a file that grew since fstat, or a short read
            parts.append(os.read(fd, 1 << 20))
    finally:
        os.close(fd)
    return parts[0] if len(parts) == 2 else b"".join(parts)


def in_page_cache(paths: list, sample: int = 16) -> bool:
    """Whether these files seem to be in the page cache: `sample` of them, spread over the list,
    each read (its first MB) without waiting for a disk (RWF_NOWAIT). False where the system
    cannot tell."""
    nowait = getattr(os, "RWF_NOWAIT", None)
    if nowait is None or not hasattr(os, "preadv") or not paths:
        return False
    step = max(1, len(paths) // sample)
    for path in paths[::step][:sample]:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            continue  # the hashing says what is wrong with it
        try:
            size = min(os.fstat(fd).st_size, 1 << 20)
            if size and os.preadv(fd, [bytearray(size)], 0, nowait) < size:
                return False
        except OSError:  # EAGAIN: not in memory; others: cannot tell
            return False
        finally:
            os.close(fd)
    return True

