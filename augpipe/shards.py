"""The Parquet shard: names, a writer that publishes only finished files, checksums.

What goes in a row is `augpipe.row`'s to say."""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq

from augpipe.row import RowSpec

# Row groups small enough that reading one row (one row group) stays cheap, large enough that
# their fixed cost is amortised: 256 small images, or about 4 MB of large ones.
ROW_GROUP_ROWS = 256
ROW_GROUP_BYTES = 4 * 2**20


class ShardWriter:
    """Writes rows to a temporary file; the shard appears under its final name only on `publish`."""

    def __init__(self, name: str, tmp_dir: Path, spec: RowSpec):
        self.name = name
        self.tmp = tmp_dir / f"{name}.{os.getpid()}.tmp"
        self.spec = spec
        self.rows = 0
        self._sink = _HashingFile(self.tmp)
        self._buffered: list[dict] = []
        self._buffered_bytes = 0
        self._writer = pq.ParquetWriter(self._sink, spec.schema(), **spec.writer_options())

    def write(self, row: dict) -> None:
        self._buffered.append(row)
        self._buffered_bytes += len(row["image"]["bytes"])
        if len(self._buffered) >= ROW_GROUP_ROWS or self._buffered_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        rows = self._buffered
        if not rows:
            return
        self._writer.write_table(self.spec.table(rows))
        self.rows += len(rows)
        self._buffered, self._buffered_bytes = [], 0

    def finish(self) -> tuple[int, str, int]:
        """Close and fsync the temporary file; returns (rows, sha256, bytes)."""
        self._flush()
        self._writer.close()
        digest, size = self._sink.sync_and_close()
        return self.rows, digest, size

    def publish(self, store) -> None:
        store.publish(self.tmp, self.name)

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._sink.close()
            self.tmp.unlink(missing_ok=True)


class _HashingFile:
    """The file a shard is written to, hashed on the way out: no second read of the shard.

    Where the file system takes it, the file is written around the page cache (O_DIRECT):
    copying a shard into new page-cache pages cost a worker as much system time as the rest of
    its work (bench/write.py), and the run that writes a shard does not read it back. Elsewhere
    (no O_DIRECT, or a file system that refuses it) it is an ordinary file; the bytes on disk are
    the same either way."""

    closed = False

    def __init__(self, path: Path):
        self._fd, direct = _open_new(path)
        self._hash = hashlib.sha256()
        self._size = 0
        self._direct = _DirectWriter(self._fd) if direct else None

    def write(self, data) -> int:
        self._hash.update(data)
        n = len(data)
        self._size += n
        if self._direct is None:
            _write_all(self._fd, data)
        else:
            self._direct.write(data)
        return n

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        """Nothing: a shard is published only once it is whole and synced."""

    def sync_and_close(self) -> tuple[str, int]:
        if self._direct is not None:
            self._direct.finish()
        os.fsync(self._fd)
        self.close()
        return self._hash.hexdigest(), self._size

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                if self._direct is not None:
                    self._direct.close()
            finally:
                os.close(self._fd)


class _DirectWriter:
    """Bytes to a file opened O_DIRECT, in whole aligned blocks. Two blocks take turns: one fills
    while a thread writes the other, since the write waits on the device, not on the CPU. If the
    file system refuses a write (EINVAL), the file goes on as an ordinary one."""

    def __init__(self, fd: int):
        self._fd = fd
        self._blocks = [_block() for _ in range(2)]
        self._fill = 0
        self._direct = True
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="augpipe-shard-write")
        self._pending: Future | None = None

    def write(self, data) -> None:
        with memoryview(data) as view:
            done, n = 0, len(view)
            while done < n:
                take = min(n - done, DIRECT_BLOCK - self._fill)
                self._blocks[0][self._fill:self._fill + take] = view[done:done + take]
                self._fill += take
                done += take
                if self._fill == DIRECT_BLOCK:
                    self._wait()
                    self._pending = self._thread.submit(self._write, self._blocks[0], DIRECT_BLOCK)
                    self._blocks.reverse()
                    self._fill = 0

    def finish(self) -> None:
        """The rest: its aligned part as the blocks went, the tail by an ordinary write."""
        self._wait()
        whole = self._fill - self._fill % _ALIGN
        self._write(self._blocks[0], whole)
        if whole < self._fill:
            self._ordinary()
            with memoryview(self._blocks[0]) as view:
                _write_all(self._fd, view[whole:self._fill])

    def close(self) -> None:
        self._thread.shutdown(wait=True)  # a write still running finishes; its error was or is not wanted
        blocks, self._blocks = self._blocks, []
        for block in blocks:
            if len(_SPARE_BLOCKS) < 2 and not block.closed:
                _SPARE_BLOCKS.append(block)  # for this process's next shard: its pages faulted in already
                continue
            try:
                block.close()
            except BufferError:  # a failed write's traceback still holds a view of it: freed with that
                pass

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # the write's error, if it had one

    def _write(self, block: mmap.mmap, nbytes: int) -> None:
        with memoryview(block) as view:
            written = 0
            if self._direct:
                try:
                    written = os.write(self._fd, view[:nbytes])
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
            if written < nbytes:
                self._ordinary()
                _write_all(self._fd, view[written:nbytes])

    def _ordinary(self) -> None:
        if self._direct:
            import fcntl  # where there is O_DIRECT (Linux), there is fcntl

            fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~_O_DIRECT)
            self._direct = False


# O_DIRECT writes go out a block of this size at a time
DIRECT_BLOCK = 2 << 20
_ALIGN = 4096  # the largest logical block size a disk asks O_DIRECT to align to
_O_DIRECT = getattr(os, "O_DIRECT", 0)

_SPARE_BLOCKS: list[mmap.mmap] = []  # blocks of shards written, for the next


def _block() -> mmap.mmap:
    """A page-aligned block of memory of this process's own (private: a forked process gets its
    own copy of any page either writes), one a finished shard left where there is one: its pages
    are in place, where a new block's fault in one at a time (3 faults a row at 320 px)."""
    try:
        return _SPARE_BLOCKS.pop()
    except IndexError:
        return mmap.mmap(-1, DIRECT_BLOCK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_SPARE_BLOCKS.clear)


def _open_new(path: Path) -> tuple[int, bool]:
    """A new file for writing, O_DIRECT where the system and its file system take it, and where
    there is a page cache to go around (not in tmpfs or ramfs, whose files are their pages)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    if _O_DIRECT and not file_system_in_memory(path.parent):
        try:
            return os.open(path, flags | _O_DIRECT, 0o666), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags, 0o666), False


_IN_MEMORY = {0x01021994, 0x858458F6}  # statfs f_type of tmpfs and ramfs


def file_system_in_memory(folder: Path) -> bool:
    """Whether `folder` is on a file system held in memory (tmpfs, ramfs), by statfs(2)."""
    import ctypes

    buf = ctypes.create_string_buffer(256)  # struct statfs: 120 bytes on 64-bit Linux, f_type first
    try:
        if ctypes.CDLL(None, use_errno=True).statfs(os.fsencode(folder), buf) != 0:
            return False
    except (OSError, AttributeError):
        return False
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF in _IN_MEMORY


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
