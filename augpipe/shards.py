"""The Parquet shard: names, a writer that publishes only finished files, checksums.

What goes in a row is `augpipe.row`'s to say."""

from __future__ import annotations

import hashlib
import os
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
    """The file a shard is written to, hashed on the way out: no second read of the shard."""

    closed = False

    def __init__(self, path: Path):
        self._fh = open(path, "wb")
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data) -> int:
        self._hash.update(data)
        self._size += len(data)
        return self._fh.write(data)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._fh.flush()

    def sync_and_close(self) -> tuple[str, int]:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.close()
        return self._hash.hexdigest(), self._size

    def close(self) -> None:
        self._fh.close()
        self.closed = True
