"""Readers for every task (issue 11): targets, collate, the recipe on the fly."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")

from conftest import make_folder, make_scenes, upload

from augpipe import ExpandOptions, expand
from augpipe.decode import row_image
from augpipe.manifest import read_manifest
from augpipe.targets.masks import read_instance_mask
from augpipe.targets.masks import read_mask
from augpipe.readers import RecipeTransform, ShardDataset, ShardIterable, collate, row_key, split_by_node
from augpipe.store import open_store

QUIET = {"workers": 1, "progress": False}
SEED = 5
# lossless output, so that expand's copies and the reader's draws can be compared pixel for pixel
RECIPE = """name: shake
copies: 2
output: {format: png}
transforms:
  - HorizontalFlip: {p: 0.5}
  - VerticalFlip: {p: 0.5}
  - Affine: {translate_percent: [-0.1, 0.1], rotate: [-10, 10], p: 0.7}
  - ColorJitter: {brightness: [0.8, 1.2], contrast: [0.8, 1.2], p: 0.5}
"""


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "shake.yaml"
    path.write_text(RECIPE)
    return path


@pytest.fixture(scope="module")
def coco(tmp_path_factory, recipe_file) -> Path:
    """Detection with instance masks (COCO polygons), originals and copies 1, 2 at --seed 5."""
    root = tmp_path_factory.mktemp("coco")
    out = root / "out"
    expand(make_scenes(root / "src", n=12), str(recipe_file), out, ExpandOptions(seed=SEED, val_fraction=0.2, **QUIET))
    return out


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory, recipe_file) -> Path:
    root = tmp_path_factory.mktemp("masks")
    out = root / "out"
    expand(make_scenes(root / "src", n=8, fmt="masks"), str(recipe_file), out,
           ExpandOptions(seed=SEED, val_fraction=0.2, **QUIET))
    return out


@pytest.fixture(scope="module")
def yolo(tmp_path_factory) -> Path:
    """Detection without instance masks, originals only."""
    root = tmp_path_factory.mktemp("yolo")
    out = root / "out"
    expand(make_scenes(root / "src", n=6, fmt="yolo"), "flips", out, ExpandOptions(copies=0, **QUIET))
    return out


def rows(out: Path, split: str = "train") -> list[dict]:
    return list(ShardDataset(out, split, return_row=True))


# ---------------------------------------------------------------- targets

def test_detection_targets_are_the_shards_boxes_in_either_format(coco):
    xyxy, xywh = ShardDataset(coco), ShardDataset(coco, box_format="xywh")
    assert len(xyxy) == len(rows(coco))
    for i, row in enumerate(rows(coco)):
        image, target = xyxy[i]
        _, coco_target = xywh[i]
        assert image.dtype == torch.uint8 and image.shape == (3, row["height"], row["width"])
        assert torch.equal(image, row["image"])
        stored = np.asarray(row["objects"]["bbox"], np.float32).reshape(-1, 4)
        assert coco_target["boxes"].dtype == torch.float32 and np.array_equal(coco_target["boxes"].numpy(), stored)
        corners = stored.copy()
        corners[:, 2:] += corners[:, :2]
        assert np.array_equal(target["boxes"].numpy(), corners)
        assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == row["objects"]["category"]
        masks = np.stack([read_instance_mask(m["bytes"]) > 0 for m in row["objects"]["mask"]]).astype(np.uint8)
        assert target["masks"].dtype == torch.uint8 and np.array_equal(target["masks"].numpy(), masks)
        assert set(target) == {"boxes", "labels", "masks"}
        assert torch.equal(row["target"]["boxes"], target["boxes"])  # return_row carries the target too


def test_detection_without_instance_masks_has_boxes_and_labels_only(yolo):
    for (image, target), row in zip(ShardIterable(yolo, box_format="xywh"), rows(yolo)):
        assert set(target) == {"boxes", "labels"}
        assert np.allclose(target["boxes"].numpy(), np.asarray(row["objects"]["bbox"]).reshape(-1, 4))


def test_segmentation_target_is_the_decoded_mask(segmentation):
    source = segmentation.parent / "src" / "masks"
    ds = ShardDataset(segmentation)
    for i, row in enumerate(rows(segmentation)):
        image, mask = ds[i]
        assert mask.dtype == torch.int64 and mask.shape == image.shape[1:]
        assert np.array_equal(mask.numpy(), read_mask(row["annotation"]["bytes"], "a")[0])
        if row["copy"] == 0:
            original = read_mask((source / Path(row["source"]).name).read_bytes(), "a")[0]
            assert np.array_equal(mask.numpy(), original) and set(np.unique(original)) <= {0, 1, 2}


def test_classification_is_unchanged(tmp_path):
    out = tmp_path / "out"
    expand(make_folder(tmp_path / "data", per_class=3), "flips", out, ExpandOptions(copies=1, **QUIET))
    ds = ShardDataset(out)
    image, label = ds[0]
    assert isinstance(label, int) and image.shape == (3, 32, 32)
    images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert images.shape == (4, 3, 32, 32) and labels.dtype == torch.int64
    assert labels.tolist() == [ds[i][1] for i in range(4)]


def test_box_format_is_checked(coco):
    with pytest.raises(ValueError, match="box_format"):
        ShardDataset(coco, box_format="cxcywh")


# ---------------------------------------------------------------- collate

@pytest.mark.parametrize("workers", [0, 2])
def test_collate_batches_detection_rows_of_different_box_counts(coco, workers):
    ds = ShardDataset(coco)
    counts = [len(ds[i][1]["boxes"]) for i in range(len(ds))]
    assert len(set(counts)) > 1
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=workers, collate_fn=collate)
    seen = []
    for images, targets in loader:
        assert images.shape == (len(targets), 3, 64, 80) and images.dtype == torch.uint8
        assert all(t["boxes"].shape == (len(t["labels"]), 4) and t["masks"].shape[0] == len(t["labels"])
                   for t in targets)
        seen += [len(t["boxes"]) for t in targets]
    assert seen == counts


def test_collate_keeps_images_of_different_sizes_as_a_list():
    small, large = torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(3, 9, 8, dtype=torch.uint8)
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    images, targets = collate([(small, target), (large, target)])
    assert isinstance(images, list) and [i.shape[1] for i in images] == [8, 9] and targets == [target, target]
    masks = collate([(small, torch.zeros(8, 8, dtype=torch.int64)), (small, torch.ones(8, 8, dtype=torch.int64))])
    assert masks[0].shape == (2, 3, 8, 8) and masks[1].shape == (2, 8, 8)


def test_collate_stacks_segmentation_masks(segmentation):
    images, masks = next(iter(torch.utils.data.DataLoader(ShardDataset(segmentation), batch_size=3,
                                                          collate_fn=collate)))
    assert images.shape == (3, 3, 64, 80) and masks.shape == (3, 64, 80) and masks.dtype == torch.int64


# ---------------------------------------------------------------- the recipe on the fly

def _by_source(out: Path) -> dict[tuple[str, int], dict]:
    return {(r["source"], r["copy"]): r for r in rows(out)}


def test_recipe_on_the_fly_equals_expand_for_detection(coco, recipe_file):
    expanded = _by_source(coco)
    originals = [i for i, r in enumerate(rows(coco)) if r["copy"] == 0]
    ds = ShardDataset(coco, recipe=recipe_file, seed=SEED, box_format="xywh", return_row=True)
    draws = {}
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in originals:
            row = ds[i]
            copy = expanded[(row["source"], epoch + 1)]
            image, target = row["image"], row["target"]
            assert np.array_equal(image.permute(1, 2, 0).numpy(), row_image(copy["image_bytes"]))
            assert np.array_equal(target["boxes"].numpy(), np.asarray(copy["objects"]["bbox"], np.float32).reshape(-1, 4))
            assert target["labels"].tolist() == copy["objects"]["category"]
            masks = [read_instance_mask(m["bytes"]) > 0 for m in copy["objects"]["mask"]]
            assert np.array_equal(target["masks"].numpy(), np.asarray(masks, np.uint8).reshape(target["masks"].shape))
            draws[(row["source"], epoch)] = image
    sources = {s for s, _ in draws}
    assert any(not torch.equal(draws[(s, 0)], draws[(s, 1)]) for s in sources)  # a new draw each epoch
    ds.set_epoch(0)
    assert all(torch.equal(ds[i]["image"], draws[(ds[i]["source"], 0)]) for i in originals[:3])  # and reproducible


def test_recipe_on_the_fly_equals_expand_for_segmentation(segmentation, recipe_file):
    expanded = _by_source(segmentation)
    stream = ShardIterable(segmentation, recipe=recipe_file, seed=SEED, return_row=True)
    differ = 0
    for epoch in (0, 1):
        stream.set_epoch(epoch)
        for row in stream:
            if row["copy"] != 0:
                continue
            copy = expanded[(row["source"], epoch + 1)]
            assert np.array_equal(row["image"].permute(1, 2, 0).numpy(), row_image(copy["image_bytes"]))
            assert np.array_equal(row["target"].numpy(), read_mask(copy["annotation"]["bytes"], "a")[0])
            differ += not np.array_equal(row["image"].numpy(), row_image(expanded[(row["source"], 2 - epoch)]
                                                                        ["image_bytes"]).transpose(2, 0, 1))
    assert differ


def test_recipe_transform_in_any_dataset_gives_back_what_it_takes(coco, recipe_file):
    row = rows(coco)[0]
    rgb = row_image(row["image_bytes"])
    t = RecipeTransform(recipe_file, seed=SEED, kind="detection", instance_masks=True)
    reader = ShardDataset(coco, recipe=recipe_file, seed=SEED)
    image, target = reader[0]
    same_image, same_target = t(torch.from_numpy(rgb).permute(2, 0, 1), ShardDataset(coco)[0][1], key=row_key(row))
    assert torch.equal(same_image, image) and all(torch.equal(same_target[k], target[k]) for k in target)
    boxes = target["boxes"].numpy()
    out, numpy_target = t(rgb, {"boxes": ShardDataset(coco)[0][1]["boxes"].numpy(),
                                "labels": np.asarray(row["objects"]["category"]),
                                "masks": ShardDataset(coco)[0][1]["masks"].numpy()}, key=row_key(row))
    assert isinstance(out, np.ndarray) and np.array_equal(out, image.permute(1, 2, 0).numpy())
    assert isinstance(numpy_target["boxes"], np.ndarray) and np.array_equal(numpy_target["boxes"], boxes)
    assert t(rgb).shape == rgb.shape  # the image alone comes back alone
    safe = recipe_file.parent / "safe.yaml"
    safe.write_text("transforms: [BBoxSafeRandomCrop]\n")
    with pytest.raises(Exception, match="needs 'bboxes'"):  # a transform that needs boxes, for classification
        RecipeTransform(safe, kind="classification")


def test_copies_of_one_source_draw_differently():
    base = {"source": "a/b.png", "copy": 0}
    keys = {row_key({**base, "copy": c}) for c in range(3)}
    assert len(keys) == 3 and row_key(base) == "a/b.png"


def test_set_epoch_reaches_persistent_workers(coco, recipe_file):
    ds = ShardDataset(coco, recipe=recipe_file, seed=SEED)
    indices = list(range(6))
    expected = {}
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        expected[epoch] = [ds[i][0] for i in indices]
    ds.set_epoch(0)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, indices), batch_size=3, num_workers=2,
                                         persistent_workers=True, collate_fn=collate)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        got = [image for images, _ in loader for image in images]
        assert all(torch.equal(a, b) for a, b in zip(got, expected[epoch])), epoch


# ---------------------------------------------------------------- ranks and object stores

def test_targets_across_two_ranks_give_equal_counts(coco):
    total = len(ShardDataset(coco))
    per_rank = []
    for rank in range(2):
        it = ShardIterable(coco, shuffle=True, seed=1, rank=rank, world_size=2)
        loader = torch.utils.data.DataLoader(it, batch_size=4, num_workers=1, collate_fn=collate)
        targets = [t for _, batch in loader for t in batch]
        assert all(set(t) == {"boxes", "labels", "masks"} for t in targets)
        per_rank.append(len(targets))
    assert per_rank[0] == per_rank[1] == -(-total // 2) == len(it)


def test_detection_targets_from_s3(coco, bucket):
    uri = f"s3://{bucket}/coco"
    upload(coco, uri)
    local, remote = ShardDataset(coco), ShardDataset(uri)
    assert len(local) == len(remote) and json.loads((coco / "_augpipe.json").read_text())["task"] == "detection"
    for i in (0, len(local) - 1):
        (a, x), (b, y) = local[i], remote[i]
        assert torch.equal(a, b) and all(torch.equal(x[k], y[k]) for k in x)
    streamed = [t for _, t in ShardIterable(uri, recipe="flips", seed=SEED)]
    assert len(streamed) == len(local)


def test_recipe_transform_keeps_other_fields_of_the_boxes_it_keeps():
    recipe = RecipeTransform(_recipe("[{HorizontalFlip: {p: 1}}, {Crop: {x_min: 0, y_min: 0, x_max: 30, y_max: 20}}]"),
                             kind="detection")
    rgb = np.zeros((20, 40, 3), np.uint8)
    target = {"boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0], [30.0, 2.0, 40.0, 12.0]]), "labels": torch.tensor([1, 2]),
              "iscrowd": torch.tensor([0, 1]), "masks": torch.zeros(2, 20, 40, dtype=torch.uint8), "image_id": 7}
    _, out = recipe(rgb, target, key="x")  # flipped, the first box leaves the crop, the second stays
    assert out["boxes"].tolist() == [[0.0, 2.0, 10.0, 12.0]] and out["labels"].tolist() == [2]
    assert out["iscrowd"].tolist() == [1] and out["masks"].shape == (1, 20, 30) and out["image_id"] == 7


def _recipe(transforms: str):
    from augpipe.recipe import parse_recipe

    return parse_recipe(f"transforms: {transforms}\n")


# ---------------------------------------------------------------- torchvision's convention

def test_torchvision_convention_is_float_images_and_labels_from_one(coco, recipe_file):
    plain, tv = ShardDataset(coco), ShardDataset(coco, convention="torchvision")
    streamed = list(ShardIterable(coco, convention="torchvision"))
    live = ShardDataset(coco, recipe=recipe_file, seed=SEED)
    live_tv = ShardDataset(coco, recipe=recipe_file, seed=SEED, convention="torchvision")
    assert tv.classes == ShardIterable(coco).classes == json.loads((coco / "_augpipe.json").read_text())["classes"]
    for i in range(len(plain)):
        for (image, target), (tv_image, tv_target) in ((plain[i], tv[i]), (plain[i], streamed[i]),
                                                       (live[i], live_tv[i])):
            assert tv_image.dtype == torch.float32 and tv_image.shape == image.shape
            assert torch.equal(tv_image, image.float() / 255) and 0 <= tv_image.min() <= tv_image.max() <= 1
            assert tv_target["labels"].dtype == torch.int64 and torch.equal(tv_target["labels"], target["labels"] + 1)
            assert tv_target["boxes"].dtype == torch.float32 and torch.equal(tv_target["boxes"], target["boxes"])
            assert tv_target["masks"].dtype == torch.uint8 and torch.equal(tv_target["masks"], target["masks"])
            assert set(tv_target) == {"boxes", "labels", "masks"}
    classes = len(json.loads((coco / "_augpipe.json").read_text())["classes"])
    labels = torch.cat([t["labels"] for _, t in tv])
    assert labels.min() >= 1 and labels.max() == classes  # 0 is the background
    images, targets = next(iter(torch.utils.data.DataLoader(tv, batch_size=4, collate_fn=collate)))
    assert images.dtype == torch.float32 and images.shape[0] == len(targets) == 4


def test_torchvision_convention_leaves_other_targets_alone(segmentation, tmp_path):
    image, mask = ShardDataset(segmentation)[0]
    tv_image, tv_mask = ShardDataset(segmentation, convention="torchvision")[0]
    assert torch.equal(tv_image, image.float() / 255) and tv_mask.dtype == torch.int64 and torch.equal(tv_mask, mask)
    out = tmp_path / "out"
    expand(make_folder(tmp_path / "data", per_class=3), "flips", out, ExpandOptions(copies=0, **QUIET))
    (image, label), (tv_image, tv_label) = ShardDataset(out)[0], ShardDataset(out, convention="torchvision")[0]
    assert torch.equal(tv_image, image.float() / 255) and tv_label == label and isinstance(tv_label, int)


def test_an_empty_image_in_torchvision_convention_is_empty_tensors():
    from augpipe.readers import to_target
    from augpipe.targets import kind_for

    target = to_target(kind_for("detection", instance_masks=True), {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
                                     "masks": np.zeros((0, 6, 5), np.uint8)}, convention="torchvision")
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64
    assert target["masks"].shape == (0, 6, 5)


def test_recipe_transform_in_torchvision_convention(coco, recipe_file):
    row = rows(coco)[0]
    t = RecipeTransform(recipe_file, seed=SEED, kind="detection", instance_masks=True)
    tv = RecipeTransform(recipe_file, seed=SEED, kind="detection", instance_masks=True, convention="torchvision")
    image, target = ShardDataset(coco)[0]
    tv_image_in, tv_target_in = ShardDataset(coco, convention="torchvision")[0]
    expected_image, expected = t(image, target, key=row_key(row))
    out, out_target = tv(tv_image_in, tv_target_in, key=row_key(row))
    assert out.dtype == torch.float32 and torch.equal(out, expected_image.float() / 255)
    assert torch.equal(out_target["labels"], expected["labels"] + 1)  # carried as given
    assert torch.equal(out_target["boxes"], expected["boxes"]) and torch.equal(out_target["masks"], expected["masks"])
    # an array and numpy targets in: torchvision's tensors out
    rgb = row_image(row["image_bytes"])
    out, numpy_in = tv(rgb, {k: v.numpy() for k, v in tv_target_in.items()}, key=row_key(row))
    assert out.dtype == torch.float32 and torch.equal(out, expected_image.float() / 255)
    assert all(isinstance(v, torch.Tensor) for v in numpy_in.values())
    assert numpy_in["boxes"].dtype == torch.float32 and numpy_in["masks"].dtype == torch.uint8
    assert tv(rgb).dtype == torch.float32  # the image alone, too


def test_a_convention_is_checked(coco):
    with pytest.raises(ValueError, match="convention 'tv': one of augpipe, torchvision"):
        ShardDataset(coco, convention="tv")
    with pytest.raises(ValueError, match="xyxy boxes"):
        ShardIterable(coco, convention="torchvision", box_format="xywh")
    with pytest.raises(ValueError, match="convention"):
        RecipeTransform("flips", kind="detection", convention="coco")


def test_recipe_on_the_fly_equals_expand_where_some_objects_have_no_segment(tmp_path, recipe_file):
    """Objects without a segment (their mask is their filled box) follow their masks as the
    others do, in expand and at read time alike: the reader sees only the stored masks."""
    src = make_scenes(tmp_path / "src", n=8, seed=3)
    path = src / "annotations" / "instances_default.json"
    book = json.loads(path.read_text())
    for a in book["annotations"][::2]:
        del a["segmentation"]
    path.write_text(json.dumps(book))
    out = tmp_path / "out"
    expand(src, str(recipe_file), out, ExpandOptions(seed=SEED, val_fraction=0, **QUIET))
    expanded = _by_source(out)
    ds = ShardDataset(out, recipe=recipe_file, seed=SEED, box_format="xywh", return_row=True)
    compared = 0
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            row = ds[i]
            if row["copy"] != 0:
                continue
            copy = expanded[(row["source"], epoch + 1)]
            assert np.array_equal(row["target"]["boxes"].numpy(),
                                  np.asarray(copy["objects"]["bbox"], np.float32).reshape(-1, 4)), row["source"]
            compared += len(copy["objects"]["bbox"])
    assert compared > 10


@pytest.mark.parametrize("rank, world_size, needle", [
    (5, 2, "0 <= rank < world_size"), (-1, 2, "0 <= rank < world_size"), (1, None, "give both, or neither"),
    (None, 2, "give both, or neither"), (0, 0, "world_size must be at least 1"), (0.5, 2, "whole number"),
    (True, 2, "whole number")])
def test_impossible_ranks_are_refused(coco, rank, world_size, needle):
    with pytest.raises(ValueError, match=needle):
        ShardIterable(coco, rank=rank, world_size=world_size)


def test_ranks_may_be_numpy_integers(coco):
    halves = [len(ShardIterable(coco, rank=np.int64(r), world_size=np.int64(2))) for r in (0, 1)]
    assert halves[0] == halves[1] == -(-len(ShardDataset(coco)) // 2)


@pytest.fixture(scope="module")
def uneven(tmp_path_factory) -> Path:
    """Originals only, in shards of 9, 9, 10, 4, 3, 1, 1 rows or so: a row count no rank count divides."""
    root = tmp_path_factory.mktemp("uneven")
    out = root / "out"
    expand(make_folder(root / "data", per_class=20), "flips", out,
           ExpandOptions(workers=1, progress=False, copies=0, shard_size=12_000, val_fraction=0.08))
    return out


def ids(rows) -> list[tuple[str, int]]:
    return [(r["source"], r["copy"]) for r in rows]


def test_random_access_equals_sequential_read(shards):
    ds = ShardDataset(shards, "train")
    assert len(ds) == json.loads((shards / "_augpipe.json").read_text())["counts"]["train"]["rows"]
    sequential = [ds[i] for i in range(len(ds))]
    image, label = sequential[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and label in (0, 1)
    order = np.random.default_rng(1).permutation(len(ds))
    for i in order:
        again, lab = ShardDataset(shards, "train")[int(i)] if i % 7 == 0 else ds[int(i)]
        assert torch.equal(again, sequential[i][0]) and lab == sequential[i][1]


def test_dataset_through_a_dataloader_with_workers(shards):
    ds = ShardDataset(shards, "train", return_row=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    seen = sorted((r["source"], r["copy"]) for r in loader)
    assert seen == sorted((r["source"], r["copy"]) for r in ds)


@pytest.mark.parametrize("world_size, workers", [(1, 0), (1, 2), (2, 2), (3, 1)])
def test_every_row_once_an_epoch_across_ranks_and_workers(shards, world_size, workers):
    expected = sorted((r["source"], r["copy"]) for r in ShardDataset(shards, "train", return_row=True))
    seen = []
    for rank in range(world_size):  # ranks simulated: each its own dataset and loader
        it = ShardIterable(shards, "train", return_row=True, shuffle=True, seed=3, rank=rank, world_size=world_size)
        it.set_epoch(1)
        loader = torch.utils.data.DataLoader(it, batch_size=None, num_workers=workers)
        seen += [(r["source"], r["copy"]) for r in loader]
    assert sorted(seen) == expected


def test_streaming_shuffle_is_seeded_per_epoch(shards):
    def order(seed, epoch):
        it = ShardIterable(shards, "train", return_row=True, shuffle=True, seed=seed, buffer_size=16)
        it.set_epoch(epoch)
        return [(r["source"], r["copy"]) for r in it]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
    assert sorted(order(0, 0)) == sorted(order(0, 1))


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_every_rank_gets_as_many_rows(uneven, world_size, drop_last):
    def stream(rank=0, world=1, **kw):
        it = ShardIterable(uneven, "train", return_row=True, shuffle=True, seed=3, rank=rank, world_size=world,
                           drop_last=drop_last, **kw)
        it.set_epoch(1)
        return it

    order = ids(stream(buffer_size=1))  # the epoch's order: shards shuffled, a buffer of one keeps it
    n = len(order)
    sizes = {s["rows"] for s in read_manifest(open_store(uneven))["shards"] if s["split"] == "train"}
    assert n % world_size and len(sizes) > 1, "the fixture must not split evenly"
    per = n // world_size if drop_last else -(-n // world_size)
    seen = []
    for rank in range(world_size):
        direct = ids(stream(rank, world_size))
        loader = torch.utils.data.DataLoader(stream(rank, world_size), batch_size=None, num_workers=2)
        assert len(direct) == per == len(stream(rank, world_size))
        assert sorted(ids(loader)) == sorted(direct)  # the rank's workers read each of its rows once
        seen += direct
    if drop_last:
        assert Counter(order) - Counter(seen) == Counter(order[world_size * per:]) and len(seen) < n
    else:
        assert Counter(seen) - Counter(order) == Counter(order[:world_size * per - n]) and len(seen) > n


def test_spawned_workers_keep_the_rank(uneven, monkeypatch):
    """A worker that spawns has no process group: the rank travels in the pickled dataset."""
    import pickle

    import augpipe.readers as readers

    it = ShardIterable(uneven, "train", return_row=True)
    monkeypatch.setattr(readers, "_rank_and_world", lambda: (1, 2))  # as inside rank 1 of a DDP job
    copy = pickle.loads(pickle.dumps(it))
    monkeypatch.undo()  # as inside the spawned worker
    expected = ids(ShardIterable(uneven, "train", return_row=True, rank=1, world_size=2))
    assert ids(copy) == expected and len(expected) < len(ids(it))


def test_fewer_rows_than_ranks_is_a_loud_error(uneven):
    with pytest.raises(ValueError, match="2 rows cannot feed 3 ranks"):
        split_by_node([(0, 5, 6), (1, 0, 1)], 0, 3)
    with pytest.raises(ValueError, match="cannot feed"):
        list(ShardIterable(uneven, "validation", rank=0, world_size=100))


def test_readers_take_a_filesystem_uri(shards):
    ds = ShardDataset(shards.as_uri(), "validation")
    assert len(ds) == len(ShardDataset(shards, "validation"))
    assert torch.equal(ds[0][0], ShardDataset(shards, "validation")[0][0])


MIXED = RECIPE.replace("name: shake", "name: mixed").replace(
    "  - VerticalFlip: {p: 0.5}\n",
    "  - Mosaic: {p: 0.7, target_size: [96, 112], cell_shape: [48, 56]}\n  - CopyPaste: {p: 0.5}\n"
    "  - MixUp: {p: 0.3}\n")


def test_recipe_on_the_fly_draws_the_donors_expand_drew(tmp_path):
    recipe = tmp_path / "mixed.yaml"
    recipe.write_text(MIXED)
    out = tmp_path / "out"
    expand(make_scenes(tmp_path / "src", n=10), str(recipe), out, ExpandOptions(seed=SEED, val_fraction=0.2, **QUIET))
    expanded = _by_source(out)
    assert any("donors" in r["transforms"] for r in expanded.values())
    ds = ShardDataset(out, recipe=str(recipe), seed=SEED, box_format="xywh", return_row=True)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            row = ds[i]
            if row["copy"]:
                continue
            copy = expanded[(row["source"], epoch + 1)]
            assert np.array_equal(row["image"].permute(1, 2, 0).numpy(), row_image(copy["image_bytes"]))
            assert np.allclose(row["target"]["boxes"].numpy(),
                               np.asarray(copy["objects"]["bbox"], np.float32).reshape(-1, 4), atol=1e-3)
            assert row["target"]["labels"].tolist() == copy["objects"]["category"]


def test_a_recipe_that_takes_other_images_needs_donors(tmp_path):
    recipe = tmp_path / "mixed.yaml"
    recipe.write_text(MIXED)
    with pytest.raises(ValueError, match="has steps that take other images: give donors="):
        RecipeTransform(str(recipe), kind="detection")


def test_decode_size_reads_a_row_without_its_size_by_its_header(folder, tmp_path):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(val_fraction=0, progress=False, workers=1))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["height"] = None  # a row edited by hand
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    whole, reduced = ShardDataset(out), ShardDataset(out, decode_size=8)
    assert reduced[0][0].shape == reduced[1][0].shape and reduced[0][0].shape[1] < whole[0][0].shape[1]
