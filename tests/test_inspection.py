"""`inspect` (augpipe/inspection.py): --verify on a dataset, and what a source folder holds."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from augpipe import ExpandOptions, expand
from conftest import duplicated_folder, write_image

QUIET = dict(progress=False, workers=1)


def test_verify_with_source_finds_a_changed_source(tmp_path, folder, cli):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    assert cli("inspect", out, "--verify", "--source", folder).exit_code == 0
    write_image(folder / "dog" / "dog_004.jpg", seed=77)
    result = cli("inspect", out, "--verify", "--source", folder)
    assert result.exit_code == 1 and "source dog/dog_004.jpg: changed since it was expanded" in result.output


def test_split_by_path_leaks_and_verify_and_train_say_so(tmp_path, cli):
    data = duplicated_folder(tmp_path / "data")
    out = tmp_path / "out"
    expand(data, "flips", out, ExpandOptions(val_fraction=0.5, split_by="path", **QUIET))
    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and "leakage: identical source content in train and validation" in result.output


def test_inspect_source_lists_duplicates_and_look_alikes(tmp_path, cli):

    data = duplicated_folder(tmp_path / "data")
    image = cv2.imread(str(data / "dog" / "dog_005.jpg"))
    cv2.imwrite(str(data / "dog" / "dog_005_again.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    result = cli("inspect", data, "--json")
    facts = json.loads(result.output)
    assert len(facts["duplicates"]) == 1 and len(facts["duplicates"][0]) == 21
    assert ["dog/dog_005.jpg", "dog/dog_005_again.jpg"] in facts["near_duplicates"]


def test_verify_flags_an_augmented_copy_of_one_flat_colour(folder, tmp_path, cli):
    import pyarrow as pa

    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    k = next(i for i, r in enumerate(rows) if r["copy"] == 1)
    rows[k]["image"]["bytes"] = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and "copy 1 is a single flat colour" in result.output


def test_verify_finds_a_box_outside_its_image(scenes, tmp_path, cli):

    out = tmp_path / "out"
    expand(scenes["coco"], "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    assert cli("inspect", out, "--verify").exit_code == 0
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["objects"]["bbox"][0] = [70.0, 50.0, 40.0, 40.0]
    fixed = pa.Table.from_pylist(rows, schema=table.schema)
    pq.write_table(fixed, shard)
    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and "outside the 80×64 image" in result.output
