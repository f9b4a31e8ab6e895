"""The typed records: Manifest (load, save, defaults, unknown keys kept) and ShardRecord."""

from __future__ import annotations

import hashlib
import json

import pyarrow.parquet as pq
import pytest

from augpipe import ExpandOptions, expand
from augpipe.errors import SourceError
from augpipe.layout import MANIFEST, SKIPPED
from augpipe.manifest import SKIPPED_INLINE, Manifest, ShardRecord
from augpipe.store import open_store
from conftest import rows

SHARD = {"name": "train-00000-of-00001.parquet", "split": "train", "rows": 2, "bytes": 10, "sha256": "ab"}


def test_a_manifest_loaded_and_saved_is_the_same_json_unknown_keys_and_order_kept(folder, tmp_path):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(workers=1, progress=False))
    text = (out / MANIFEST).read_text()
    raw = json.loads(text)
    raw = {"a_future_key": {"kept": [1, 2]}, **raw, "another": None}
    (out / MANIFEST).write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n")
    before = (out / MANIFEST).read_bytes()
    m = Manifest.load(open_store(out))
    assert m.extra["a_future_key"] == {"kept": [1, 2]} and m.task == "classification" and m.shards
    m.save(open_store(out))
    assert (out / MANIFEST).read_bytes() == before


def test_load_fills_what_older_manifests_lack_and_saves_it(tmp_path):
    store = open_store(tmp_path)
    store.write_bytes(MANIFEST, json.dumps({"shards": [SHARD], "classes": ["a"], "counts": {}, "recipe": {}}).encode())
    m = Manifest.load(store)
    assert (m.labelled, m.skipped, m.task, m.instance_masks, m.version) == (True, [], "classification", False, "?")
    m.save(store)
    saved = json.loads(store.read_text(MANIFEST))
    assert list(saved) == ["shards", "classes", "counts", "recipe", "labelled", "skipped", "task"]


@pytest.mark.parametrize("raw, message", [
    ([], "not an augpipe manifest"),
    ({"classes": [], "counts": {}, "recipe": {}}, "'shards' is missing or not a list"),
    ({"shards": [{"name": "x"}], "classes": [], "counts": {}, "recipe": {}}, "shard 0 lacks name, split"),
    ({"shards": [{**SHARD, "name": "../x"}], "classes": [], "counts": {}, "recipe": {}}, "is not an augpipe shard"),
])
def test_a_damaged_manifest_is_one_line(tmp_path, raw, message):
    store = open_store(tmp_path)
    store.write_bytes(MANIFEST, json.dumps(raw).encode())
    with pytest.raises(SourceError, match=message) as caught:
        Manifest.load(store)
    assert "\n" not in str(caught.value)


def test_many_skipped_inputs_go_to_a_sidecar_which_a_loaded_manifest_keeps(tmp_path):
    store = open_store(tmp_path)
    skipped = [{"path": f"x{i}.jpg", "reason": "damaged"} for i in range(SKIPPED_INLINE + 5)]
    Manifest(classes=[], shards=[SHARD], counts={}, recipe={}, skipped=skipped).save(store)
    saved = json.loads(store.read_text(MANIFEST))
    assert (saved["skipped_count"], len(saved["skipped"]), saved["skipped_file"]) == (len(skipped), SKIPPED_INLINE,
                                                                                      SKIPPED)
    assert len(store.read_text(SKIPPED).splitlines()) == len(skipped)
    before = store.read_bytes(MANIFEST)
    m = Manifest.load(store)
    assert m.total_skipped == len(skipped)
    m.save(store)
    assert store.read_bytes(MANIFEST) == before and len(store.read_text(SKIPPED).splitlines()) == len(skipped)


def test_a_shard_record_is_written_as_the_record_json_always_was_with_drops_by_reason_and_rows_by_class_last():
    record = ShardRecord(name="train-00000-of-00001.parquet", split="train", rows=3, bytes=100, sha256="ff",
                         sources=2, originals=2, augmented=1, by_class={"café": 3}, conversions={"16-bit": 1},
                         skipped=[["a.jpg", "damaged"]], failed_copies=[["b.jpg", 1, "augmentation failed"]],
                         dropped_boxes=0, dropped_objects=[], exif_oriented=1, exif_oriented_first="c.jpg",
                         seconds=0.25, dropped_by={"mosaic: cut off": {"cat": 2}}, rows_by_class={"café": 2})
    old = {"name": "train-00000-of-00001.parquet", "split": "train", "rows": 3, "bytes": 100, "sha256": "ff",
           "sources": 2, "originals": 2, "augmented": 1, "by_class": {"café": 3}, "conversions": {"16-bit": 1},
           "skipped": [["a.jpg", "damaged"]], "failed_copies": [["b.jpg", 1, "augmentation failed"]],
           "dropped_boxes": 0, "dropped_objects": [], "exif_oriented": 1, "exif_oriented_first": "c.jpg",
           "seconds": 0.25, "dropped_by": {"mosaic: cut off": {"cat": 2}}, "rows_by_class": {"café": 2}}
    assert record.to_json() == json.dumps(old, ensure_ascii=False).encode("utf-8")
    assert ShardRecord.from_dict(json.loads(record.to_json())) == record
    assert record.entry() == {k: old[k] for k in ("name", "split", "rows", "bytes", "sha256")}


@pytest.mark.parametrize("raw", [None, [], {"name": "x"}, {**SHARD, "rows": "2"}])
def test_a_record_that_is_not_one_reads_as_none(raw):
    assert ShardRecord.from_dict(raw) is None


def test_a_shard_s_record_on_disk_is_its_typed_record(folder, tmp_path):
    from augpipe.formats import scan
    from augpipe.jobs import RunSpec, write_shard
    from augpipe.layout import record_name
    from augpipe.plan import make_plan
    from augpipe.recipe import load_recipe

    recipe = load_recipe("flips")
    found = scan(str(folder))
    task = make_plan(found, recipe, 1, 0.0, False, 1 << 30).shards[0]
    out = tmp_path / "out"
    (out / ".augpipe" / "tmp").mkdir(parents=True)
    record = write_shard(task, RunSpec(str(folder), str(out), recipe, 0, 10**8, False, tuple(found.classes), True))
    assert isinstance(record, ShardRecord) and record.rows == 2 * len(task.sources)
    assert (out / record_name(task.name)).read_bytes() == record.to_json()


QUIET = dict(progress=False, workers=1)


def test_a_manifest_nested_beyond_reason_is_no_manifest(tmp_path):
    from augpipe.manifest import MANIFEST, read_manifest
    from augpipe.store import open_store

    (tmp_path / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    assert read_manifest(open_store(tmp_path)) is None


def test_manifest_checksums_counts_and_recipe_match_the_files(folder, tmp_path):
    out = tmp_path / "out"
    expand(folder, "classic", out, ExpandOptions(seed=5, **QUIET))
    m = json.loads((out / "_augpipe.json").read_text())
    assert m["seed"] == 5 and m["recipe"]["name"] == "classic" and "HorizontalFlip" in m["recipe"]["text"]
    assert {s["name"] for s in m["shards"]} == {p.name for p in out.glob("*.parquet")}
    for shard in m["shards"]:
        data = (out / shard["name"]).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (shard["sha256"], shard["bytes"])
        assert pq.ParquetFile(out / shard["name"]).metadata.num_rows == shard["rows"]
    assert sum(c["rows"] for c in m["counts"].values()) == len(rows(out))
    assert m["classes"] == ["cat", "dog"] and "seconds" in m["timing"]
    assert not (out / ".augpipe").exists()


@pytest.mark.parametrize("change, why", [
    ({"task": "keypointz"}, r"its target kind 'keypointz' is none augpipe knows \(classification, detection"),
    ({"task": 5}, "its target kind 5 is none augpipe knows"),
    ({"skipped": "all"}, "'skipped' is not a list: the manifest is damaged"),
    ({"options": None}, "'options' is not a dict: the manifest is damaged"),
    ({"instance_masks": "yes"}, "'instance_masks' is not a bool: the manifest is damaged")])
def test_a_manifest_of_an_unknown_kind_or_wrong_typed_keys_is_damaged_in_one_line(folder, tmp_path, change, why):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(workers=1, progress=False))
    raw = json.loads((out / MANIFEST).read_text())
    (out / MANIFEST).write_text(json.dumps({**raw, **change}))
    with pytest.raises(SourceError, match=why) as info:
        Manifest.load(open_store(out))
    assert "\n" not in str(info.value)
