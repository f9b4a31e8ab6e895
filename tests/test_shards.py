"""A shard's file: written around the page cache where the file system allows it, the same bytes
and checksum as an ordinary file whatever the writes' sizes, and an ordinary file where the file
system refuses."""

import errno
import fcntl
import hashlib
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

from augpipe import shards
from augpipe.shards import DIRECT_BLOCK, _HashingFile, file_system_in_memory

SIZES = [0, 1, 4095, 4096, 4097, DIRECT_BLOCK - 1, DIRECT_BLOCK, DIRECT_BLOCK + 1, 3 * DIRECT_BLOCK + 12_345]


def _pieces(total: int, rng: random.Random) -> list[bytes]:
    """`total` random bytes cut at random places, from single bytes to more than a block."""
    data = rng.randbytes(total)
    out, at = [], 0
    while at < total:
        step = rng.choice([1, 7, 4096, 65_537, DIRECT_BLOCK + 3, rng.randrange(1, 300_000)])
        out.append(data[at:at + step])
        at += step
    return out


def _direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0))


@pytest.mark.parametrize("total", SIZES)
def test_a_shard_file_holds_exactly_what_was_written_and_its_checksum(tmp_path, total):
    pieces = _pieces(total, random.Random(total))
    sink = _HashingFile(tmp_path / "s.tmp")
    for piece in pieces:
        assert sink.write(piece) == len(piece)
    assert sink.tell() == total
    digest, size = sink.sync_and_close()
    written = (tmp_path / "s.tmp").read_bytes()
    assert written == b"".join(pieces)
    assert (digest, size) == (hashlib.sha256(written).hexdigest(), total)


def test_shards_after_the_first_reuse_its_blocks_and_a_forked_process_writes_its_own(tmp_path):
    """A finished shard's O_DIRECT blocks serve the process's next shard (their pages are in place);
    they are the process's own: a forked process writing a shard while its parent writes another
    leaves each file exactly what each wrote."""
    def write(path: Path, seed: int, total: int) -> bytes:
        pieces = _pieces(total, random.Random(seed))
        sink = _HashingFile(path)
        for piece in pieces:
            sink.write(piece)
        sink.sync_and_close()
        return b"".join(pieces)

    assert write(tmp_path / "a", 1, 2 * DIRECT_BLOCK + 77) == (tmp_path / "a").read_bytes()
    assert write(tmp_path / "b", 2, 5_000) == (tmp_path / "b").read_bytes()  # reused blocks, shorter: no stale bytes
    pid = os.fork()
    if pid == 0:
        try:
            ok = write(tmp_path / "child", 3, 3 * DIRECT_BLOCK + 5) == (tmp_path / "child").read_bytes()
        finally:
            os._exit(0 if ok else 1)
    mine = write(tmp_path / "parent", 4, 3 * DIRECT_BLOCK + 9)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / "parent").read_bytes() == mine
    assert (tmp_path / "child").read_bytes() == _pieces_joined(3, 3 * DIRECT_BLOCK + 5)


def _pieces_joined(seed: int, total: int) -> bytes:
    return b"".join(_pieces(total, random.Random(seed)))


def test_the_file_goes_around_the_page_cache_where_the_file_system_takes_it(tmp_path):
    probe = tmp_path / "probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
    except (AttributeError, OSError):
        pytest.skip("this file system does not take O_DIRECT")
    if file_system_in_memory(tmp_path):
        pytest.skip("the temporary folder is in memory (tmpfs): no page cache to go around")
    sink = _HashingFile(tmp_path / "s.tmp")
    assert _direct(sink._fd)
    sink.write(b"x" * (DIRECT_BLOCK + 10))
    sink.sync_and_close()
    assert (tmp_path / "s.tmp").read_bytes() == b"x" * (DIRECT_BLOCK + 10)


def test_a_file_system_in_memory_gets_an_ordinary_file(tmp_path):
    """tmpfs takes O_DIRECT (Linux 6.6 and later), but its files are their page-cache pages:
    going around them would only add a copy."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK) and file_system_in_memory(shm)):
        pytest.skip("no tmpfs at /dev/shm")
    assert not file_system_in_memory(Path("/proc/self")) and not file_system_in_memory(tmp_path / "missing")
    folder = Path(tempfile.mkdtemp(dir=shm))
    try:
        sink = _HashingFile(folder / "s.tmp")
        assert not _direct(sink._fd)
        sink.write(b"z" * (DIRECT_BLOCK + 5))
        assert sink.sync_and_close()[1] == DIRECT_BLOCK + 5
        assert (folder / "s.tmp").read_bytes() == b"z" * (DIRECT_BLOCK + 5)
    finally:
        shutil.rmtree(folder)


def _refusing_direct_writes(monkeypatch, error: int, calls: list):
    """os.write as a file system that opens O_DIRECT files but fails their writes with `error`."""
    real = os.write

    def write(fd, data):
        if _direct(fd):
            calls.append(len(data))
            raise OSError(error, os.strerror(error))
        return real(fd, data)

    monkeypatch.setattr(shards.os, "write", write)


def test_a_file_system_that_refuses_direct_writes_gets_an_ordinary_file(tmp_path, monkeypatch):
    refused: list = []
    _refusing_direct_writes(monkeypatch, errno.EINVAL, refused)
    pieces = _pieces(2 * DIRECT_BLOCK + 999, random.Random(1))
    sink = _HashingFile(tmp_path / "s.tmp")
    opened_direct = _direct(sink._fd)
    for piece in pieces:
        sink.write(piece)
    digest, size = sink.sync_and_close()
    written = (tmp_path / "s.tmp").read_bytes()
    assert written == b"".join(pieces) and digest == hashlib.sha256(written).hexdigest()
    assert len(refused) == opened_direct  # refused once, then ordinary writes


def test_a_full_disk_is_an_error_from_the_shard_writer_not_a_lost_write(tmp_path, monkeypatch):
    sink = _HashingFile(tmp_path / "s.tmp")
    if not _direct(sink._fd):
        pytest.skip("this file system does not take O_DIRECT")
    _refusing_direct_writes(monkeypatch, errno.ENOSPC, [])
    with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
        for _ in range(4):  # the first full block's write fails on the writing thread: the next one raises
            sink.write(b"y" * DIRECT_BLOCK)
        sink.sync_and_close()
    sink.close()  # what an aborted shard does next: no second error
    assert sink.closed
