"""Mask PNGs (augpipe/targets/masks.py; named apart from tests/formats/test_masks.py): what a mask's values may be."""

from __future__ import annotations

import io

import numpy as np
import pytest

from augpipe import ExpandOptions, expand
from augpipe.errors import SkipInput
from conftest import make_scenes

QUIET = dict(progress=False, workers=1)


def test_a_32_bit_mask_value_outside_a_byte_is_a_recorded_skip(tmp_path):
    from PIL import Image

    from augpipe.targets.masks import read_mask

    root = make_scenes(tmp_path / "seg", n=4, fmt="masks")
    values = np.asarray(Image.open(root / "masks" / "scene_000.png"), np.int32)
    values[0, 0] = -2  # 254 once wrapped into a byte: another class, silently
    (root / "masks" / "scene_000.png").unlink()
    Image.fromarray(values, "I").save(root / "masks" / "scene_000.tif")
    buf = (root / "masks" / "scene_000.tif").read_bytes()
    with pytest.raises(SkipInput, match=r"has values outside 0..255 \(-2..2\)"):
        read_mask(buf, "m.tif")
    m = expand(root, "flips", tmp_path / "out", ExpandOptions(copies=0, **QUIET))
    assert any(s["path"] == "images/scene_000.png" and "outside 0..255" in s["reason"] for s in m["skipped"])


def _masks(rng):
    """Masks as augpipe writes them: class indices with runs and noise, 0/1 instance masks, odd sizes."""
    for h, w in ((1, 1), (3, 7), (48, 64), (320, 320), (101, 57)):
        runs = np.repeat(rng.integers(0, 6, (h, max(w // 8, 1))), 8, axis=1)[:, :w]
        noise = rng.integers(0, 256, (h, w))
        yield runs.astype(np.uint8), False
        yield noise.astype(np.uint8), False
        yield (rng.random((h, w)) < 0.3).astype(np.uint8), True


def test_mask_pngs_written_by_opencv_read_back_the_same_pixels_in_every_reader():
    """Grey masks are written by OpenCV (they were PIL's), instance masks at 1 bit a pixel: the
    same pixels through augpipe's reader, PIL, OpenCV and Hugging Face datasets' Image feature."""
    import cv2
    from datasets import Image as HFImage
    from PIL import Image

    from augpipe.targets.masks import read_instance_mask, read_mask, write_instance_mask, write_mask

    rng = np.random.default_rng(0)
    for mask, instance in _masks(rng):
        data = write_instance_mask(mask) if instance else write_mask(mask, None)
        stored = (mask > 0).astype(np.uint8) if instance else mask  # mode "1" reads as 0 and 1
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(data)) as im:
            im.verify()  # the chunks' CRCs
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == ("1" if instance else "L") and np.array_equal(np.asarray(im, np.uint8), stored)
        assert np.array_equal(read_mask(data, "m")[0], stored) and read_mask(data, "m")[1] is None
        assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED),
                              stored * 255 if instance else stored)  # libpng widens 1 bit to 255
        assert np.array_equal(np.asarray(HFImage().decode_example({"bytes": data, "path": None}), np.uint8), stored)
        if instance:
            assert np.array_equal(read_instance_mask(data), mask)


def test_instance_masks_of_any_shape_and_type_pack_to_one_bit_and_old_8_bit_ones_still_read():
    """Widths that are no multiple of 8 (a row's last byte part padding), one pixel, booleans,
    wider integers (a negative value outside, as in 0.3), floats, a trailing channel: inside where
    greater than 0. 0.3's masks (8-bit, 255 inside) read the same."""
    from PIL import Image

    from augpipe.targets.masks import grey_png, read_instance_mask, write_instance_mask

    rng = np.random.default_rng(3)
    for h, w in [(1, 1), (1, 9), (7, 8), (5, 13), (33, 100), (480, 641)]:
        inside = rng.random((h, w)) < 0.3
        for mask in (inside, inside.astype(np.uint8) * 7, inside.astype(np.int64) * 3 - (~inside) * 2, inside * 0.5,
                     inside.astype(np.uint8)[:, :, None]):
            data = write_instance_mask(mask)
            with Image.open(io.BytesIO(data)) as im:
                assert (im.mode, im.size) == ("1", (w, h)) and np.array_equal(np.asarray(im), inside)
            assert np.array_equal(read_instance_mask(data), inside.astype(np.uint8))
        assert np.array_equal(read_instance_mask(grey_png(inside.astype(np.uint8) * 255)), inside.astype(np.uint8))


def test_a_palette_mask_keeps_its_palette_and_indices():
    from augpipe.targets.masks import read_mask, write_mask

    palette = bytes(range(256)) * 3
    mask = np.random.default_rng(1).integers(0, 21, (40, 30)).astype(np.uint8)
    again, kept = read_mask(write_mask(mask, palette), "m")
    assert np.array_equal(again, mask) and kept[:768] == palette


def test_a_rows_mask_classes_are_those_its_png_holds():
    """`row_classes` takes the values of a mask this process wrote from its writing, and decodes
    any other: the same classes either way."""
    from augpipe.targets import kind_for, semantic
    from augpipe.targets.semantic import Mask, values_of

    kind = kind_for("segmentation")
    classes = ["background", "a", "b", "c", "d", "e"]
    rng = np.random.default_rng(2)
    for mask, _ in _masks(rng):
        mask = mask % 6
        row = kind.values(Mask(mask, None), None)
        expected = {classes[v]: 1 for v in np.unique(mask).tolist() if v}
        assert row["annotation"]["bytes"] in semantic._WRITTEN
        assert dict(kind.row_classes(row, classes)) == expected
        semantic._WRITTEN.clear()  # read back from elsewhere: decoded
        assert dict(kind.row_classes(row, classes)) == expected
        assert values_of(mask) == tuple(np.unique(mask).tolist())


def test_values_of_a_mask_are_its_unique_values():
    """`values_of` (least and greatest, then each value between them when they are few, else a
    histogram): np.unique's values on masks of every shape and spread of values."""
    from augpipe.targets.semantic import FEW_VALUES, values_of

    rng = np.random.default_rng(5)
    for k in range(600):
        h, w = (int(v) for v in rng.integers(1, 40, 2)) if k % 5 else (1, int(rng.integers(1, 6)))
        low = int(rng.integers(0, 256))
        spread = int(rng.integers(0, FEW_VALUES + 3)) if k % 4 else int(rng.integers(0, 256))
        mask = rng.integers(low, min(low + spread, 255) + 1, (h, w)).astype(np.uint8)
        if k % 3 == 0:
            mask[mask == mask.flat[0]] = mask.max()  # a gap among the values
        assert values_of(mask) == tuple(np.unique(mask).tolist()), (k, mask)
    assert values_of(np.zeros((0, 4), np.uint8)) == ()
