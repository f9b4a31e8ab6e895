"""A keypoints dataset's whole life at the library level, without a format's reader: a source's
objects with their keypoints augmented by `augment_sample`, written as a shard, then read back by
Hugging Face `datasets`, pyarrow and the torch readers, verified by `inspect --verify`, and drawn
by preview."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from augpipe.formats.base import Objects
from augpipe.manifest import Manifest
from augpipe.recipe import parse_recipe
from augpipe.row import row_spec
from augpipe.sample import SourceItem, augment_sample
from augpipe.shards import ShardWriter
from augpipe.store import open_store
from augpipe.targets import kind_for
from augpipe.targets.keypoints import LEFT, RIGHT

NAMES = ("nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder", "left_hip", "right_hip")
SKELETON = ((0, 1), (0, 2), (3, 4), (3, 5), (4, 6), (5, 6))
FLIP_IDX = (0, 2, 1, 4, 3, 6, 5)
W, H = 160, 120
RECIPE = """name: mirror
copies: 2
output: {resize: {width: 320, height: 240}}
transforms:
  - HorizontalFlip: {p: 1}
  - Affine: {rotate: [-15, 15], border_mode: 0, p: 1}
"""
# two people facing the camera (their left on the image's right): x, y, visibility for each of the
# 7 keypoints; the second one's right hip hidden, its left hip not labelled
PEOPLE = (
    ((20.0, 10.0, 50.0, 100.0), (45, 20, 2, 50, 16, 2, 40, 16, 2, 60, 45, 2, 30, 45, 2, 55, 95, 2, 35, 95, 2)),
    ((90.0, 20.0, 50.0, 90.0), (115, 30, 2, 120, 26, 2, 110, 26, 2, 130, 55, 2, 100, 55, 2, 0, 0, 0, 105, 100, 1)),
)


def picture() -> bytes:
    """A picture of the two people (a green box each) on a grey gradient."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:] = np.linspace(40, 200, W, dtype=np.uint8)[None, :, None]
    for box, values in PEOPLE:
        x, y, w, h = map(int, box)
        cv2.rectangle(rgb, (x, y), (x + w, y + h), (90, 140, 90), -1)
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture(scope="module")
def kind():
    return kind_for("keypoints", keypoint_names=NAMES, skeleton=SKELETON, flip_idx=FLIP_IDX)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, kind):
    """An expanded dataset made by hand: the rows augment_sample makes, a shard, a manifest."""
    folder = tmp_path_factory.mktemp("people")
    objects = Objects(tuple(b for b, _ in PEOPLE), (0, 0), (11, 12), fields={"keypoints": tuple(p for _, p in PEOPLE)})
    recipe = parse_recipe(RECIPE, "mirror.yaml")
    assert kind.check_recipe(recipe) == []
    result = augment_sample(picture(), SourceItem("people.png", None, (0, 1, 2), target=objects), recipe, 7, 10**8,
                            kind=kind)
    assert not result.failures
    name = "train-00000-of-00001.parquet"
    writer = ShardWriter(name, folder, row_spec(kind, ["person"]))
    for row in result.rows:
        writer.write(row)
    rows, digest, size = writer.finish()
    store = open_store(folder)
    writer.publish(store)
    Manifest.from_dict({
        "task": kind.name, **kind.manifest_fields(), "classes": ["person"], "labelled": True, "seed": 7,
        "shards": [{"name": name, "split": "train", "rows": rows, "bytes": size, "sha256": digest}],
        "counts": {"train": {"sources": 1, "rows": rows, "originals": 1, "augmented": rows - 1,
                             "by_class": dict(kind.count(result.rows, ["person"], None))}},
        "recipe": {"name": recipe.name, "path": recipe.path, "sha256": recipe.sha256, "text": recipe.text},
    }).save(store)
    return folder, result.rows


def points(row: dict) -> np.ndarray:
    """A row's keypoints (N, K, 3): x, y, visibility."""
    return np.array([[p["x"], p["y"], p["visibility"]] for p in row["objects"]["keypoints"]],
                    dtype=np.float64).transpose(0, 2, 1)


def test_every_copy_keeps_each_object_s_k_keypoints_in_order_left_and_right_swapped(dataset):
    original, *copies = dataset[1]
    given = np.array([p for _, p in PEOPLE], np.float64).reshape(2, 7, 3)
    assert points(original)[..., :2] == pytest.approx(given[..., :2] * 2)  # output.resize: twice the size
    assert points(original)[..., 2].tolist() == given[..., 2].tolist()
    for row in copies:
        got = points(row)
        assert got.shape == (2, 7, 3) and row["objects"]["id"].tolist() == [11, 12]
        # mirrored, and left and right swapped back: each left eye, shoulder and hip still on the
        # image's right of its right one, as people facing the camera have them
        assert (got[:, 1:4:2, 0] > got[:, 2:5:2, 0]).all() and got[0, 5, 0] > got[0, 6, 0]
        # visibility travels with its keypoint: the hidden right hip is now the left hip, hidden
        assert got[1, 5, 2] == 1 and got[1, 6].tolist() == [0, 0, 0]


def test_hugging_face_datasets_reads_the_keypoints_with_named_features(dataset, tmp_path):
    datasets = pytest.importorskip("datasets")
    folder, rows = dataset
    ds = datasets.load_dataset("parquet", data_files=str(folder / "train-*.parquet"), cache_dir=str(tmp_path))["train"]
    objects = ds.features["objects"]
    keypoints = (objects.feature if hasattr(objects, "feature") else objects)["keypoints"]
    named = keypoints.feature  # an object's keypoints: x, y and visibility, K of each
    assert set(named) == {"x", "y", "visibility"} and all(named[n].length == 7 for n in named)
    assert named["visibility"].feature.dtype == "int8" and named["x"].feature.dtype == "float32"
    first = ds[0]["objects"]["keypoints"][1]
    assert first["visibility"] == [2, 2, 2, 2, 2, 0, 1] and first["x"][0] == pytest.approx(230)


def test_pyarrow_reads_the_keypoints_as_fixed_size_lists(dataset, kind):
    folder, rows = dataset
    table = pq.read_table(folder / "train-00000-of-00001.parquet")
    point = table.schema.field("objects").type.field("keypoints").type.value_type
    assert [(point.field(n).type.list_size, point.field(n).type.value_type) for n in ("x", "y", "visibility")] == \
        [(7, pa.float32()), (7, pa.float32()), (7, pa.int8())]
    metadata = json.loads(table.schema.metadata[b"huggingface"])
    assert metadata["info"]["features"]["objects"]["feature"]["keypoints"]["length"] == 7
    for back, made in zip(table.to_pylist(), rows):
        assert kind.arrays(back)["keypoints"].tolist() == points(made).astype(np.float32).tolist()


def test_the_torch_readers_give_keypoints_n_k_3(dataset):
    torch = pytest.importorskip("torch")
    from augpipe.readers import ShardDataset

    folder, rows = dataset
    reader = ShardDataset(folder, convention="torchvision")
    assert reader.kind.name == "keypoints" and reader.kind.keypoint_names == NAMES
    for i, row in enumerate(rows):
        image, target = reader[i]
        assert target["keypoints"].dtype == torch.float32 and tuple(target["keypoints"].shape) == (2, 7, 3)
        assert target["keypoints"].tolist() == points(row).astype(np.float32).tolist()
        assert target["labels"].tolist() == [1, 1] and tuple(image.shape) == (3, 240, 320)


def test_inspect_verify_passes_the_dataset_and_the_kind_finds_a_bad_keypoint(dataset, kind):
    from augpipe.inspection import inspect_output

    folder, rows = dataset
    assert inspect_output(folder, verify=True)["problems"] == []
    back = pq.read_table(folder / "train-00000-of-00001.parquet").to_pylist()[0]
    back["objects"]["keypoints"][0]["x"][3] = 400.0
    assert kind.verify(back, 320, 240, ["person"]) == ["object 0 keypoint 3 (400.0, 90.0): outside the 320×240 image"]
    back["objects"]["keypoints"][1] = {"x": [1.0] * 5, "y": [1.0] * 5, "visibility": [2] * 5}
    assert kind.verify(back, 320, 240, ["person"])[-1] == "object 1: 5 keypoints, not 7"


def test_preview_draws_the_keypoints_and_the_skeleton_left_and_right_apart(dataset, tmp_path):
    from augpipe.preview import preview_shards, render_sheet, write_html, write_sheet

    folder, _ = dataset
    preview = preview_shards(folder)
    assert [t.copy for t in preview.rows[0].tiles] == [0, 1, 2]
    for tile in preview.rows[0].tiles:
        for colour in (LEFT, RIGHT):
            assert (tile.rgb == colour).all(axis=2).sum() > 20, (tile.copy, colour)
    sheet = render_sheet(preview, tile=256)
    assert (sheet == LEFT).all(axis=2).any() and (sheet == RIGHT).all(axis=2).any()
    assert write_sheet(preview, tmp_path / "sheet.png", tile=256).stat().st_size > 0
    assert "copy 2" in write_html(preview, tmp_path / "gallery").read_text()
