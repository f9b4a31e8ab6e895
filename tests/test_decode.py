"""Decoding (augpipe/decode.py): a broken image is a skip, and no decoder's warning reaches stderr."""

from __future__ import annotations

import subprocess

import pytest
from conftest import ENV, augpipe


def test_no_decoder_warning_reaches_stderr(tmp_path, folder):
    import cv2
    import numpy as np

    png = cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))[1].tobytes()
    (folder / "cat" / "half.png").write_bytes(png[: len(png) // 2])
    done = subprocess.run(augpipe("expand", folder, "-r", "flips", "-o", tmp_path / "out", "-w", "2", "-q"),
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def _jpegs() -> dict:
    """JPEGs of the kinds users have: each subsampling, progressive, optimised, grey, CMYK, restart
    markers, odd sizes, EXIF orientations, damaged ones."""
    import io

    import cv2
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:45, 0:61]
    rgb = np.dstack([x * 4, y * 5, (x * y) % 256]).astype(np.uint8)
    rgb[10:30, 20:40] = np.random.default_rng(0).integers(0, 256, (20, 20, 3))

    def pil(mode="RGB", **kw) -> bytes:
        out = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(out, "JPEG", **kw)
        return out.getvalue()

    def turned(orientation: int) -> bytes:
        exif = Image.Exif()
        exif[0x0112] = orientation
        return pil(exif=exif)

    plain = pil()
    return {"4:2:0": plain, "4:4:4": pil(subsampling=0), "4:2:2": pil(subsampling=1), "progressive": pil(progressive=True),
            "optimised": pil(optimize=True), "quality 100": pil(quality=100), "grey": pil("L"), "CMYK": pil("CMYK"),
            "odd size": cv2.imencode(".jpg", rgb[:37, :53])[1].tobytes(),
            "restart markers": cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1].tobytes(),
            "EXIF orientation 6": turned(6), "EXIF orientation 1": turned(1),
            "truncated": plain[: len(plain) // 2], "no image data": plain[:2] + bytes(60)}


def test_every_jpeg_decodes_to_opencvs_pixels():
    """Plain JPEGs are decoded by libjpeg-turbo's own API (simplejpeg), the rest by OpenCV: either
    way a row's image and a source's are OpenCV's pixels, EXIF orientation applied, and a damaged
    one fails as OpenCV's decode does."""
    import cv2
    import numpy as np

    from augpipe.decode import decode, row_image
    from augpipe.errors import SkipInput

    for name, data in _jpegs().items():
        want = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
        for given in (data, np.frombuffer(data, np.uint8)):
            try:
                got = row_image(given)
            except ValueError:
                got = None
            assert (got is None and want is None) or np.array_equal(got, want), name
        try:
            source = decode(data, 10**8).rgb
        except SkipInput:
            source = None
        assert (source is None and want is None) or np.array_equal(source, want), name


def test_plain_jpegs_take_libjpeg_turbos_api_the_rest_opencv(monkeypatch):
    import simplejpeg

    import augpipe.decode as decoding

    taken, decode_jpeg = [], simplejpeg.decode_jpeg

    def counted(data, *args, **kwargs):
        taken.append(bytes(data))
        return decode_jpeg(data, *args, **kwargs)

    monkeypatch.setattr(decoding.simplejpeg, "decode_jpeg", counted)
    jpegs = _jpegs()
    for data in jpegs.values():
        try:
            decoding.row_image(data)
        except ValueError:
            pass
    by = {name for name, data in jpegs.items() if data in taken}
    # tried on a truncated one, which OpenCV then decodes; not on one without a frame header
    assert by == set(jpegs) - {"CMYK", "EXIF orientation 6", "no image data"}, by


def _segments(data: bytes) -> tuple[list[bytes], bytes]:
    """A JPEG's marker segments before its scan, and the rest (the scan on)."""
    i, out = 2, []
    while data[i + 1] != 0xDA:
        length = int.from_bytes(data[i + 2:i + 4], "big")
        out.append(data[i:i + 2 + length])
        i += 2 + length
    return out, data[i:]


def _exif_block(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()  # b"Exif\0\0" and the TIFF block
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def test_exif_is_read_as_opencv_reads_it_anywhere_before_the_scan_the_first_block_counting():
    import cv2
    import numpy as np

    from augpipe.decode import decode, row_image

    plain = _jpegs()["4:2:0"]
    segments, scan = _segments(plain)
    frame_at = next(k for k, s in enumerate(segments) if s[1] == 0xC0)
    after_frame = segments[:frame_at + 1] + [_exif_block(6)] + segments[frame_at + 1:]
    files = {"after the frame header": b"\xff\xd8" + b"".join(after_frame) + scan,
             "6 then 1": b"\xff\xd8" + _exif_block(6) + _exif_block(1) + b"".join(segments) + scan,
             "1 then 6": b"\xff\xd8" + _exif_block(1) + _exif_block(6) + b"".join(segments) + scan}
    for name, data in files.items():
        want = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
        assert np.array_equal(row_image(data), want), name
        source = decode(data, 10**8)
        assert np.array_equal(source.rgb, want) and source.oriented == (name != "1 then 6"), name
        assert want.shape[:2] == ((61, 45) if source.oriented else (45, 61)), name


def test_a_batch_decoded_into_one_array_is_checked_against_what_libjpeg_found():
    import numpy as np

    from augpipe.decode import jpegs_into, jpegs_size
    from augpipe.headers import jpeg_frame

    plain = _jpegs()["4:2:0"]
    assert jpeg_frame(plain[:2] + b"\xff\x01" + plain[2:])[:2] == (61, 45)  # TEM stands alone, no length
    assert jpegs_size([jpeg_frame(plain)] * 2) == (45, 61) and jpegs_into([plain], np.empty((1, 45, 61, 3), np.uint8))
    assert not jpegs_into([plain], np.empty((1, 60, 61, 3), np.uint8))  # a header read wrong: not the array's size


def test_many_jpegs_headers_read_together_are_each_ones_own():
    """`jpeg_frames` over images laid end to end gives each one's `jpeg_frame`, whichever comes
    first: the same encoder at other sizes, EXIF before or after the frame header, fill bytes, a
    standalone marker, other subsamplings, grey, CMYK, progressive, PNG, damaged and empty ones."""
    import random

    import cv2
    import numpy as np

    from augpipe.headers import jpeg_frame, jpeg_frames

    kinds = list(_jpegs().values())
    plain = _jpegs()["4:2:0"]
    segments, scan = _segments(plain)
    frame_at = next(k for k, s in enumerate(segments) if s[1] == 0xC0)
    rng = np.random.default_rng(0)
    same_encoder = [cv2.imencode(".jpg", rng.integers(0, 256, (h, w, 3), np.uint8))[1].tobytes()
                    for h, w in [(64, 64)] * 12 + [(64, 48), (300, 7), (1, 1), (65500, 2)]]
    odd = [b"\xff\xd8" + b"".join(segments[:frame_at + 1]) + _exif_block(6) + b"".join(segments[frame_at + 1:]) + scan,
           b"\xff\xd8" + _exif_block(3) + b"".join(segments) + scan,
           plain[:2] + b"\xff\x01" + plain[2:], plain[:2] + b"\xff" + plain[2:],
           cv2.imencode(".png", rng.integers(0, 256, (8, 8, 3), np.uint8))[1].tobytes(),
           same_encoder[0][:150], same_encoder[0][:400], b"", b"\xff\xd8", b"\xff\xd8\xff\xda"]
    second_frame = [s[:5] + (99).to_bytes(2, "big") * 2 + s[9:] if s[1] == 0xC0 else s for s in segments]
    odd.append(b"\xff\xd8" + b"".join(segments[:frame_at + 1] + second_frame[frame_at:]) + scan)  # the first counts
    everything = same_encoder + kinds + odd
    shuffle = random.Random(0).shuffle
    for trial in range(len(everything) + 10):
        images = list(everything)
        if trial < len(everything):  # each one first: the others are compared with its markers
            images.insert(0, images.pop(trial))
            images += same_encoder
        else:
            shuffle(images)
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in images])]).tolist()
        laid = np.frombuffer(b"".join(images), np.uint8)
        assert jpeg_frames(laid, offsets) == [jpeg_frame(b) for b in images], trial
    assert jpeg_frames(np.zeros(0, np.uint8), [0]) == []
    as_bytes = b"".join(same_encoder)
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in same_encoder])]).tolist()
    assert jpeg_frames(as_bytes, offsets) == jpeg_frames(memoryview(as_bytes), offsets) == list(map(jpeg_frame, same_encoder))
    comments = plain[:2] + b"\xff\xfe\x00\x02" * 100 + plain[2:]  # a header of 100 more segments: one by one
    assert jpeg_frames(np.frombuffer(comments * 10, np.uint8), list(range(0, 11 * len(comments), len(comments)))) == \
        [jpeg_frame(comments)] * 10


def test_over_opencvs_pixel_limit_a_jpeg_is_left_to_opencv_which_refuses_it_before_decoding(monkeypatch):
    import simplejpeg

    import augpipe.decode as decoding

    plain = _jpegs()["4:2:0"]
    segments, scan = _segments(plain)
    huge = [s[:5] + (40000).to_bytes(2, "big") * 2 + s[9:] if s[1] == 0xC0 else s for s in segments]
    data = b"\xff\xd8" + b"".join(huge) + scan
    assert decoding.jpeg_frame(data)[:2] == (40000, 40000)
    taken, decode_jpeg = [], simplejpeg.decode_jpeg
    monkeypatch.setattr(decoding.simplejpeg, "decode_jpeg", lambda *a, **k: taken.append(1) or decode_jpeg(*a, **k))
    for call in (lambda: decoding.row_image(data), lambda: decoding.row_images([data, data])):
        with pytest.raises(ValueError, match="image does not decode"):  # a reader's error, not OpenCV's
            call()
    assert decoding.jpegs_size([decoding.jpeg_frame(data)] * 2) is None and taken == []
