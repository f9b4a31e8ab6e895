"""Dataset.iter_batches: the one way rows are read (readers, inspect, preview, train)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from augpipe import ExpandOptions, expand
from augpipe.dataset import open_dataset
from augpipe.errors import SourceError
from conftest import make_scenes


@pytest.fixture
def dataset(folder, tmp_path):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(workers=1, progress=False, shard_size=20_000))
    return open_dataset(out)


def test_iter_batches_reads_every_row_of_a_split_in_the_manifest_s_order(dataset):
    rows = [r for b in dataset.iter_batches("train", ["source", "copy"]) for r in b.to_pylist()]
    assert len(rows) == sum(s["rows"] for s in dataset.shards("train"))
    assert len(dataset.shards("train")) > 1
    assert dataset.read("train", ["source", "copy"]).to_pylist() == rows


def test_pieces_read_runs_of_rows_across_row_groups_and_where_filters(dataset):
    every = [r["source"] for b in dataset.iter_batches("train", ["source"]) for r in b.to_pylist()]
    first = dataset.shards("train")[0]["rows"]
    got = [r["source"] for b in dataset.iter_batches("train", ["source"], pieces=[(1, 1, 3), (0, 0, 2)])
           for r in b.to_pylist()]
    assert got == every[first + 1:first + 3] + every[:2]
    chosen = sorted(set(every))[:2]
    kept = [r["source"] for b in dataset.iter_batches("train", ["source", "copy"], where=("source", chosen))
            for r in b.to_pylist()]
    assert sorted(kept) == sorted(s for s in every if s in chosen)


def test_a_nested_column_is_its_field_as_pyarrow_datasets_name_it(tmp_path):
    out = tmp_path / "out"
    expand(make_scenes(tmp_path / "scenes", n=4), "flips", out, ExpandOptions(workers=1, progress=False))
    ds = open_dataset(out)
    table = ds.read("train", ["objects.bbox", "objects.category", "width"])
    assert table.column_names == ["bbox", "category", "width"]
    assert pa.types.is_list(table.schema.field("category").type)


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_shard_that_cannot_be_read_is_named_in_one_line(dataset, damage):
    name = dataset.shards("train")[-1]["name"]
    path = dataset.store.root / name
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SourceError) as caught:
        list(dataset.iter_batches("train", ["source"]))
    message = str(caught.value)
    assert name in message and "\n" not in message and "augpipe inspect --verify" in message
    assert ("is missing" if damage == "missing" else "cannot be read") in message


def test_a_manifest_whose_kind_does_not_match_its_shards_is_one_line(tmp_path, cli):
    """A detection dataset's manifest saying classification (or no kind: 0.1's default): the rows
    have no `label` for it; preview and export say so instead of drawing every row unlabelled."""
    out = tmp_path / "out"
    expand(make_scenes(tmp_path / "src", n=4), "flips", out, ExpandOptions(workers=1, progress=False, copies=0))
    raw = json.loads((out / "_augpipe.json").read_text())
    for manifest in ({**raw, "task": "classification"}, {k: v for k, v in raw.items() if k != "task"}):
        (out / "_augpipe.json").write_text(json.dumps(manifest))
        result = cli("preview", out, "--out", tmp_path / "p.png")
        assert result.exit_code == 2 and "has no 'label' column, which its manifest's classification kind needs: " \
            "the manifest does not match its shards" in result.output, result.output
        assert not (tmp_path / "p.png").exists()


def test_local_shards_are_read_in_the_calling_thread_and_remote_ones_ahead_by_arrows_threads(dataset, monkeypatch):
    """A local file's row group is read where it is needed, without Arrow's threads or ranges
    fetched ahead (they cost a stream's cold row group more than its read); a remote store's
    column chunks are fetched ahead together by Arrow's threads, one round trip."""
    import fsspec
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from augpipe.dataset import parquet_file, read_group
    from augpipe.readers import ShardDataset, ShardIterable

    reads = []  # (the file's pre_buffer, the read's use_threads)
    make, read_row_group = pq.ParquetFile.__init__, pq.ParquetFile.read_row_group

    def made(self, *args, **kwargs):
        self.pre_buffered = kwargs.get("pre_buffer", True)
        make(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "__init__", made)
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", lambda self, *a, **k: reads.append(
        (self.pre_buffered, k.get("use_threads", True))) or read_row_group(self, *a, **k))
    rows = sum(b.num_rows for b in dataset.iter_batches("train", ["source"]))
    items = ShardDataset(dataset.location)[0], next(iter(ShardIterable(dataset.location)))
    assert rows and all(item is not None for item in items)
    assert len(reads) >= 3 and set(reads) == {(False, False)}

    memory = fsspec.filesystem("memory")
    shard = dataset.location + "/" + dataset.shards("train")[0]["name"]
    with open(shard, "rb") as src, memory.open("/shard.parquet", "wb") as dst:
        dst.write(src.read())
    remote = pafs.PyFileSystem(pafs.FSSpecHandler(memory))
    reader = parquet_file(remote, remote.open_input_file("/shard.parquet"))
    assert reader.pre_buffered is True and reader.augpipe_threads is True
    assert read_group(reader, 0, None).num_rows == reader.metadata.row_group(0).num_rows
    assert reads[-1] == (True, True)
