"""The Parquet shard format: schema (with Hugging Face features), an atomic writer, checksums."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# Row groups small enough that reading one row (one row group) stays cheap, large enough that
# their fixed cost is amortised: 256 small images, or about 4 MB of large ones.
ROW_GROUP_ROWS = 256
ROW_GROUP_BYTES = 4 * 2**20


def schema(class_names: list[str] | tuple[str, ...], labelled: bool = True) -> pa.Schema:
    """`image` and `label` exactly as Hugging Face `datasets` expects: any other width,
    type or nullability and it silently stops decoding images and class names."""
    fields = [
        pa.field("image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
        pa.field("label", pa.int64()),
        pa.field("source", pa.string()),
        pa.field("source_sha256", pa.string()),
        pa.field("copy", pa.int32()),
        pa.field("seed", pa.int64()),
        pa.field("transforms", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
    ]
    label = (
        {"names": list(class_names), "_type": "ClassLabel"} if labelled else {"dtype": "int64", "_type": "Value"}
    )
    features = {"image": {"_type": "Image"}, "label": label}
    for f in fields[2:]:
        features[f.name] = {"dtype": str(f.type), "_type": "Value"}
    meta = {"huggingface": json.dumps({"info": {"features": features}})}
    return pa.schema(fields, metadata=meta)


def shard_pattern(split: str) -> str:
    return f"{split}-*-of-*.parquet"


class ShardWriter:
    """Writes rows to a temporary file; the shard appears under its final name only on `publish`."""

    def __init__(self, final: Path, tmp_dir: Path, table_schema: pa.Schema):
        self.final = final
        self.tmp = tmp_dir / f"{final.name}.{os.getpid()}.tmp"
        self.schema = table_schema
        self.rows = 0
        self._sink = _HashingFile(self.tmp)
        self._buffered: list[dict] = []
        self._buffered_bytes = 0
        self._writer = pq.ParquetWriter(
            self._sink,
            table_schema,
            # images are compressed already: zstd on them costs time and saves nothing
            compression={c: "ZSTD" for c in table_schema.names if c != "image"}
            | {"image.bytes": "NONE", "image.path": "ZSTD"},
            use_dictionary=["label", "source", "source_sha256"],
            write_statistics=["label", "source", "copy", "seed", "width", "height"],
        )

    def write(self, row: dict) -> None:
        self._buffered.append(row)
        self._buffered_bytes += len(row["image"]["bytes"])
        if len(self._buffered) >= ROW_GROUP_ROWS or self._buffered_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        rows = self._buffered
        if not rows:
            return
        images = [r["image"] for r in rows]
        image = pa.StructArray.from_arrays(
            [_column([i["bytes"] for i in images], pa.binary()), _column([i["path"] for i in images], pa.string())],
            fields=list(self.schema.field("image").type),
        )
        rest = [_column([r[f.name] for r in rows], f.type) for f in list(self.schema)[1:]]
        self._writer.write_table(pa.Table.from_arrays([image, *rest], schema=self.schema))
        self.rows += len(rows)
        self._buffered, self._buffered_bytes = [], 0

    def finish(self) -> tuple[int, str, int]:
        """Close and fsync the temporary file; returns (rows, sha256, bytes)."""
        self._flush()
        self._writer.close()
        digest, size = self._sink.sync_and_close()
        return self.rows, digest, size

    def publish(self) -> None:
        os.replace(self.tmp, self.final)

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


def _column(values: list, kind: pa.DataType) -> pa.Array:
    """An Arrow array straight from buffers: `pa.array` on a list imports pandas (0.3 s in every
    worker) when pandas is installed, and is slower."""
    n = len(values)
    bitmap = None
    if None in values:
        valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    if kind in (pa.binary(), pa.string()):
        if kind == pa.string():
            values = [None if v is None else v.encode("utf-8") for v in values]
        blobs = [b"" if v is None else v for v in values]
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        return pa.Array.from_buffers(kind, n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(blobs))])
    numbers = np.array([0 if v is None else v for v in values], dtype=kind.to_pandas_dtype())
    return pa.Array.from_buffers(kind, n, [bitmap, pa.py_buffer(numbers)])


def file_sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size
