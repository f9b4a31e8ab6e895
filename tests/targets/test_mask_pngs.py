"""Mask PNGs (augpipe/targets/masks.py; named apart from tests/formats/test_masks.py): what a mask's values may be."""

from __future__ import annotations

import io
import re

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


def test_mask_pngs_read_back_the_same_pixels_in_every_reader():
    """Grey masks (augpipe's writer: unfiltered rows, zlib-ng's run-length deflate; they were
    OpenCV's, and PIL's before), instance masks at 1 bit a pixel: the same pixels through
    augpipe's reader, PIL, OpenCV and Hugging Face datasets' Image feature, and the same bytes
    each time they are written."""
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
        assert data == (write_instance_mask(mask) if instance else write_mask(mask, None))


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
    """augpipe's reader, PIL and Hugging Face datasets read the indices and the palette back."""
    from datasets import Image as HFImage
    from PIL import Image

    from augpipe.targets.masks import read_mask, write_mask

    rng = np.random.default_rng(1)
    for palette, (h, w) in ((bytes(range(256)) * 3, (40, 30)), (bytes(rng.integers(0, 256, 63, np.uint8)), (1, 7)),
                            (bytes(range(60)), (333, 501))):
        mask = rng.integers(0, len(palette) // 3, (h, w)).astype(np.uint8)
        data = write_mask(mask, palette)
        again, kept = read_mask(data, "m")
        assert np.array_equal(again, mask) and kept[:len(palette)] == palette
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == "P" and np.array_equal(np.asarray(im), mask)
            assert bytes(im.getpalette())[:len(palette)] == palette
        decoded = HFImage().decode_example({"bytes": data, "path": None})
        assert decoded.mode == "P" and np.array_equal(np.asarray(decoded), mask)


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


def _opencv_grey(data: bytes):
    """What grey_png_pixels gave before it inflated any PNG itself: OpenCV's pixels, 1-bit as 0/1."""
    import cv2

    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.ndim != 2 or mask.dtype != np.uint8:
        return None
    return (mask > 0).astype(np.uint8) if data[24] == 1 else mask


def _damaged(data: bytes, rng, changed: bool, cut: bool) -> bytes:
    """A file with one byte past the signature changed, and/or cut short."""
    if changed:
        damaged = bytearray(data)
        damaged[int(rng.integers(8, len(data)))] ^= int(rng.integers(1, 256))
        data = bytes(damaged)
    return data[:int(rng.integers(0, len(data)))] if cut else data


def _grey_pngs(rng, n: int):
    """Grey PNGs as OpenCV writes them (every filter, level and strategy), as PIL writes them
    (adaptive filters, 1-bit, with a pHYs chunk), and as augpipe writes them; some with a byte
    changed or cut short."""
    import cv2
    from PIL import Image

    from augpipe.targets.masks import grey_png, write_instance_mask

    for i in range(n):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        style = i % 4
        mask = (rng.integers(0, 256, (h, w)) if style == 0 else rng.integers(0, 4, (h, w)) if style == 1
                else np.repeat(rng.integers(0, 6, (h, 1)), w, axis=1) if style == 2
                else (rng.random((h, w)) < 0.2) * 255).astype(np.uint8)
        way = i % 5
        if way == 0:
            options = [cv2.IMWRITE_PNG_COMPRESSION, int(rng.integers(0, 10)), cv2.IMWRITE_PNG_FILTER,
                       int(rng.choice([8, 16, 32, 64, 128, 248])), cv2.IMWRITE_PNG_STRATEGY, int(rng.integers(0, 5))]
            data = cv2.imencode(".png", mask, options)[1].tobytes()
        elif way == 1:
            data = cv2.imencode(".png", mask)[1].tobytes()
        elif way == 2:
            buf = io.BytesIO()
            Image.fromarray(mask).save(buf, "PNG", compress_level=int(rng.integers(0, 10)))
            data = buf.getvalue()
        elif way == 3:
            buf = io.BytesIO()
            Image.fromarray(mask > 127).save(buf, "PNG", dpi=(72, 72))
            data = buf.getvalue()
        else:
            data = write_instance_mask(mask) if i % 2 else grey_png(mask)
        yield _damaged(data, rng, changed=i % 9 == 0, cut=i % 23 == 0)


def test_grey_pngs_inflated_by_augpipe_give_opencvs_pixels():
    """The PNGs augpipe inflates itself (grey, 8 or 1 bit, rows unfiltered or by Sub or Up: OpenCV's
    own, augpipe's) give OpenCV's pixels, writable and C-ordered; any it does not (PIL's adaptive
    filters, a bad CRC, a cut) go to OpenCV as before, which reads or refuses them as it did."""
    from augpipe.targets.masks import _plain_png, grey_png_pixels

    rng = np.random.default_rng(3)
    inflated = fallen_back = 0
    for i, data in enumerate(_grey_pngs(rng, 1500)):
        plain = _plain_png(data) if len(data) >= 26 and data[24:26] in (b"\x08\x00", b"\x01\x00") else None
        fast = None if plain is None else plain[0]
        before = _opencv_grey(data) if len(data) >= 26 else None
        if fast is None:
            fallen_back += 1
        else:
            inflated += 1
            assert before is not None and fast.dtype == np.uint8 and fast.shape == before.shape, i
            assert np.array_equal(fast, before) and fast.flags.writeable and fast.flags.c_contiguous, i
        got = grey_png_pixels(data) if len(data) >= 26 else None
        assert (got is None) == (before is None) and (got is None or np.array_equal(got, before)), i
    assert inflated > 700 and fallen_back > 300  # both ways taken, on this many files


def test_none_and_sub_rows_mixed_unfilter_as_the_specification_says_and_others_go_to_libpng(monkeypatch):
    """Rows filtered by None and Sub in any order, the running sums in bands of rows (their bound
    made small, as a huge image's would be), against the PNG specification worked a byte at a
    time; a file with an Up, Average or Paeth row, or an IHDR method that is not 0, or larger than
    libpng takes, is not inflated here (OpenCV reads or refuses it, as before)."""
    import struct
    import zlib

    import cv2

    from augpipe.targets import masks

    monkeypatch.setattr(masks, "INT32_SUMS", 255 * 41 * 7)
    rng = np.random.default_rng(4)
    rows = rng.integers(0, 256, (50, 40)).astype(np.uint8)
    filters = rng.integers(0, 2, 50).astype(np.uint8)
    expected = np.zeros_like(rows)
    for r, f in enumerate(filters):
        for c in range(40):
            left = int(expected[r, c - 1]) if c and f else 0
            expected[r, c] = (int(rows[r, c]) + left) % 256
    assert np.array_equal(masks._unfiltered(filters, rows), expected)

    def png(width, height, raw, compression=0, method=0):
        def chunk(name, data):
            return struct.pack(">I", len(data)) + name + data + struct.pack(">I", zlib.crc32(name + data))
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, compression, method, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

    raw = np.concatenate([filters[:, None], rows], axis=1)
    assert np.array_equal(masks._plain_png(png(40, 50, raw.tobytes()))[0], expected)
    for f in (2, 3, 4):
        changed = raw.copy()
        changed[30, 0] = f
        data = png(40, 50, changed.tobytes())
        assert masks._plain_png(data) is None
        assert np.array_equal(masks.grey_png_pixels(data), cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))
    assert masks._plain_png(png(40, 50, raw.tobytes(), method=1)) is None
    assert masks.grey_png_pixels(png(40, 50, raw.tobytes(), method=1)) is None  # libpng refuses it
    assert masks._plain_png(png(40, 50, raw.tobytes(), compression=1)) is None
    assert masks._plain_png(png(1_000_001, 1, b"\x00" * 1_000_002)) is None  # libpng's limit on a side
    strided = np.frombuffer(png(40, 50, raw.tobytes()), np.uint8).repeat(2)[::2]  # not one run of bytes
    assert masks._plain_png(strided) is None


def _palette_pngs(rng, n: int):
    """(indices, palette, PNG): palette PNGs as PIL writes them (1 to 256 colours: PIL packs 16 or
    fewer into 1, 2 or 4 bits, which PIL then reads), some with transparency, some as augpipe
    writes them, some with a byte changed or cut short."""
    from PIL import Image

    from augpipe.targets.masks import write_mask

    for i in range(n):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        colours = int(rng.choice([1, 2, 4, 16, 17, 100, 256]))
        palette = rng.integers(0, 256, 3 * colours).astype(np.uint8).tobytes()
        indices = rng.integers(0, colours, (h, w)).astype(np.uint8)
        if i % 3 == 0:
            indices = np.repeat(indices[:, :1], w, axis=1)
        if i % 2:
            data = write_mask(indices, palette)
        else:
            im = Image.frombytes("P", (w, h), indices.tobytes())
            im.putpalette(palette)
            buf = io.BytesIO()
            im.save(buf, "PNG", compress_level=int(rng.integers(0, 10)),
                    **({"transparency": int(rng.integers(0, colours))} if i % 4 == 0 else {}))
            data = buf.getvalue()
        yield indices, palette, _damaged(data, rng, changed=i % 11 == 0, cut=i % 29 == 0)


def test_palette_masks_read_as_pil_reads_them_and_write_what_pil_reads_back():
    """A palette mask's indices and palette come out as PIL gives them, whether augpipe inflated
    it or PIL read it; augpipe's own palette PNGs (OpenCV's deflate, the header rewritten) read
    back in PIL, OpenCV's header check and Hugging Face datasets as the indices and palette given."""
    from PIL import Image

    from augpipe.targets.masks import _plain_png, read_mask

    rng = np.random.default_rng(5)
    inflated = 0
    for i, (indices, palette, data) in enumerate(_palette_pngs(rng, 600)):
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                expected = (np.asarray(im, np.uint8), bytes(im.getpalette() or [])) if im.mode == "P" else None
        except Exception:  # noqa: BLE001 - PIL refuses it: so must augpipe
            expected = None
        if expected is None:
            with pytest.raises(SkipInput):
                read_mask(data, "m.png")
            continue
        got = read_mask(data, "m.png")
        assert np.array_equal(got[0], expected[0]) and got[1] == expected[1], i
        inflated += _plain_png(data) is not None
        if i % 2 and i % 11 and i % 29:  # augpipe's, untouched: the indices and palette it was given
            assert np.array_equal(expected[0], indices) and expected[1] == palette, i
    assert inflated > 300


def test_a_palette_mask_written_by_augpipe_is_a_valid_png_everywhere():
    """Its chunks' CRCs check out in PIL; Hugging Face datasets decodes mode P with the indices
    and palette; libpng (OpenCV) expands it into the palette's colours."""
    import cv2
    from datasets import Image as HFImage
    from PIL import Image

    from augpipe.targets.masks import write_mask

    palette = bytes(range(256)) * 3
    indices = (np.arange(40 * 30).reshape(30, 40) % 256).astype(np.uint8)
    data = write_mask(indices, palette)
    with Image.open(io.BytesIO(data)) as im:
        im.verify()  # every chunk's CRC
    decoded = HFImage().decode_example({"bytes": data, "path": None})
    assert decoded.mode == "P" and np.array_equal(np.asarray(decoded), indices) and bytes(decoded.getpalette()) == palette
    colours = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # libpng expands it: a valid file
    rgb = np.frombuffer(palette, np.uint8).reshape(256, 3)
    assert np.array_equal(colours[..., ::-1], rgb[indices])


def test_a_mask_that_is_not_class_indices_is_refused_never_wrapped():
    """Values past 0..255, fractions, NaN, strings and shapes other than H × W (or H × W × 1) are
    refused in one line; whole numbers of any type in range are written as they are (the
    hostile tester's: 300 was written as 44, -1 as 255, 1.7 as 1)."""
    import torch

    from augpipe.targets import kind_for
    from augpipe.targets.masks import read_mask, write_instance_mask, write_mask

    for bad, says in ((np.full((4, 4), 300), "0 to 255, not 300 to 300"), (np.full((4, 4), -1, np.int16), "0 to 255"),
                      (np.full((4, 4), 1.7), "whole numbers"), (np.full((4, 4), np.nan), "whole numbers"),
                      (np.array([["a"]]), "not <U1"), (np.zeros((5, 5, 3), np.uint8), "shape (5, 5, 3)"),
                      (np.zeros(5, np.uint8), "shape (5,)"), (np.zeros((0, 3), np.uint8), "shape (0, 3)")):
        for palette in (None, bytes(range(30))):
            with pytest.raises(ValueError, match=re.escape(says)):
                write_mask(bad, palette)
    for good in (np.full((4, 3), 2.0), np.full((4, 3), 2, np.int64), np.full((4, 3, 1), 2, np.uint16)):
        assert np.array_equal(read_mask(write_mask(good, None), "m")[0], np.full((4, 3), 2, np.uint8))
    with pytest.raises(ValueError, match=re.escape("shape (5, 5, 3)")):
        write_instance_mask(np.zeros((5, 5, 3)))
    kind = kind_for("segmentation")
    with pytest.raises(ValueError, match="whole numbers"):
        kind.from_user_target(torch.full((4, 4), 0.5), (4, 4), "xyxy", "augpipe")
    arrays, restore = kind.from_user_target(torch.ones(4, 4), (4, 4), "xyxy", "augpipe")
    assert arrays["mask"].dtype == np.uint8 and restore(arrays).dtype == torch.float32
