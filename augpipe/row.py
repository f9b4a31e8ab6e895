"""The row: one table of columns, from which the Parquet schema, the writer, the readers and
`inspect --verify` all derive.

Each `Column` owns its whole life: its Arrow type, its Hugging Face feature, how a list of
Python values becomes an Arrow array, and how it is written (dictionary, statistics,
compression). A target kind (class label today) adds its columns to the common ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from augpipe.layout import SPLITS

IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
SPLIT_TYPE = pa.dictionary(pa.int8(), pa.string())


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    feature: dict | None = None  # Hugging Face feature; None: Value(dtype) of the Arrow type
    dictionary: bool = False  # Parquet dictionary encoding: columns with few distinct values
    statistics: bool = False  # min/max in the footer, for readers' filters
    compressed: bool = True  # zstd; off for encoded images (compressed already)
    build: Callable[[list], pa.Array] | None = field(default=None, compare=False)

    def hf_feature(self) -> dict:
        if self.feature is not None:
            return self.feature
        dtype = "string" if pa.types.is_dictionary(self.type) else str(self.type)
        return {"dtype": dtype, "_type": "Value"}

    def array(self, values: list) -> pa.Array:
        return (self.build or _builder(self.type))(values)


def image_column(name: str = "image") -> Column:
    """Hugging Face's Image convention: struct<bytes, path>; any other width or type and
    `datasets` silently stops decoding it."""
    return Column(name, IMAGE_TYPE, {"_type": "Image"}, compressed=False, build=_image_array)


def label_column(class_names: list[str] | tuple[str, ...], labelled: bool) -> Column:
    feature = {"names": list(class_names), "_type": "ClassLabel"} if labelled else None
    return Column("label", pa.int64(), feature, dictionary=True, statistics=True)


COMMON = (
    Column("source", pa.string(), dictionary=True, statistics=True),
    Column("source_sha256", pa.string(), dictionary=True),
    Column("copy", pa.int32(), statistics=True),
    Column("seed", pa.int64(), statistics=True),
    Column("transforms", pa.string()),
    Column("width", pa.int32(), statistics=True),
    Column("height", pa.int32(), statistics=True),
    # which split a row belongs to, so that a folder read as one table keeps them apart
    Column("split", SPLIT_TYPE, statistics=True, build=lambda v: _split_array(v)),
)


@dataclass(frozen=True)
class RowSpec:
    """The columns of one dataset's rows, in order."""

    columns: tuple[Column, ...]
    task: str = "classification"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def schema(self) -> pa.Schema:
        features = {c.name: c.hf_feature() for c in self.columns}
        meta = {"huggingface": json.dumps({"info": {"features": features}})}
        return pa.schema([pa.field(c.name, c.type) for c in self.columns], metadata=meta)

    def table(self, rows: list[dict]) -> pa.Table:
        return pa.Table.from_arrays([c.array([r[c.name] for r in rows]) for c in self.columns], schema=self.schema())

    def writer_options(self) -> dict:
        compression = {}
        for c in self.columns:
            if pa.types.is_struct(c.type):
                for f in c.type:
                    codec = "NONE" if not c.compressed and f.type == pa.binary() else "ZSTD"
                    compression[f"{c.name}.{f.name}"] = codec
            else:
                compression[c.name] = "ZSTD" if c.compressed else "NONE"
        return {
            "compression": compression,
            "use_dictionary": [c.name for c in self.columns if c.dictionary],
            "write_statistics": [c.name for c in self.columns if c.statistics],
        }


def row_spec(kind, class_names: list[str] | tuple[str, ...], labelled: bool = True) -> RowSpec:
    """The columns of a kind's rows: the image, the target kind's columns, the common ones."""
    return RowSpec((image_column(), *kind.columns(list(class_names), labelled), *COMMON), kind.name)


# ---------------------------------------------------------------- Arrow arrays from buffers
# `pa.array` on a Python list imports pandas when it is installed (0.3 s in every worker) and is
# slower: the common types are built straight from buffers.

_NUMPY = {pa.int8(): np.int8, pa.int32(): np.int32, pa.int64(): np.int64, pa.float32(): np.float32,
          pa.float64(): np.float64, pa.bool_(): np.bool_}


def _builder(kind: pa.DataType) -> Callable[[list], pa.Array]:
    if kind in (pa.binary(), pa.string()):
        return lambda values: _bytes_array(values, kind)
    if kind in _NUMPY:
        return lambda values: _number_array(values, kind)
    return lambda values: pa.array(values, type=kind)


def _validity(values: list) -> pa.Buffer | None:
    if None not in values:
        return None
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def _bytes_array(values: list, kind: pa.DataType) -> pa.Array:
    n = len(values)
    bitmap = _validity(values)
    if kind == pa.string():
        values = [None if v is None else v.encode("utf-8") for v in values]
    blobs = [b"" if v is None else v for v in values]
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return pa.Array.from_buffers(kind, n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(blobs))])


def _number_array(values: list, kind: pa.DataType) -> pa.Array:
    numbers = np.array([0 if v is None else v for v in values], dtype=_NUMPY[kind])
    return pa.Array.from_buffers(kind, len(values), [_validity(values), pa.py_buffer(numbers)])


def _image_array(images: list[dict]) -> pa.Array:
    return pa.StructArray.from_arrays(
        [_bytes_array([i["bytes"] for i in images], pa.binary()), _bytes_array([i["path"] for i in images], pa.string())],
        fields=list(IMAGE_TYPE),
    )


def _split_array(values: list[str]) -> pa.Array:
    indices = np.array([SPLITS.index(v) for v in values], dtype=np.int8)
    codes = pa.Array.from_buffers(pa.int8(), len(values), [None, pa.py_buffer(indices)])
    return pa.DictionaryArray.from_arrays(codes, _bytes_array(list(SPLITS), pa.string()))
