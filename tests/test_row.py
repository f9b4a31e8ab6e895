"""The row and its schema (augpipe/row.py): the shards as Hugging Face datasets, pandas, polars and
duckdb read them, without augpipe's code."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from augpipe import ExpandOptions, expand

QUIET = dict(progress=False, workers=1)


def test_the_output_folder_reads_as_one_table_with_a_split_column(tmp_path, folder):
    import datasets
    import duckdb
    import pandas as pd
    import polars as pl

    out = tmp_path / "out"
    m = expand(folder, "flips", out, ExpandOptions(**QUIET))
    total = sum(c["rows"] for c in m["counts"].values())
    df = pd.read_parquet(out)
    assert len(df) == total and set(df["split"]) == {"train", "validation"}
    assert pq.read_table(out).num_rows == total
    assert pl.read_parquet(out / "*.parquet").height == total
    counts = dict(duckdb.connect().execute(f"select split, count(*) from '{out}/*.parquet' group by split").fetchall())
    assert counts == {s: c["rows"] for s, c in m["counts"].items()}
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert {s: ds[s].num_rows for s in ds} == {s: c["rows"] for s, c in m["counts"].items()}
    assert ds["train"].features["label"].names == ["cat", "dog"]
    assert set(ds["validation"]["split"]) == {"validation"}


def test_hugging_face_reads_detection_and_segmentation_shards(scenes, tmp_path):
    import datasets

    det, seg = tmp_path / "det", tmp_path / "seg"
    expand(scenes["coco"], "flips", det, ExpandOptions(**QUIET))
    expand(scenes["masks"], "flips", seg, ExpandOptions(**QUIET))
    ds = datasets.load_dataset("parquet", data_dir=str(det), cache_dir=str(tmp_path / "c1"))
    objects = ds["train"].features["objects"]
    names = objects.feature["category"].names if hasattr(objects, "feature") else objects["category"].feature.names
    assert names == ["box", "disc"]
    first = ds["train"][0]
    assert first["image"].size == (80, 64)
    boxes = first["objects"]["bbox"] if isinstance(first["objects"], dict) else [o["bbox"] for o in first["objects"]]
    assert boxes and all(len(b) == 4 for b in boxes)
    ds = datasets.load_dataset("parquet", data_dir=str(seg), cache_dir=str(tmp_path / "c2"))
    assert "label" not in ds["train"].features
    mask = ds["train"][0]["annotation"]
    assert mask.size == (80, 64) and mask.mode in ("L", "P")
    assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 1, 2}


def test_datasets_3_feature_names_in_the_schema(scenes, tmp_path):
    out = tmp_path / "out"
    expand(scenes["coco"], "flips", out, ExpandOptions(**QUIET))
    schema = pq.read_schema(next(out.glob("train-*.parquet")))
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert features["objects"]["_type"] == "Sequence" and '"List"' not in json.dumps(features)
    bbox = schema.field("objects").type.field("bbox").type.value_type  # list<fixed_size_list<float32>[4]>
    assert bbox.list_size == 4 and bbox.value_type == pa.float32()


def test_expand_writes_hf_named_shards_with_the_exact_schema(folder, tmp_path):
    out = tmp_path / "out"
    m = expand(folder, "flips", out, ExpandOptions(**QUIET))
    names = sorted(p.name for p in out.glob("*.parquet"))
    assert names and all(n.split("-")[0] in ("train", "validation") for n in names)
    assert any(n.startswith("train-00000-of-") for n in names)
    schema = pq.read_schema(next(out.glob("train-*.parquet")))
    assert schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert schema.field("image").nullable and schema.field("label").nullable
    assert schema.field("label").type == pa.int64()
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert features["image"] == {"_type": "Image"}
    assert features["label"] == {"names": ["cat", "dog"], "_type": "ClassLabel"}
    assert set(schema.names) == {"image", "label", "source", "source_sha256", "copy", "seed", "transforms",
                                 "width", "height", "split"}
    assert m["counts"]["train"]["rows"] == 3 * m["counts"]["train"]["originals"]  # flips: 2 copies + original


def test_readers_need_no_augpipe_code(folder, tmp_path):
    import duckdb
    import pandas as pd

    out = tmp_path / "out"
    m = expand(folder, "flips", out, ExpandOptions(**QUIET))
    train_rows = m["counts"]["train"]["rows"]
    df = pd.concat(pd.read_parquet(p) for p in sorted(out.glob("train-*.parquet")))
    assert len(df) == train_rows and set(df["label"]) == {0, 1}
    query = f"select count(*) from read_parquet('{out}/train-*.parquet') where copy > 0"
    got = duckdb.connect().execute(query).fetchall()[0][0]
    assert got == m["counts"]["train"]["augmented"]


def test_hugging_face_datasets_round_trip(folder, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    m = expand(folder, "flips", out, ExpandOptions(val_fraction=0.3, **QUIET))
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "validation"}
    assert ds["train"].num_rows == m["counts"]["train"]["rows"]
    assert ds["train"].features["label"].names == ["cat", "dog"]
    assert isinstance(ds["train"].features["image"], datasets.Image)
    first = ds["validation"][0]
    assert first["image"].size == (32, 32) and first["image"].mode == "RGB"
    same = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "cache2"))
    assert same["validation"].num_rows == ds["validation"].num_rows
