"""Decoding (augpipe/decode.py): a broken image is a skip, and no decoder's warning reaches stderr."""

from __future__ import annotations

import subprocess

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
