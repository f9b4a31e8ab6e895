"""The feed's options (issue 20): whole batches from the workers, reduced decodes, stored bytes
decoded as a batch (on the GPU where there is one), the loader's defaults."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import gone, make_folder, make_scenes

from augpipe import ExpandOptions, expand
from augpipe.decode import resize as resize_image
from augpipe.decode import row_image
from augpipe.errors import DamagedRow, SourceError
from augpipe.readers import ShardDataset, ShardIterable, collate, decode_images, loader

QUIET = {"workers": 1, "progress": False}
SIDE = 120


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """JPEGs of 120×120 kept as they are (copies 0): the rows hold the files' bytes."""
    root = tmp_path_factory.mktemp("feed")
    out = root / "out"
    expand(make_folder(root / "data", per_class=12, size=SIDE), "flips", out,
           ExpandOptions(copies=0, val_fraction=0, shard_size=60_000, **QUIET))
    return out


def expanded(tmp_path_factory, name: str, make_source, copies: int):
    """A source made by `make_source(folder)` under a new folder, expanded with flips."""
    root = tmp_path_factory.mktemp(name)
    out = root / "out"
    expand(make_source(root / "src"), "flips", out, ExpandOptions(copies=copies, val_fraction=0, **QUIET))
    return out


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    return expanded(tmp_path_factory, "feed-coco", lambda src: make_scenes(src, n=10), copies=1)


def stored(out) -> list[bytes]:
    return [row["image_bytes"] for row in ShardDataset(out, return_row=True)]


def torchvision_io():
    try:
        import torchvision.io
    except Exception as exc:  # noqa: BLE001 - torchvision of another torch fails with its own error
        pytest.skip(f"torchvision does not import here: {str(exc).splitlines()[0][:80]}")
    return torchvision.io


# ---------------------------------------------------------------- whole batches

def test_a_batch_is_its_items_stacked(photos):
    ds = ShardDataset(photos)
    indices = [7, 0, 23, 3, 3, len(ds) - 1]
    batch = ds.__getitems__(indices)
    images, labels = collate(batch)
    assert images is batch.images and images.shape == (len(indices), 3, SIDE, SIDE) and images.is_contiguous()
    for k, i in enumerate(indices):
        image, label = ds[i]
        assert torch.equal(images[k], image) and labels[k].item() == label
        assert np.array_equal(image.permute(1, 2, 0).numpy(), row_image(stored(photos)[i]))
    default = torch.utils.data.default_collate(batch)  # a plain DataLoader's collate stacks the views
    assert torch.equal(default[0], images) and torch.equal(default[1], labels)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_dataloader_gets_whole_batches_in_the_seeded_order(photos, workers):
    ds = ShardDataset(photos)
    index = {ds[i][0].numpy().tobytes(): (i, ds[i][1]) for i in range(len(ds))}
    assert len(index) == len(ds)

    def order(seed):
        rows = []
        for images, labels in loader(ds, 5, num_workers=workers, seed=seed):
            assert images.shape[1:] == (3, SIDE, SIDE) and len(images) == len(labels) <= 5
            rows += [index[image.numpy().tobytes()] for image in images]  # KeyError: an image no row holds
            assert [label for _, label in rows[-len(labels):]] == labels.tolist()
        return [i for i, _ in rows]

    first = order(3)
    assert sorted(first) == list(range(len(ds))) and first != sorted(first)
    assert order(3) == first and order(4) != first  # the same order for the same seed


def test_torchvision_convention_batches_as_its_items(photos):
    ds = ShardDataset(photos, convention="torchvision")
    images, labels = collate(ds.__getitems__([1, 2, 3]))
    assert images.dtype == torch.float32 and all(torch.equal(images[k], ds[k + 1][0]) for k in range(3))


def test_detection_batches_carry_every_target(detection):
    ds = ShardDataset(detection)
    everything = list(range(len(ds)))
    images, targets = collate(ds.__getitems__(everything))
    for k, target in enumerate(targets):
        image, one = ds[k]
        assert torch.equal(images[k], image) and set(target) == set(one)
        assert all(torch.equal(target[key], one[key]) for key in one)
        target["boxes"] += 100  # what a training loop may do to its batch
    _, again = collate(ds.__getitems__(everything))  # the next epoch's, from the targets kept
    assert all(torch.equal(t["boxes"], ds[k][1]["boxes"]) for k, t in enumerate(again))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_batched_stream_yields_the_rows_of_the_unbatched_one(photos, workers):
    plain = ShardIterable(photos, shuffle=True, seed=4, buffer_size=7)
    rows = list(plain)
    batches = list(loader(plain, 4, num_workers=workers))
    if workers == 0:  # one stream: the same order, cut in batches
        assert torch.equal(torch.cat([b[0] for b in batches]), torch.stack([r[0] for r in rows]))
        assert torch.cat([b[1] for b in batches]).tolist() == [r[1] for r in rows]
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == sorted(r[1] for r in rows)
    assert sum(len(b[0]) for b in batches) == len(rows) and all(len(b[0]) <= 4 for b in batches)
    assert len(plain.batched(4)) == -(-len(rows) // 4)


def test_the_loaders_defaults(photos):
    ds = ShardDataset(photos)
    made = loader(ds, 8)
    assert made.num_workers == 2 and made.persistent_workers and made.collate_fn is collate
    assert made.pin_memory == torch.cuda.is_available()
    assert not loader(ds, 8, num_workers=0).persistent_workers
    stream = loader(ShardIterable(photos, shuffle=True), 8)
    assert stream.batch_size is None and stream.dataset.batch_size == 8
    with pytest.raises(ValueError, match="shuffles itself"):
        loader(ShardIterable(photos), 8, shuffle=True)
    with pytest.raises(ValueError, match="batch_size"):
        ShardIterable(photos).batched(0)


# ---------------------------------------------------------------- reduced decodes

@pytest.mark.parametrize("size, reduce", [((30, 30), 4), ((31, 30), 2), (15, 8), ((100, 61), 1), (SIDE, 1)])
def test_decode_size_is_opencvs_reduced_decode(photos, size, reduce):
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[reduce]
    ds = ShardDataset(photos, decode_size=size)
    images, _ = collate(ds.__getitems__([0, 5]))
    for k, data in zip((0, 5), (stored(photos)[0], stored(photos)[5])):
        expected = cv2.imdecode(np.frombuffer(data, np.uint8), flag)[..., ::-1]
        assert expected.shape[:2] == (-(-SIDE // reduce),) * 2
        assert np.array_equal(ds[k][0].permute(1, 2, 0).numpy(), expected)
        assert np.array_equal(images[[0, 5].index(k)].permute(1, 2, 0).numpy(), expected)


def test_resize_is_exact_after_the_reduced_decode(photos):
    data = stored(photos)[2]
    reduced = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_4)[..., ::-1]
    for reader in (ShardDataset(photos, resize=(20, 16)), ShardIterable(photos, resize=(20, 16))):
        image = (reader[2] if isinstance(reader, ShardDataset) else list(reader)[2])[0]
        assert image.shape == (3, 20, 16)
        assert np.array_equal(image.permute(1, 2, 0).numpy(), resize_image(np.ascontiguousarray(reduced), 20, 16))


def test_decode_size_is_refused_where_the_target_would_move(detection, photos):
    with pytest.raises(ValueError, match="target does not move"):
        ShardDataset(detection, decode_size=32)
    with pytest.raises(ValueError, match="positive int or"):
        ShardDataset(photos, resize=(0, 4))


# ---------------------------------------------------------------- stored bytes, decoded as a batch

def test_undecoded_rows_are_the_stored_bytes(photos):
    ds = ShardDataset(photos, decode=False)
    encoded, labels = collate(ds.__getitems__([0, 1, 2]))
    assert [e.numpy().tobytes() for e in encoded] == stored(photos)[:3]
    assert labels.tolist() == [ShardDataset(photos)[i][1] for i in range(3)]
    for refused in ({"recipe": "flips"}, {"transform": np.flipud}, {"resize": 16}):
        with pytest.raises(ValueError, match="decode=False gives the stored bytes"):
            ShardIterable(photos, decode=False, **refused)


def test_a_batch_of_stored_bytes_decodes_as_opencv_does(photos):
    torchvision_io()
    encoded = [torch.from_numpy(np.frombuffer(d, np.uint8).copy()) for d in stored(photos)[:6]]
    png = cv2.imencode(".png", np.arange(SIDE * SIDE * 3, dtype=np.uint8).reshape(SIDE, SIDE, 3))[1]
    encoded.append(torch.from_numpy(png.ravel().copy()))
    images = decode_images(encoded, device="cpu")
    assert images.shape == (7, 3, SIDE, SIDE) and images.dtype == torch.uint8
    for image, e in zip(images, encoded):
        expected = torch.from_numpy(row_image(e.numpy())).permute(2, 0, 1)
        difference = (image.int() - expected.int()).abs()
        assert difference.max() <= 2 and difference.float().mean() < 0.5  # two JPEG decoders' rounding


def test_the_device_loader_decodes_undecoded_rows(photos):
    torchvision_io()
    ds = ShardDataset(photos, decode=False)
    decoded = loader(ds, 4, num_workers=0, shuffle=False, device="cpu")
    images, labels = next(iter(decoded))
    assert len(decoded) == -(-len(ds) // 4) and images.shape == (4, 3, SIDE, SIDE)
    reference = ShardDataset(photos)
    for k, i in enumerate(range(4)):
        assert (images[k].int() - reference[i][0].int()).abs().max() <= 2 and labels[k] == reference[i][1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA decode (nvJPEG) needs a CUDA device")
def test_cuda_decode_equals_the_cpu_decode_within_jpeg_rounding(photos):
    torchvision_io()
    encoded = [torch.from_numpy(np.frombuffer(d, np.uint8).copy()) for d in stored(photos)[:8]]
    on_gpu = decode_images(encoded, device="cuda")
    assert on_gpu.device.type == "cuda" and on_gpu.shape == (8, 3, SIDE, SIDE)
    for image, data in zip(on_gpu.cpu(), stored(photos)[:8]):
        difference = (image.int() - torch.from_numpy(row_image(data)).permute(2, 0, 1).int()).abs()
        assert difference.float().mean() < 1.5 and difference.max() <= 16  # nvJPEG's IDCT and upsampling differ


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA in torch")
def test_batches_are_pinned_and_moved_where_cuda_is(photos):
    images, _ = next(iter(loader(ShardDataset(photos), 4, num_workers=2)))
    assert images.is_pinned()
    on_gpu, labels = next(iter(loader(ShardDataset(photos), 4, num_workers=2, device="cuda")))
    assert on_gpu.device.type == "cuda" and labels.device.type == "cuda"


def test_the_device_loader_moves_detection_targets(detection):
    torchvision_io()
    reference = ShardDataset(detection)
    images, targets = next(iter(loader(ShardDataset(detection, decode=False), 3, num_workers=0, shuffle=False,
                                       device="cpu")))
    assert isinstance(targets, list) and len(targets) == 3 == len(images)
    for k, target in enumerate(targets):
        image, one = reference[k]
        assert set(target) == set(one) and all(torch.equal(target[key], one[key]) for key in one)
        assert image.shape == images[k].shape  # PNG scenes: decoded by OpenCV, the same pixels
        assert torch.equal(images[k], image)


# ---------------------------------------------------------------- targets a row group at a time

def same_target(a, b) -> bool:
    if isinstance(a, list):  # a batch's
        return isinstance(b, list) and len(a) == len(b) and all(same_target(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_target(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return type(a) is type(b) and a == b


def row_by_row(kind, table, box_format, convention) -> list:
    return [kind.torch_target(kind.arrays(row), box_format, convention) for row in table.to_pylist()]


@pytest.mark.parametrize("box_format", ["xyxy", "xywh"])
@pytest.mark.parametrize("convention", ["augpipe", "torchvision"])
def test_boxes_of_a_table_convert_as_row_by_row(box_format, convention):
    """Rows of 0 to 9 objects (some without any, one without objects at all), sliced as a reader's
    row group can be: the kind's table conversion gives what its row-by-row one gives."""
    import pyarrow as pa

    from augpipe.targets.boxes import BoxesKind, objects_array

    rng = np.random.default_rng(3)
    values = []
    for _ in range(300):
        n = int(rng.integers(0, 10))
        values.append({"bbox": rng.uniform(0, 500, (n, 4)).astype(np.float32), "category": rng.integers(0, 80, n),
                       "area": rng.uniform(0, 1e4, n), "id": rng.integers(0, 10**6, n), "iscrowd": None})
    objects = objects_array(values, False)
    table = pa.table({"objects": objects, "width": pa.array([640] * 300), "height": pa.array([480] * 300)})
    with_null = pa.table({"objects": pa.concat_arrays([objects.slice(0, 2), pa.nulls(1, objects.type)]),
                          "width": [1, 1, 1], "height": [1, 1, 1]})
    kind = BoxesKind()
    picks = [5, 5, 199, 0, 40]
    for part, rows in ((table, None), (table.slice(17, 200), None), (table, picks), (table.slice(17, 200), picks),
                       (with_null, None), (with_null, [2, 0])):
        got = kind.torch_targets(part, box_format, convention, rows)
        want = row_by_row(kind, part if rows is None else part.take(rows), box_format, convention)
        assert len(got) == len(want) == (len(part) if rows is None else len(rows))
        assert all(same_target(g, w) for g, w in zip(got, want))
    assert sum(len(t["boxes"]) == 0 for t in kind.torch_targets(table, box_format, convention)) > 10


@pytest.fixture(scope="module")
def boxes(tmp_path_factory):
    """Detection without instance masks, copies 0 to 2."""
    return expanded(tmp_path_factory, "feed-yolo", lambda src: make_scenes(src, n=10, fmt="yolo"), copies=2)


@pytest.fixture(scope="module")
def grey_masks(tmp_path_factory):
    """Segmentation whose source masks are grey: expand writes them as OpenCV's grey PNGs."""
    from PIL import Image

    root = tmp_path_factory.mktemp("feed-masks")
    src = make_scenes(root / "src", n=12, fmt="masks")
    for path in (src / "masks").glob("*.png"):
        with Image.open(path) as im:
            indices = np.asarray(im)
        Image.fromarray(indices, "L").save(path)
    out = root / "out"
    expand(src, "flips", out, ExpandOptions(copies=3, val_fraction=0, **QUIET))
    return out


@pytest.fixture(scope="module")
def palette_masks(tmp_path_factory):
    return expanded(tmp_path_factory, "feed-palette", lambda src: make_scenes(src, n=8, fmt="masks"), copies=1)


def test_stored_masks_decode_as_read_mask_does(grey_masks, palette_masks):
    """OpenCV's decode of the grey PNGs expand writes (`read_mask`, `decode_mask`), PIL's of the
    others: pixels as PIL reads them, and the palette PIL gives."""
    import io

    from PIL import Image

    from augpipe.targets.masks import read_mask, write_mask
    from augpipe.targets.semantic import decode_mask

    rng = np.random.default_rng(0)
    made = []
    for k in range(200):
        mask = rng.integers(0, 256 if k % 3 == 0 else 6, tuple(rng.integers(1, 90, 2))).astype(np.uint8)
        made += [write_mask(mask, None), write_mask(mask, bytes(range(256)) * 3)]
    rows = [r["annotation"]["bytes"] for out in (grey_masks, palette_masks) for r in ShardDataset(out, return_row=True)]
    assert any(b[25] == 0 for b in rows) and any(b[25] == 3 for b in rows)  # grey and palette PNGs stored
    for data in made + rows:
        with Image.open(io.BytesIO(data)) as im:
            want, palette = np.asarray(im, dtype=np.uint8), bytes(im.getpalette() or []) if im.mode == "P" else None
        for got in (decode_mask(data), read_mask(data, "annotation")[0]):
            assert got.dtype == want.dtype == np.uint8 and np.array_equal(got, want)
        assert read_mask(data, "annotation")[1] == palette


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """COCO person keypoints (a hostile test: batches dropped them)."""
    from keypointed import coco_keypoints

    return expanded(tmp_path_factory, "feed-keypoints", lambda src: coco_keypoints(src, n=6), copies=1)


@pytest.mark.parametrize("name", ["photos", "boxes", "detection", "grey_masks", "palette_masks", "people"])
def test_a_readers_batch_targets_are_its_items(name, request):
    """Batches convert their rows' targets a row group at a time (ShardDataset, twice: the second
    from the kept ones; ShardIterable batched): equal to each row's own target."""
    out = request.getfixturevalue(name)
    assert (name == "detection") == ShardDataset(out).kind.albumentations_targets.count("masks")
    for convention in ("augpipe", "torchvision"):
        ds = ShardDataset(out, convention=convention, box_format="xyxy")
        indices = list(np.random.default_rng(1).permutation(len(ds))) + [0, 0]
        want = [ds[i][1] for i in indices]
        for _ in range(2):
            got = [target for _, target in ds.__getitems__(indices)]
            assert len(got) == len(want) and all(same_target(g, w) for g, w in zip(got, want))
        rows = list(ShardIterable(out, convention=convention))
        batched = [targets for _, targets in ShardIterable(out, convention=convention, batch_size=5)]
        assert len(batched) == -(-len(rows) // 5)
        for k, targets in enumerate(batched):
            assert same_target(targets, collate(rows[5 * k:5 * k + 5])[1])
        threaded = [t for _, targets in loader(ShardDataset(out, convention=convention), 4, threads=2, shuffle=False)
                    for t in (targets.tolist() if isinstance(targets, torch.Tensor) and targets.ndim == 1
                              else list(targets))]
        assert same_target(threaded, [ds[i][1] for i in range(len(ds))])


def test_stored_bytes_decode_on_the_cpu_without_torchvision_and_cuda_is_asked_for_plainly(photos, monkeypatch):
    """Without torchvision, OpenCV decodes on the CPU; a CUDA device this PyTorch lacks is one line."""
    import sys

    import torch

    from augpipe import readers

    out = photos
    ds = readers.ShardDataset(out, decode=False)
    stored = [ds[i][0] for i in range(4)]
    decoded = readers.ShardDataset(out)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # an import of it raises ImportError
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    images = readers.decode_images(stored, device="cpu")
    for i in range(4):
        assert torch.equal(images[i], decoded[i][0])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torchvision|no CUDA device"):
            readers.decode_images(stored, device="cuda")
        with pytest.raises(ValueError, match="no CUDA device"):
            readers.loader(decoded, batch_size=2, device="cuda")
    on_meta = readers.decode_images(stored, device="meta")  # any other device: decoded on the CPU, moved
    assert on_meta.device.type == "meta" and on_meta.shape == images.shape
    batch = next(iter(readers.loader(ds, 4, num_workers=0, shuffle=False)))
    with pytest.raises(ValueError, match=r"a list of 1-D uint8 tensors.*batch\[0\]\), not a tuple holding"):
        readers.decode_images(batch)  # the whole (images, labels) batch, not its images


def test_a_feed_of_threads_gives_every_row_once_an_epoch_as_the_dataset_does(photos):
    """loader(threads=2): batches made by threads of this process (no worker processes), in a
    seeded order; each batch is its items, every row once an epoch; a small cache shared by the
    threads (each batch reads row groups the others evict) changes nothing."""
    import torch

    ds = ShardDataset(photos, cache_bytes=1)
    items = [ds[i] for i in range(len(ds))]
    feed = loader(ShardDataset(photos, cache_bytes=1), batch_size=5, threads=2, seed=3)
    again = loader(ShardDataset(photos), batch_size=5, threads=2, seed=3)
    assert len(feed) == -(-len(ds) // 5)
    for epoch in range(2):
        seen = []
        for (images, labels), (images2, _) in zip(feed, again):
            assert torch.equal(images, images2)
            for image, label in zip(images, labels):
                matches = [k for k, (im, lab) in enumerate(items) if lab == label and torch.equal(im, image)]
                assert matches
                seen.append(matches[0])
        assert sorted(seen) == list(range(len(ds)))
    stopped = iter(feed)
    next(stopped)
    stopped.close()  # a loop left early: the threads end with it
    with pytest.raises(ValueError, match="recipe= or transform="):
        loader(ShardDataset(photos, recipe="flips"), threads=2)
    with pytest.raises(ValueError, match="shuffles itself"):
        loader(ShardIterable(photos), threads=2, shuffle=True)


def test_a_feed_of_threads_is_the_datasets_batches_in_the_seeded_order(photos):
    """Each batch is `collate(__getitems__)` of the next indices of the seeded order, each epoch
    the generator's next, whichever thread made it; with shuffle=False, the rows in order."""
    ds = ShardDataset(photos)
    for threads, shuffle in ((1, True), (2, True), (3, False)):
        feed = loader(ShardDataset(photos), batch_size=7, threads=threads, seed=5, shuffle=shuffle, drop_last=True)
        generator = torch.Generator().manual_seed(5)
        for _ in (0, 1):
            order = torch.randperm(len(ds), generator=generator).tolist() if shuffle else list(range(len(ds)))
            batches = list(feed)
            assert len(batches) == len(feed) == len(ds) // 7
            for k, (images, labels) in enumerate(batches):
                want_images, want_labels = collate(ds.__getitems__(order[7 * k:7 * k + 7]))
                assert images.is_contiguous() and torch.equal(images, want_images) and torch.equal(labels, want_labels)


def test_a_streams_length_is_the_batches_its_workers_yield_on_every_feed(photos):
    """Each worker's share of a stream ends with a short batch of its own: len() counts them, so
    a schedule sized by it (OneCycleLR's total_steps) meets every step of the epoch, where it
    raised past its last; drop_last= says what it would not do, where torch's own error came."""
    ds = ShardIterable(photos, shuffle=True, seed=2)
    for feed in ({"num_workers": 0}, {"num_workers": 2}, {"num_workers": 3}, {"threads": 2}, {"processes": 2}):
        reader = loader(ds, batch_size=5, **feed)
        try:
            steps = len(reader)
            optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=steps)
            batches = 0
            for _ in reader:
                optimizer.step()
                schedule.step()
                batches += 1
            assert batches == steps, feed
        finally:
            getattr(reader, "close", lambda: None)()
    assert len(loader(ds, batch_size=5, num_workers=2)) > -(-len(ds) // 5)  # the case the test is about
    with pytest.raises(ValueError, match="does not apply to a ShardIterable's batches"):
        loader(ds, batch_size=5, drop_last=True)


@pytest.mark.parametrize("size", [0, -5, 2.5, True, "10"])
def test_a_streams_buffer_size_is_a_whole_number_of_rows(photos, size):
    """A hostile tester's: buffer_size=0 with shuffle=True drew from an empty buffer forever (a
    hang in next(), and in every feed over it)."""
    with pytest.raises(ValueError, match=f"buffer_size {size!r}: a whole number of rows, at least 1"):
        ShardIterable(photos, shuffle=True, buffer_size=size)
    assert len(list(ShardIterable(photos, shuffle=True, buffer_size=1))) == len(ShardDataset(photos))


def test_a_feed_of_threads_refuses_worker_options_and_pins_only_with_an_accelerator(photos):
    with pytest.raises(ValueError, match="num_workers= and persistent_workers= are a DataLoader's"):
        loader(ShardDataset(photos), threads=2, num_workers=4)
    for feed in ({"threads": 2}, {"processes": 2}, {}):  # a DataLoader's too: it would not use it
        with pytest.raises(ValueError, match="seeds itself"):
            loader(ShardIterable(photos), seed=3, **feed)
    for threads, batch_size in ((True, 4), (2, 2.5), (-1, 4)):
        with pytest.raises(ValueError, match="whole numbers, 1 or more"):
            loader(ShardDataset(photos), batch_size, threads=threads)
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="no accelerator"):
            feed = loader(ShardDataset(photos), 4, threads=2, pin_memory=True)
        images, _ = next(iter(feed))
        assert not images.is_pinned()


HELD_AT_EXIT = """
import sys
from augpipe.readers import ShardDataset, ShardIterable, loader
feeds = [iter(loader(ShardDataset(sys.argv[1]), 2, threads=2)), iter(loader(ShardIterable(sys.argv[1]), 2, threads=2))]
for feed in feeds:
    next(feed)
it = iter(loader(ShardDataset(sys.argv[1]), 2, threads=2))
images, labels = next(it)
print("held")
"""


def test_a_feed_held_at_exit_lets_the_process_end_cleanly(photos):
    """A new user's finding: an iterator kept past its last step aborted Python at exit (134);
    another's: one kept in a module's variable printed "Exception ignored ... TypeError: 'NoneType'
    object is not callable" as the interpreter closed it after emptying augpipe's module."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", HELD_AT_EXIT, str(photos)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "held", "")


@pytest.mark.parametrize("name", ["photos", "detection"])
def test_a_stream_read_from_its_cache_is_the_stream_read_again(name, request):
    """Shards kept from an earlier epoch give the very items a stream that reads again gives."""
    out = request.getfixturevalue(name)
    for batch_size in (None, 3):
        kept = ShardIterable(out, shuffle=True, seed=2, buffer_size=5, batch_size=batch_size)
        fresh = ShardIterable(out, shuffle=True, seed=2, buffer_size=5, batch_size=batch_size, cache_bytes=0)
        for epoch in (0, 1, 2):
            kept.set_epoch(epoch)
            fresh.set_epoch(epoch)
            assert same_target([list(item) for item in kept], [list(item) for item in fresh])
        assert kept._cache and not fresh._cache


def test_a_split_the_dataset_lacks_is_named_with_those_it_has(photos):
    with pytest.raises(FileNotFoundError, match="no val shards in .*: its splits are train"):
        ShardDataset(photos, split="val")


def test_a_path_that_is_not_there_is_said_so(tmp_path):
    """A typo says the path does not exist; a folder that is there but not a dataset says that."""
    from augpipe.errors import SourceError

    with pytest.raises(SourceError, match="does not exist$"):
        ShardDataset(tmp_path / "typo")
    with pytest.raises(SourceError, match="not an augpipe dataset"):
        ShardIterable(tmp_path)


def test_an_error_in_a_feeds_thread_reaches_the_loop(photos, monkeypatch):
    ds = ShardDataset(photos)
    made = []

    def failing(indices):
        made.append(indices)
        if len(made) == 3:
            raise OSError("shard unreadable")
        return collate(ds.__getitems__(indices))

    monkeypatch.setattr(ds, "_collated", failing)
    with pytest.raises(OSError, match="shard unreadable"):
        list(loader(ds, batch_size=4, threads=2, seed=0))


@pytest.mark.filterwarnings("ignore:Length of IterableDataset")  # the DataLoader's len() of a stream in workers
@pytest.mark.parametrize("name", ["photos", "detection"])
def test_a_feed_of_threads_streams_what_the_workers_do(name, request):
    """loader(stream, threads=N): the batches, in the order, of loader(stream, num_workers=N), each
    epoch (set_epoch); one thread: the unbatched stream's rows cut in batches."""
    out = request.getfixturevalue(name)
    stream = ShardIterable(out, shuffle=True, seed=4, buffer_size=7)
    threads, workers = loader(stream, 4, threads=2), loader(stream, 4, num_workers=2)
    for epoch in (0, 1):
        threads.set_epoch(epoch)  # the stream's epoch, which the workers' copy shares
        got, want = list(threads), list(workers)
        assert len(got) == len(want) == len(threads)
        for (images, targets), (images2, targets2) in zip(got, want):
            assert same_target(images, images2) and same_target(list(targets), list(targets2))
    rows = list(stream)
    for k, (images, targets) in enumerate(loader(stream, 3, threads=1)):
        want_images, want_targets = collate(rows[3 * k:3 * k + 3])
        assert same_target(images, want_images) and same_target(list(targets), list(want_targets))


def test_a_feed_of_threads_carries_detection_targets(detection):
    ds = ShardDataset(detection)
    rows = [ds[i] for i in range(len(ds))]
    seen = []
    for images, targets in loader(ShardDataset(detection), batch_size=4, threads=2, seed=0):
        for image, target in zip(images, targets):
            same = [i for i, (im, t) in enumerate(rows) if (im == image).all() and (t["boxes"] == target["boxes"]).all()
                    and (t["labels"] == target["labels"]).all() and t["boxes"].shape == target["boxes"].shape]
            assert same
            seen.append(same[0])
    assert len(seen) == len(ds)


def test_a_shard_dataset_still_pickles_for_spawned_workers(photos):
    import pickle

    ds = ShardDataset(photos)
    ds[0]
    copy = pickle.loads(pickle.dumps(ShardDataset(photos)))
    assert (copy[1][0] == ds[1][0]).all()
    used = pickle.loads(pickle.dumps(ds))  # the hostile tester's: one that has read a row, its files open
    assert (used[2][0] == ds[2][0]).all() and ds._handles


def test_a_batchs_dict_targets_are_copies_in_one_tensor_a_field_where_their_layouts_agree():
    """`_one_storage`: fields whose tensors share a dtype and all but their first size become
    views of one tensor; any other field (another dtype, another number of dimensions, a
    value that is no tensor, a size cat refuses) is copied row by row. Either way nothing handed
    out is the kept tensor, and a pickled batch (a worker's) makes the same targets again."""
    import pickle

    from augpipe.readers import _one_storage

    kept = [{"boxes": torch.arange(8, dtype=torch.float32).reshape(2, 4) + k, "labels": torch.tensor([k, k]),
             "odd": torch.zeros(2, 3) if k else torch.zeros(0), "mixed": torch.ones(1, dtype=torch.int64 if k else torch.int32),
             "wide": torch.zeros(1, 2 + k), "name": f"row{k}"} for k in range(3)]
    before = [{key: v.clone() if isinstance(v, torch.Tensor) else v for key, v in t.items()} for t in kept]
    batch = _one_storage(kept)
    assert batch._state[2] is not None and set(batch._state[1]) == {"boxes", "labels"}
    for again in (batch, pickle.loads(pickle.dumps(batch))):
        assert len(again) == 3
        for got, want in zip(again, before):
            assert list(got) == list(want)
            for key, value in want.items():
                assert (torch.equal(got[key], value) and got[key].dtype == value.dtype) if isinstance(value, torch.Tensor) \
                    else got[key] == value
    for got in batch:
        for key in ("boxes", "labels", "odd", "mixed", "wide"):
            got[key].add_(1)
    for mine, want in zip(kept, before):
        assert all(torch.equal(mine[key], want[key]) for key in ("boxes", "labels", "odd", "mixed", "wide"))
    assert _one_storage([{}, {}]) == [{}, {}]


def _scenes_of_two_sizes(src):
    """A COCO folder of boxes (no polygons: small targets, which the reader keeps) whose scenes are
    80 × 64 and 48 × 40 px: batches of rows of both sizes."""
    import json

    make_scenes(src, n=6)
    other = make_scenes(src.parent / "other", n=6, size=(48, 40), seed=1)
    coco = json.loads((src / "annotations" / "instances_default.json").read_text())
    more = json.loads((other / "annotations" / "instances_default.json").read_text())
    for image in more["images"]:
        (other / "default" / image["file_name"]).rename(src / "default" / f"small_{image['file_name']}")
        image["file_name"], image["id"] = f"small_{image['file_name']}", image["id"] + 100
    for annotation in more["annotations"]:
        annotation["image_id"] += 100
        annotation["id"] += 1000
    coco["images"] += more["images"]
    coco["annotations"] += more["annotations"]
    for annotation in coco["annotations"]:
        del annotation["segmentation"]
    (src / "annotations" / "instances_default.json").write_text(json.dumps(coco))
    return src


@pytest.mark.parametrize("feed", ["threads", "getitems", "workers", "processes"])
def test_targets_handed_out_in_batches_of_mixed_sizes_are_copies(tmp_path_factory, feed):
    """A batch whose images differ in size comes as a list, its targets still the reader's copies:
    a training step that changes its targets in place (boxes normalised) changes nothing the
    reader gives later (the hostile tester's: the kept targets were handed out as they were)."""
    out = expanded(tmp_path_factory, f"mixed-{feed}", _scenes_of_two_sizes, copies=0)
    ds = ShardDataset(out)
    first = [ds[i][1] for i in range(len(ds))]
    assert len({tuple(ds[i][0].shape) for i in range(len(ds))}) == 2
    for _ in range(3):
        if feed == "getitems":
            batches = [collate(ds.__getitems__(list(range(len(ds)))))]
        else:
            batches = loader(ds, batch_size=5, shuffle=False, **({"num_workers": 2} if feed == "workers" else {feed: 2}))
        row, lists = 0, 0
        for images, targets in batches:
            lists += isinstance(images, list)
            for target in targets:
                assert torch.equal(target["boxes"], first[row]["boxes"]) and torch.equal(target["labels"], first[row]["labels"])
                target["boxes"] /= 64
                target["labels"] += 1
                row += 1
        assert row == len(ds) and lists


@pytest.fixture(scope="module")
def jpeg_kinds(tmp_path_factory):
    """Files of one class, 48×36 as decoded (copies 0): JPEGs of each subsampling and progressive
    (stored as they are), grey, CMYK and EXIF-turned ones (stored as expand writes them), a PNG."""
    from PIL import Image

    root = tmp_path_factory.mktemp("kinds")
    y, x = np.mgrid[0:36, 0:48]
    rgb = np.dstack([x * 5, y * 7, (x * y) % 256]).astype(np.uint8)
    folder = root / "src" / "cat"
    folder.mkdir(parents=True)
    turn = Image.Exif()
    turn[0x0112] = 6
    kinds = {"420": {}, "444": {"subsampling": 0}, "422": {"subsampling": 1}, "progressive": {"progressive": True}}
    for name, options in kinds.items():
        Image.fromarray(rgb).save(folder / f"{name}.jpg", "JPEG", **options)
    Image.fromarray(rgb).convert("L").save(folder / "grey.jpg", "JPEG")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", "JPEG")
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1))).save(folder / "turned.jpg", "JPEG", exif=turn)
    (folder / "plain.png").write_bytes(cv2.imencode(".png", rgb)[1].tobytes())
    out = root / "out"
    expand(root / "src", "flips", out, ExpandOptions(copies=0, val_fraction=0, **QUIET))
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    return out, files


def test_batches_of_any_kind_of_image_are_opencvs_pixels(jpeg_kinds):
    """Plain JPEGs of one size are decoded into one array by libjpeg-turbo, a batch with others
    image by image: either way each image is OpenCV's decode of the stored bytes, in a batch and
    through the threads' feed."""
    out, files = jpeg_kinds
    ds, rows = ShardDataset(out), ShardDataset(out, return_row=True)
    names = [rows[i]["source"].rsplit("/", 1)[-1] for i in range(len(ds))]
    want = [torch.from_numpy(cv2.imdecode(np.frombuffer(rows[i]["image_bytes"], np.uint8), cv2.IMREAD_COLOR_RGB))
            .permute(2, 0, 1) for i in range(len(ds))]
    assert sorted(names) == sorted(files) and rows[names.index("444.jpg")]["image_bytes"] == files["444.jpg"]
    plain = [i for i, name in enumerate(names) if name in {"420.jpg", "444.jpg", "422.jpg", "progressive.jpg", "grey.jpg"}]
    for indices in (plain, list(range(len(ds)))):
        images, _ = collate(ds.__getitems__(indices))
        for image, i in zip(images, indices):
            assert torch.equal(image, want[i]), names[i]
    fed = torch.cat([images for images, _ in loader(ds, 3, threads=2, shuffle=False)])
    assert torch.equal(fed, torch.stack(want))


def _feeds(reader) -> list:
    """The batches of each of the readers' feeds, in order where the feed has one."""
    if isinstance(reader, ShardIterable):
        batched = reader.batched(5)
        return [list(loader(batched, num_workers=0)), list(loader(reader, 5, threads=2))]
    return [[collate(reader.__getitems__(list(range(k, min(k + 5, len(reader)))))) for k in range(0, len(reader), 5)],
            list(loader(reader, 5, shuffle=False, num_workers=2)), list(loader(reader, 5, shuffle=False, threads=2))]


@pytest.mark.parametrize("convention", ["augpipe", "torchvision"])
@pytest.mark.parametrize("name", ["photos", "jpeg_kinds", "detection"])
def test_channels_last_gives_the_same_images_in_torchs_channels_last_format(name, convention, request):
    """Every item and batch of every feed: the values of the usual layout, torch's channels_last
    strides (a batch of plain JPEGs decoded into it, one of mixed kinds copied in, items stacked)."""
    out = request.getfixturevalue(name)
    out = out[0] if name == "jpeg_kinds" else out
    for reader in (ShardDataset, ShardIterable):
        plain, last = reader(out, convention=convention), reader(out, convention=convention, channels_last=True)
        items = list(zip(plain, last)) if reader is ShardIterable else [(plain[i], last[i]) for i in range(len(plain))]
        for (image, target), (other, again) in items:
            assert torch.equal(image, other) and other.stride()[0] == 1 and image.is_contiguous()
            assert str(target) == str(again)
        stacked = collate([item for _, item in items])[0]
        assert torch.equal(stacked, collate([item for item, _ in items])[0])
        assert stacked.is_contiguous(memory_format=torch.channels_last)
        for usual, batches in zip(_feeds(plain), _feeds(last)):
            assert len(usual) == len(batches)
            for (images, _), (others, _) in zip(usual, batches):
                assert torch.equal(images, others) and images.is_contiguous()
                assert others.is_contiguous(memory_format=torch.channels_last) and others.dtype == images.dtype


def test_a_row_groups_headers_are_parsed_once(photos, monkeypatch):
    """The next epochs of a kept row group parse no JPEG header again."""
    import augpipe.readers as readers
    from augpipe.headers import jpeg_frame

    from augpipe.headers import jpeg_frames

    parsed = []
    monkeypatch.setattr(readers, "jpeg_frame", lambda data: parsed.append(1) or jpeg_frame(data))
    monkeypatch.setattr(readers, "jpeg_frames", lambda data, offsets: parsed.extend([1] * (len(offsets) - 1)) or
                        jpeg_frames(data, offsets))
    ds = ShardDataset(photos)
    for _ in range(3):
        assert sum(len(images) for images, _ in loader(ds, 5, threads=2)) == len(ds)
    assert len(parsed) == len(ds)


def _shares_by_file_name(worker_id: int) -> None:
    import torch.multiprocessing

    if torch.multiprocessing.get_sharing_strategy() != "file_system":
        raise RuntimeError(f"worker {worker_id} shares by {torch.multiprocessing.get_sharing_strategy()}")


def test_a_loaders_workers_share_batches_by_file_name_and_run_the_callers_start(photos):
    """The workers send batches by shared-memory file name (no socket a tensor), and a caller's
    worker_init_fn still runs in each, after that."""
    ds = ShardDataset(photos)
    batches = list(loader(ds, 7, shuffle=False, num_workers=2, worker_init_fn=_shares_by_file_name))
    assert torch.equal(torch.cat([images for images, _ in batches]), torch.stack([ds[i][0] for i in range(len(ds))]))
    assert torch.multiprocessing.get_sharing_strategy() == "file_descriptor"  # this process's is left alone

    def fails(worker_id):
        raise RuntimeError(f"the caller's own start, worker {worker_id}")

    with pytest.raises(RuntimeError, match="the caller's own start"):
        list(loader(ds, 7, num_workers=1, worker_init_fn=fails))


KILLED = """
import os, sys, time
from augpipe.readers import ShardDataset, loader
if __name__ == "__main__":
    batches = loader(ShardDataset(sys.argv[1]), 2, num_workers=2, multiprocessing_context="forkserver")
    for _ in batches:
        print(*[w.pid for w in batches._iterator._workers], flush=True)
        time.sleep(60)
"""


def test_a_loaders_fork_server_workers_die_with_a_killed_main_process(photos, tmp_path):
    """With a fork server, the workers' parent is the server, which a worker kept alive by holding
    its pipe: a killed main process left them running, and their batches' shared files with them."""
    import signal
    import subprocess
    import sys

    from augpipe.processes import alive

    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    main = subprocess.Popen([sys.executable, str(script), str(photos)], stdout=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in main.stdout.readline().split()]
    assert len(workers) == 2 and all(alive(pid) for pid in workers)
    main.send_signal(signal.SIGKILL)
    main.wait()
    assert gone(workers, 30)


KILLED_IN_INIT = """
import os, sys, time
from augpipe.readers import ShardDataset, loader

def slow(worker_id):
    with open(os.path.join(sys.argv[2], str(os.getpid())), "w"):
        pass
    time.sleep(60)

if __name__ == "__main__":
    for _ in loader(ShardDataset(sys.argv[1]), 2, num_workers=2, multiprocessing_context="forkserver",
                    worker_init_fn=slow):
        pass
"""


def test_a_loaders_fork_server_workers_die_with_a_main_process_killed_while_they_start(photos, tmp_path):
    """torch's watchdog takes the worker's parent only after the worker_init_fns: a main process
    killed while they ran left the workers running for good (a hostile tester's)."""
    assert gone(_kill_main_once_two_workers_started(tmp_path, KILLED_IN_INIT, photos), 30)


def _kill_main_once_two_workers_started(tmp_path, code: str, *args) -> list[int]:
    """Runs `code` as a main process (argv: its args, then a folder where each of its workers
    leaves a file named by its pid), SIGKILLs it once two workers are there; their pids."""
    import signal
    import subprocess
    import sys
    import time

    script, started = tmp_path / "killed.py", tmp_path / "started"
    script.write_text(code)
    started.mkdir()
    main = subprocess.Popen([sys.executable, str(script), str(args[0]), str(started), *map(str, args[1:])])
    deadline = time.monotonic() + 60
    while len(list(started.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [int(p.name) for p in started.iterdir()]
    assert len(workers) == 2
    main.send_signal(signal.SIGKILL)
    main.wait()
    return workers


# ---------------------------------------------------------------- a worker's batch memory

def test_batches_held_past_the_workers_slots_keep_their_pixels(photos):
    """A worker reuses a slot of shared memory only once the main process has let go of what it
    sent from it: batches held (more than the workers' slots) keep their pixels, batches let go
    of free their slots (the main process maps no new segment epoch after epoch), and an ended
    worker's segments are let go of."""
    from augpipe import worker_memory
    from augpipe.processes import alive

    ds = ShardDataset(photos)
    expected = torch.stack([ds[i][0] for i in range(len(ds))])
    held = []
    for _ in range(3):
        held += [images for images, _ in loader(ds, 2, shuffle=False, num_workers=2, persistent_workers=False)]
    assert len(held) > 2 * worker_memory.SLOTS
    for k in range(0, len(held), len(ds) // 2):
        assert torch.equal(torch.cat(held[k:k + len(ds) // 2]), expected)
    del held
    batches = loader(ds, 2, shuffle=False, num_workers=2)
    for _ in range(5):
        assert torch.equal(torch.cat([images for images, _ in batches]), expected)
    mapped = len(worker_memory._KEPT)
    for _ in range(5):
        for _ in batches:
            pass
    assert len(worker_memory._KEPT) == mapped <= 2 * 6
    assert all(alive(int(whole[:32].view(np.int64)[2])) for whole in worker_memory._KEPT.values())


_SENT: list = []


def _sends_again(items):
    """A collate that sends its batch's images twice, keeps them and sends them again with the next
    batch (their slot is not reused while the worker holds them), a bfloat16 tensor (no numpy
    dtype: sent by torch) and a strided view."""
    images, labels = collate(items)
    again = _SENT[-1] if _SENT else images
    _SENT[:] = [images]
    return images, labels, images, again, labels.to(torch.bfloat16), images[:, :, ::2]


def test_a_slots_tensors_sent_twice_or_kept_and_tensors_torch_sends_arrive_whole(photos):
    ds = ShardDataset(photos)
    expected = torch.stack([ds[i][0] for i in range(len(ds))])
    batches = list(loader(ds, 3, shuffle=False, num_workers=1, collate_fn=_sends_again))
    for k, (images, labels, same, again, bf16, strided) in enumerate(batches):
        assert torch.equal(images, expected[3 * k:3 * k + 3]) and torch.equal(same, images)
        assert torch.equal(again, expected[3 * max(k - 1, 0):3 * max(k - 1, 0) + 3])
        assert labels.dtype == torch.int64 and bf16.dtype == torch.bfloat16
        assert torch.equal(bf16, labels.to(torch.bfloat16))
        assert torch.equal(strided, images[:, :, ::2]) and strided.stride() == images[:, :, ::2].stride()


REENTERED = """
import os
import numpy as np
from augpipe import worker_memory
counts = np.zeros(4, np.int64)
with worker_memory._LOCK:  # as _rebuilt holds it when the cyclic collector ends a batch caught in a cycle
    worker_memory._let_go(counts, os.getpid())
print(counts[1])
"""


def test_a_batch_ended_while_a_batch_is_rebuilt_does_not_deadlock():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", REENTERED], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr[-2000:]


def _torch_files_of(pids: list[int]) -> list[str]:
    import os

    return [name for name in os.listdir("/dev/shm") if any(name.startswith(f"torch_{pid}_") for pid in pids)]


@pytest.mark.skipif(not __import__("os").path.isdir("/dev/shm"), reason="torch's shared files live in /dev/shm")
@pytest.mark.parametrize("persistent", [True, False])
def test_an_ended_loaders_shared_memory_is_gone(photos, persistent):
    """A worker's slots are dropped as it ends (it ends by os._exit), and this process lets go of
    their mappings once the loader's iterator ends: no shared file is left of its workers."""
    from augpipe import worker_memory

    def held(iterator, pids):
        kept = [images for images, _ in iterator]
        assert kept and _torch_files_of(pids)  # the batches held are in the workers' shared memory

    pids = _loaders_used(photos, 3, 4, persistent, held)
    assert not _torch_files_of(pids)
    assert not [w for w in worker_memory._KEPT.values() if int(w[:32].view(np.int64)[2]) in pids]


@pytest.mark.skipif(not __import__("os").path.isdir("/dev/shm"), reason="torch's shared files live in /dev/shm")
@pytest.mark.parametrize("persistent", [True, False])
def test_a_loader_left_by_break_leaves_no_shared_file(photos, persistent):
    """A loop's `break` leaves batches in a loader's queue, never read, and workers ended mid-batch
    holding one: torch's count of a file's users, raised for each batch sent and taken back by the
    receiver, and the worker's mapping, never closed at its os._exit, kept their files in /dev/shm
    as long as this process lived (about one a loader)."""
    import time

    def left(iterator, pids):
        for k, _ in enumerate(iterator):
            if k == 1:
                break

    pids = _loaders_used(photos, 8, 2, persistent, left)
    deadline = time.monotonic() + 10
    while _torch_files_of(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _torch_files_of(pids)


def _loaders_used(photos, times: int, batch_size: int, persistent: bool, use) -> list[int]:
    """`times` loaders of 2 workers over the photos, each one's iterator handed to `use(iterator,
    pids so far)`, then dropped and collected; the workers' pids."""
    import gc

    ds = ShardDataset(photos, convention="torchvision")
    pids = []
    for _ in range(times):
        batches = loader(ds, batch_size, num_workers=2, persistent_workers=persistent)
        iterator = iter(batches)
        pids += [w.pid for w in iterator._workers]
        use(iterator, pids)
        del iterator, batches
        gc.collect()
    return pids


def test_a_forked_child_ending_its_copy_of_a_batch_does_not_free_the_slot(photos):
    import gc
    import os

    from augpipe import worker_memory

    batches = loader(ShardDataset(photos), 4, shuffle=False, num_workers=1)
    for images, _ in batches:
        slots = [w[:32].view(np.int64) for w in worker_memory._KEPT.values()]
        before = [int(c[1]) for c in slots]
        child = os.fork()
        if child == 0:
            del images
            gc.collect()
            os._exit(0)
        os.waitpid(child, 0)
        assert [int(c[1]) for c in slots] == before
        break


def _sparse_and_nested(items):
    images, labels = collate(items)
    one_hot = torch.nn.functional.one_hot(labels, 4).to_sparse()
    return images, one_hot, torch.nested.nested_tensor([images[0], images[0, :, :5]])


@pytest.mark.filterwarnings("ignore:Sparse invariant checks", "ignore:The PyTorch API of nested tensors")
def test_tensors_without_plain_storage_are_sent_as_torch_sends_them(photos):
    """A sparse or nested tensor has no storage to look at: sent by torch (an error in the
    worker's queue thread would lose the batch and leave the loop waiting)."""
    ds = ShardDataset(photos)
    batches = loader(ds, 4, shuffle=False, num_workers=1, collate_fn=_sparse_and_nested, timeout=60)
    images, one_hot, nested = next(iter(batches))
    assert torch.equal(one_hot.to_dense(), torch.nn.functional.one_hot(torch.tensor([ds[i][1] for i in range(4)]), 4))
    assert nested.is_nested and torch.equal(nested.unbind()[1], images[0, :, :5])


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/task"), reason="Linux's /proc lists a process's threads")
def test_a_feed_of_threads_ends_with_its_threads_gone(photos):
    """The loop ends once the feed's OS threads have ended, their C libraries' exit handlers run
    (a DataLoader forking its workers just after must not copy a lock one of them held)."""
    import os
    import threading

    for _ in range(5):
        tasks = []
        for _ in loader(ShardDataset(photos), 4, threads=2):
            tasks += [t.native_id for t in threading.enumerate() if t.name.startswith("augpipe-feed")]
        assert tasks and not [tid for tid in set(tasks) if os.path.exists(f"/proc/self/task/{tid}")]


@pytest.mark.parametrize("feed", ["threads", "processes", "dataloader"])
def test_detection_batches_gathered_from_kept_row_groups_are_each_rows_own_and_copies(boxes, feed):
    """From a row group's second batch on, a batch's boxes and labels are gathered from the
    group's targets laid end to end (`_Group.columns`): every feed's batches, epoch after epoch, hold each
    row's own target as the reader gives it row by row, and changing one in place reaches
    neither the next epochs nor another row."""
    rows = [t for _, t in ShardDataset(boxes)]
    options = {"threads": 2} if feed == "threads" else {"processes": 2} if feed == "processes" else {"num_workers": 2}
    batches = loader(ShardDataset(boxes), 3, shuffle=False, **options)
    try:
        for epoch in range(3):
            got = [t for _, targets in batches for t in targets]
            assert len(got) == len(rows) and all(same_target(g, w) for g, w in zip(got, rows)), epoch
            for t in got:
                t["boxes"].add_(1000)
                t["labels"].fill_(-5)
    finally:
        getattr(batches, "close", lambda: None)()
    ds = ShardDataset(boxes)
    list(loader(ds, 3, shuffle=False, threads=1))
    list(loader(ds, 3, shuffle=False, threads=1))
    assert all(g._columns is not None for g, _ in ds._picks(list(range(len(ds)))))  # the gathered path was taken


def test_a_kinds_columns_are_its_rows_targets_laid_end_to_end(boxes, detection):
    """`Target.torch_columns`: boxes alone give every row's `torch_target` end to end, in both box
    formats and conventions; kinds with instance masks (and the label kind) give None, and their
    batches are joined as before."""
    for out, joined in ((boxes, True), (detection, False)):
        ds = ShardDataset(out)
        group = ds._picks([0])[0][0]
        for box_format, convention in (("xyxy", "augpipe"), ("xywh", "torchvision")):
            made = ds.kind.torch_columns(group.rest, box_format, convention)
            assert (made is not None) == joined
            if made is None:
                continue
            fields, counts = made
            rows = ds.kind.torch_targets(group.rest, box_format, convention)
            assert sum(counts) == len(fields["boxes"]) and len(counts) == group.num_rows
            assert list(fields) == ["boxes", "labels"] and fields["boxes"].dtype == torch.float32
            assert same_target([{"boxes": b, "labels": c} for b, c in zip(fields["boxes"].split(counts),
                                                                          fields["labels"].split(counts))], rows)


@pytest.mark.parametrize("cache_bytes, shared", [(256 * 2**20, False), (256 * 2**20, True), (0, False)])
def test_a_streams_shares_read_each_shard_once_while_it_fits(photos, cache_bytes, shared):
    """A worker's share starts or ends inside a shard, which changes hands each epoch. A first
    epoch reads its pieces alone (a process that streams once reads no more than it needs; the
    threads of one feed share a reader and an epoch); later epochs read a piece as the whole shard
    and keep it while everything read has fitted and the shard should fit too, so no shard is read
    twice; with no cache, or one too small, each piece alone is read every epoch. Either way each
    share is its run of the epoch's rows, as one reader of the whole split gives them."""
    from augpipe.readers import _share

    whole = ShardIterable(photos, return_row=True, shuffle=True, seed=2, buffer_size=1)  # the shards' order alone
    shares = [ShardIterable(photos, return_row=True, shuffle=True, seed=2, buffer_size=1, cache_bytes=cache_bytes)
              for _ in range(1 if shared else 2)]
    reads = {id(share): [] for share in shares}
    for share in shares:
        read = share.ds.iter_batches
        share.ds.iter_batches = lambda *a, _read=read, _k=id(share), **kw: (reads[_k].append(kw["pieces"][0]),
                                                                          _read(*a, **kw))[1]
    shares = shares * 2 if shared else shares
    cut, first = 0, None
    for epoch in range(4):
        for reader in (whole, *shares):
            reader.set_epoch(epoch)
        pieces = [_share(shares[0]._my_pieces(), k, 2) for k in range(2)]
        cut += sum(p[1:] != (0, shares[0].rows[p[0]]) for share in pieces for p in share)
        got = [row["source"] for k, share in enumerate(shares) for row in share._stream(k, 2)]
        assert got == [row["source"] for row in whole], epoch
        if epoch == 0:  # no more than the first epoch needs
            assert [p for k in reads for p in reads[k]] == pieces[0] + pieces[1]
            first = {k: len(reads[k]) for k in reads}
    assert cut >= 3 and len(shares[0].files) >= 3
    for k in reads:
        later = reads[k][first[k]:]
        is_whole = [p[1:] == (0, shares[0].rows[p[0]]) for p in reads[k]]
        if cache_bytes > 1:
            assert all(p[1:] == (0, shares[0].rows[p[0]]) for p in later)
            whole_reads = [p[0] for p, w in zip(reads[k], is_whole) if w]
            assert len(whole_reads) == len(set(whole_reads))
        else:
            assert any(p[1:] != (0, shares[0].rows[p[0]]) for p in later)


def _counting_reads(stream) -> list:
    reads, read = [], stream.ds.iter_batches
    stream.ds.iter_batches = lambda *a, **kw: (reads.append(kw["pieces"][0]), read(*a, **kw))[1]
    return reads


@pytest.mark.parametrize("cache_bytes", [256 * 2**20, 1])
def test_a_shuffled_streams_second_pass_reads_ahead_what_its_shares_did_not(photos, cache_bytes):
    """A shuffled stream's share moves each epoch. A first pass reads what it needs, no more (a
    loader made for one epoch reads no more); from a second, the shards not kept are read ahead,
    one a batch, where each fits the room left, and later epochs read no shard; where they do not
    fit, the feed reads what it needs. Either way the batches are those of a stream that keeps nothing."""
    import torch

    from augpipe.readers import _share

    feed = loader(ShardIterable(photos, shuffle=True, seed=2, buffer_size=5, cache_bytes=cache_bytes), 3, threads=2)
    fresh = loader(ShardIterable(photos, shuffle=True, seed=2, buffer_size=5, cache_bytes=0), 3, threads=2)
    stream = feed.dataset
    reads = _counting_reads(stream)
    shards = [i for i, n in enumerate(stream.rows) if n]
    assert len(shards) >= 3
    for epoch in range(4):
        feed.set_epoch(epoch)
        fresh.set_epoch(epoch)
        pieces = [piece for k in range(2) for piece in _share(stream._my_pieces(), k, 2)]
        before = len(reads)
        got, want = list(feed), list(fresh)
        assert [b[1].tolist() for b in got] == [b[1].tolist() for b in want], epoch
        assert all(torch.equal(a[0], b[0]) for a, b in zip(got, want))
        if epoch == 0:
            assert sorted(reads) == sorted(pieces)  # no more than the pass needs
        if epoch == 1:
            assert sorted(stream._cache._items) == (shards if cache_bytes > 1 else [])
        if epoch >= 2:
            assert (len(reads) == before) == (cache_bytes > 1), epoch
    assert not stream._cache.full or cache_bytes == 1


def test_a_stream_read_in_order_reads_no_shard_ahead(photos):
    """Unshuffled, a rank's share is the same each epoch: nothing is read ahead."""
    stream = ShardIterable(photos, return_row=True, rank=0, world_size=2)
    reads = _counting_reads(stream)
    for epoch in range(3):
        stream.set_epoch(epoch)
        assert sum(1 for _ in stream) == sum(stop - first for _, first, stop in stream._my_pieces())
    mine = {shard for shard, _, _ in stream._my_pieces()}
    assert {p[0] for p in reads} == mine and set(stream._cache._items) <= mine


def test_reading_ahead_drops_nothing_kept_for_a_shard(photos):
    """A shard read ahead that does not fit the room left is let go, even where the estimate
    (the largest row read so far) said it would: nothing kept is dropped for it, and the cache is
    not taken as full (the hostile tester's: rows of other sizes further on made it drop the
    process's own shards, then read its share again every epoch)."""
    whole = ShardIterable(photos, return_row=True)
    sizes = [sum(g.nbytes for g in whole._read_piece(s, 0, n, keep=False)) for s, n in enumerate(whole.rows)]
    stream = ShardIterable(photos, return_row=True, cache_bytes=sizes[0] + sizes[1] // 2)
    assert stream._keep_whole(0) and list(stream._cache._items) == [0]
    stream._row_bytes = 1.0  # an estimate far too low
    stream.ds.shards("train")[1]["bytes"] = 1
    assert not stream._keep_whole(1)
    assert list(stream._cache._items) == [0] and not stream._cache.full


def test_a_shard_read_ahead_that_cannot_be_read_fails_only_the_pass_that_needs_it(photos, tmp_path):
    """What a stream reads ahead is for later epochs: a shard damaged there leaves the pass
    whole, and fails, named, the pass whose rows it holds."""
    import shutil

    from augpipe.errors import SourceError

    out = tmp_path / "out"
    shutil.copytree(photos, out)
    names = [s["name"] for s in ShardIterable(out).ds.shards("train")]
    stream = ShardIterable(out, return_row=True, shuffle=True, seed=4, buffer_size=2, rank=0, world_size=len(names))
    twin = ShardIterable(photos, return_row=True, shuffle=True, seed=4, buffer_size=2, rank=0, world_size=len(names))
    list(stream)  # a first pass
    stream.set_epoch(1)
    twin.set_epoch(1)
    damaged = next(s for s in range(len(names)) if s not in {p[0] for p in stream._my_pieces()})
    (out / names[damaged]).write_bytes(b"not parquet")
    assert [row["source"] for row in stream] == [row["source"] for row in twin]
    assert stream._cache.ahead == "done" and stream._cache.get_or_make(damaged) is None
    with pytest.raises(SourceError, match=f"shard {names[damaged]} cannot be read"):
        list(ShardIterable(out, return_row=True))


def test_a_page_of_a_shard_that_does_not_decode_is_named_by_every_reader(photos, tmp_path):
    """A shard whose footer reads but one of its column's pages does not (bytes flipped at the
    label column's first page): ShardDataset's rows, alone and through loader(), were pyarrow's
    "Couldn't deserialize thrift" traceback, not one line naming the shard (a new user's)."""
    import shutil

    import pyarrow.parquet as pq

    from augpipe.errors import SourceError

    out = tmp_path / "out"
    shutil.copytree(photos, out)
    name = ShardDataset(out).ds.shards("train")[0]["name"]
    column = next(c for c in (pq.ParquetFile(out / name).metadata.row_group(0).column(k) for k in range(99))
                  if c.path_in_schema == "label")
    raw = bytearray((out / name).read_bytes())
    at = column.dictionary_page_offset or column.data_page_offset
    raw[at:at + 4] = bytes(b ^ 0xFF for b in raw[at:at + 4])
    (out / name).write_bytes(bytes(raw))
    for read in (lambda: [ShardDataset(out)[i] for i in range(len(ShardDataset(out)))],
                 lambda: list(loader(ShardDataset(out), 16, num_workers=0)),
                 lambda: list(loader(ShardDataset(out), 16, threads=2))):
        with pytest.raises(SourceError, match=f"shard {name} cannot be read .*augpipe inspect --verify"):
            read()


@pytest.mark.parametrize("cache_bytes", [256 * 2**20, 0])
def test_a_shard_replaced_by_fewer_rows_fails_the_pass_named_not_a_short_epoch(photos, tmp_path, cache_bytes):
    """A shard rewritten with fewer rows after the stream counted them (its `len` promised them)
    fails the pass that reads it, named; kept, it is not read again (the hostile tester's: 805 of
    828 rows came, silently)."""
    import shutil

    import pyarrow.parquet as pq

    from augpipe.errors import SourceError

    out = tmp_path / "out"
    shutil.copytree(photos, out)
    stream = ShardIterable(out, return_row=True, cache_bytes=cache_bytes)
    names = [s["name"] for s in stream.ds.shards("train")]
    shard = max(range(len(names)), key=lambda s: stream.rows[s])
    table = pq.read_table(out / names[shard])
    assert sum(1 for _ in stream) == len(stream)
    pq.write_table(table.slice(0, len(table) - 1), out / names[shard])
    if cache_bytes:
        assert sum(1 for _ in stream) == len(stream)  # read from memory, as kept
    else:
        with pytest.raises(SourceError, match=f"shard {names[shard]} has {len(table) - 1} rows where it had "
                                              f"{len(table)}"):
            list(stream)


@pytest.mark.parametrize("cache_bytes", [256 * 2**20, 1])
def test_a_rank_inside_one_shard_reads_the_shard_whole_only_where_it_would_fit(photos, cache_bytes):
    """Ranks whose rows lie inside one shard: a first epoch reads their piece alone; later ones
    read the shard whole (and keep it) only where it should fit the cache, as far as the rows read
    so far say (the hostile tester's: one too large was read whole, then dropped)."""
    for rank in range(8):
        reader = ShardIterable(photos, shuffle=True, seed=2, rank=rank, world_size=8, cache_bytes=cache_bytes)
        reads = []
        read = reader.ds.iter_batches
        reader.ds.iter_batches = lambda *a, _read=read, **kw: (reads.append(kw["pieces"][0]), _read(*a, **kw))[1]
        for epoch in range(3):
            reader.set_epoch(epoch)
            before, pieces = len(reads), reader._my_pieces()
            assert sum(1 for _ in reader) == sum(stop - first for _, first, stop in pieces)
            got = reads[before:]
            if epoch == 0 or cache_bytes == 1:
                assert got == pieces, (rank, epoch)
            else:
                assert all(p[1:] == (0, reader.rows[p[0]]) for p in got), (rank, epoch)


def test_a_batchs_targets_copied_or_pickled_keep_what_the_loop_changed(boxes):
    """A batch's detection targets (`_Targets`) copied, deep-copied or pickled (torch.save) hold
    the rows as they are, edits included: only a feed's own transport sends them as made."""
    import copy
    import pickle

    for feed in ({"threads": 2}, {"num_workers": 0}, {"processes": 2}):
        batches = loader(ShardDataset(boxes), 4, shuffle=False, **feed)
        try:
            _, targets = next(iter(batches))
        finally:
            getattr(batches, "close", lambda: None)()
        targets[0]["boxes"] = targets[0]["boxes"][:0]
        targets[1]["extra"] = 7
        targets.append({"boxes": torch.zeros(1, 4), "labels": torch.tensor([3])})
        for again in (copy.copy(targets), copy.deepcopy(targets), pickle.loads(pickle.dumps(targets))):
            assert isinstance(again, list) and same_target(list(again), list(targets)), feed


def damaged(out, tmp_path, column: str, row: int, data: bytes):
    """A copy of `out` whose last train shard's `row` holds `data` in `column` (a struct<bytes,
    path>), in row groups of 2; (the copy, that shard's name)."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    copy = tmp_path / f"damaged-{column}"
    shutil.copytree(out, copy)
    shard = [s["name"] for s in ShardIterable(copy).ds.shards("train")][-1]
    table = pq.read_table(copy / shard)
    cells = table.column(column).combine_chunks()
    stored = cells.field("bytes").to_pylist()
    stored[row] = data
    changed = pa.StructArray.from_arrays([pa.array(stored, pa.binary()), cells.field("path")], ["bytes", "path"])
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, changed), copy / shard,
                   row_group_size=2)  # row 2 is the second group's first: each group's start counts
    return copy, shard


def _raising_transform(image):
    class Local(RuntimeError):
        """An error class made inside a function: it does not pickle."""

    raise Local("a transform's own error")


@pytest.mark.parametrize("damage", [b"", b"not an image at all"])
def test_a_row_whose_image_does_not_decode_is_named_by_its_shard_and_row_on_every_path(photos, tmp_path, damage):
    """A row's stored image emptied or garbled after expand: every reader's error names the shard
    and the row in it (inspect's own numbering), where the decoder's said neither ("image has
    no bytes" / "image does not decode", a hostile tester's finding); a ValueError still, as the
    decoder's was."""
    from augpipe.errors import DamagedRow

    out, shard = damaged(photos, tmp_path, "image", 2, damage)
    said = f"{shard} row 2: image (has no bytes|does not decode)"
    index = sum(ShardIterable(out).rows[:-1]) + 2
    readers = {"dataset[i]": lambda: ShardDataset(out)[index],
               "dataset, threads": lambda: list(loader(ShardDataset(out), batch_size=4, threads=2)),
               "dataset, decode_size": lambda: list(loader(ShardDataset(out, decode_size=(30, 30)), 4, num_workers=0)),
               "dataset, return_row": lambda: [ShardDataset(out, return_row=True)[index]],
               "stream": lambda: list(ShardIterable(out)),
               "stream, batches": lambda: list(loader(ShardIterable(out), batch_size=4, num_workers=0))}
    for read in readers.values():
        with pytest.raises(DamagedRow, match=said) as raised:
            read()
        assert isinstance(raised.value, ValueError)
    feed = loader(ShardDataset(out), batch_size=4, processes=2)
    try:  # from a feed's own process, as it was raised: one line, not a traceback in a message
        with pytest.raises(DamagedRow, match=f"^{said}"):
            list(feed)
    finally:
        feed.close()
    stored = loader(ShardDataset(out, decode=False), batch_size=len(ShardDataset(out)), num_workers=0,
                    shuffle=False, device="cpu")
    with pytest.raises(DamagedRow, match=f"image {index} of the batch does not decode"):
        list(stored)  # decoded after the reader, by decode_images: whichever decoder is installed


def test_a_mask_that_does_not_decode_is_named_by_its_shard_and_row(tmp_path_factory, tmp_path):
    """A segmentation row's mask PNG garbled: the reader names its shard and row (it raised
    expand's own SkipInput, naming neither, wrapped in a worker's traceback)."""
    from augpipe.errors import DamagedRow

    masks = expanded(tmp_path_factory, "feed-masks", lambda src: make_scenes(src, n=6, fmt="masks"), copies=0)
    out, shard = damaged(masks, tmp_path, "annotation", 3, b"not a png")
    said = f"{shard} row 3: mask annotation is not a readable image"
    for read in (lambda: list(ShardIterable(out)), lambda: list(loader(ShardDataset(out), 4, threads=2)),
                 lambda: list(loader(ShardIterable(out), 4, num_workers=0))):
        with pytest.raises(DamagedRow, match=said):
            read()


def test_an_error_whose_class_does_not_pickle_reaches_the_loop_from_a_feed_process(photos):
    """A transform's error of a class the main process cannot rebuild by name comes as a
    RuntimeError with its traceback; the feed process lives on (it died sending it)."""
    feed = loader(ShardDataset(photos, transform=_raising_transform), batch_size=4, processes=1)
    try:
        for _ in range(2):  # the same process, the next epoch
            with pytest.raises(RuntimeError, match="a transform's own error"):
                list(feed)
    finally:
        feed.close()


def test_a_streams_own_batch_size_is_the_loaders_and_batches_checks_its_arguments(photos):
    stream = ShardIterable(photos, batch_size=8)
    for feed in ({"num_workers": 0}, {"threads": 2}):
        batches = list(loader(stream, **feed))
        assert max(len(b[0]) for b in batches) == 8 and len(batches) == len(loader(stream, **feed))
    with pytest.raises(ValueError, match="where the stream makes batches of 8"):
        loader(stream, 16)
    assert stream.batches(8, 0) == len(stream.batched(8, 0)) == -(-len(ShardIterable(photos)) // 8)
    for wrong in ((0, 1), (8, 2.5), (8, -1), (True, 1)):
        with pytest.raises(ValueError, match="a whole number"):
            stream.batches(*wrong)
        with pytest.raises(ValueError, match="a whole number"):
            stream.batched(*wrong)


@pytest.mark.parametrize("change", ["a category more", "a category less"])
def test_a_detection_row_whose_boxes_and_categories_differ_in_number_is_named(detection, tmp_path, change):
    """A row with more categories than boxes gave the batch's next rows its labels, silently (a
    batch's labels are cut by the boxes' counts), or a RuntimeError naming nothing; ds[i] handed
    out boxes and labels that did not pair (a hostile tester's finding)."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from augpipe.errors import DamagedRow

    out = tmp_path / "out"
    shutil.copytree(detection, out)
    shard = [s["name"] for s in ShardIterable(out).ds.shards("train")][-1]
    table = pq.read_table(out / shard)
    objects = table.column("objects").to_pylist()
    row = next(k for k, o in enumerate(objects) if o["category"])
    objects[row]["category"] = objects[row]["category"] + [0] if change == "a category more" else \
        objects[row]["category"][:-1]
    changed = pa.array(objects, table.schema.field("objects").type)
    pq.write_table(table.set_column(table.schema.get_field_index("objects"), "objects", changed), out / shard)
    index = sum(ShardIterable(out).rows[:-1]) + row
    said = f"{shard} row {row}: \\d+ boxes but \\d+ categories"
    for read in (lambda: ShardDataset(out)[index], lambda: ShardDataset(out).__getitems__(list(range(len(ShardDataset(out))))),
                 lambda: list(ShardIterable(out, batch_size=64)), lambda: list(ShardIterable(out)),
                 lambda: list(loader(ShardDataset(out), 64, threads=2))):
        with pytest.raises(DamagedRow, match=said):
            read()


KILLED_MID_BATCH = """
import os, sys
from augpipe.readers import ShardDataset, ShardIterable, loader

def endless(item):
    with open(os.path.join(sys.argv[2], str(os.getpid())), "w"):
        pass
    while True:
        pass

if __name__ == "__main__":
    ds = (ShardIterable if sys.argv[3] == "stream" else ShardDataset)(sys.argv[1], transform=endless)
    next(iter(loader(ds, 2, processes=2)))
"""


@pytest.mark.parametrize("reader", ["stream", "dataset"])
def test_feed_processes_busy_in_a_batch_die_with_a_killed_main_process(photos, tmp_path, reader):
    """A hostile tester's: a feed process looked for its parent only between batches, and one in
    a batch that never ends (an endless transform; buffer_size=0 once) ran on at full speed after
    the main process was killed."""
    assert gone(_kill_main_once_two_workers_started(tmp_path, KILLED_MID_BATCH, photos, reader), 30)


def _damaged_copy(photos, tmp_path, damage) -> tuple:
    """A copy of `photos` whose first train shard `damage(path)` changed: (the copy, that shard's name)."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(photos, out)
    shard = sorted(out.glob("train-*.parquet"))[0]
    damage(shard)
    return out, shard.name


def _without(column: str):
    import pyarrow.parquet as pq

    return lambda shard: pq.write_table(pq.read_table(shard).drop_columns([column]), shard)


FEEDS = [{}, {"threads": 2}, {"processes": 2}]


@pytest.mark.parametrize("damage, said", [
    (lambda shard: shard.write_bytes(shard.read_bytes()[:-100]), "cannot be read (Parquet magic bytes not found"),
    (lambda shard: shard.write_bytes(b""), "cannot be read (Parquet file size is 0 bytes)"),
    (lambda shard: shard.unlink(), "is missing: augpipe inspect --verify lists the damage"),
    (_without("image"), "has no 'image' column, which its manifest's classification kind needs"),
    (_without("label"), "has no 'label' column, which its manifest's classification kind needs"),
], ids=["truncated", "empty", "deleted", "no image", "no label"])
def test_a_shard_dataset_over_a_damaged_shard_names_it_in_one_line_as_the_stream_does(photos, tmp_path, damage, said):
    """A hostile tester's: ShardDataset (and every feed over it) raised pyarrow's ArrowInvalid,
    an OSError or a KeyError naming no shard, where the stream gave a line naming it."""
    out, name = _damaged_copy(photos, tmp_path, damage)
    for make in (lambda: ShardDataset(out), lambda: list(ShardIterable(out))):
        with pytest.raises(SourceError, match=re.escape(f"shard {name} ") + ".*" + re.escape(said)):
            make()


def test_a_label_column_of_floats_gives_whole_labels_and_names_a_fraction(photos, tmp_path):
    """A hostile tester's: a label column rewritten as float64 went into every batch as float64
    (cross_entropy refused it) and 1.5 went through, where an item truncated it to 1."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def as_floats(fraction: bool):
        def damage(shard):
            table = pq.read_table(shard)
            labels = [float(v) for v in table.column("label").to_pylist()]
            if fraction:
                labels[1] = 1.5
            pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels)), shard)
        return damage

    out, _ = _damaged_copy(photos, tmp_path / "whole", as_floats(False))
    for feed in FEEDS:
        for reader in (ShardDataset(out), ShardIterable(out)):
            _, labels = next(iter(loader(reader, 4, **feed)))
            assert labels.dtype == torch.int64, (feed, reader)
    assert type(ShardDataset(out)[0][1]) is int
    out, name = _damaged_copy(photos, tmp_path / "fraction", as_floats(True))
    with pytest.raises(DamagedRow, match=re.escape(f"{name} row 1: label 1.5 is not a class index")):
        ShardDataset(out)[1]
    for feed in FEEDS:
        with pytest.raises(DamagedRow, match="label 1.5 is not a class index"):
            list(loader(ShardDataset(out), 4, **feed))


@pytest.mark.parametrize("name, value, said", [
    ("resize", 2.5, "a positive int or (height, width)"), ("decode_size", 1.5, "a positive int or (height, width)"),
    ("decode_size", float("nan"), "a positive int or (height, width)"), ("resize", "ab", "a positive int or"),
    ("resize", 100_000, "at most 65,535 pixels a side"),
])
def test_a_readers_sizes_are_refused_in_one_line(photos, name, value, said):
    """A hostile tester's: resize=2.5 was "TypeError: 'float' object is not iterable", resize=100000
    OpenCV's failure to allocate 30 GB at the first batch."""
    for reader in (ShardDataset, ShardIterable):
        with pytest.raises(ValueError, match=re.escape(f"{name} {value!r}: {said}")):
            reader(photos, **{name: value})


@pytest.mark.parametrize("seed", ["x", 2**70, 1.5, True])
def test_a_loaders_seed_is_a_whole_number_of_64_bits(photos, seed):
    """A hostile tester's: torch's own "manual_seed expected a long, but got str" or "Overflow"."""
    for feed in ({}, {"threads": 2}, {"processes": 2}):
        with pytest.raises(ValueError, match=re.escape(f"seed {seed!r}: a whole number of 64 bits")):
            loader(ShardDataset(photos), 4, seed=seed, **feed)


def test_a_readers_split_epoch_and_cache_are_refused_in_one_line(photos):
    """A hostile tester's: split=None read every split's rows (validation's among training's)
    without a word; set_epoch("a") and cache_bytes="x" were Python's own errors, set_epoch(1.5)
    taken as 1."""
    for reader in (ShardDataset, ShardIterable):
        with pytest.raises(ValueError, match=re.escape("split None: one split's name, such as 'train' (its splits are train)")):
            reader(photos, split=None)
        with pytest.raises(ValueError, match=re.escape("cache_bytes 'x': a whole number of bytes, 0 or more")):
            reader(photos, cache_bytes="x")
        made = reader(photos)
        for epoch in ("a", None, 1.5, -1):
            with pytest.raises(ValueError, match=re.escape(f"epoch {epoch!r}: a whole number, 0 or more")):
                made.set_epoch(epoch)
        made.set_epoch(3)
        assert made.epoch == 3
