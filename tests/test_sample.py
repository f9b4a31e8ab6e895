"""The per-sample function: seeding, lineage, decoding and conversions."""

from __future__ import annotations

import io
import json
import shutil

import cv2
import numpy as np
import pytest
import pyarrow.parquet as pq
from PIL import Image

from augpipe import ExpandOptions, expand
from augpipe import decode as codec
from augpipe.recipe import parse_recipe
from augpipe.sample import SourceItem, apply_recipe, augment_sample, sample_seed
from conftest import rows, write_image

FLIPS = parse_recipe("transforms: [{HorizontalFlip: {p: 0.5}}, {VerticalFlip: {p: 0.5}}]", "flips.yaml")


def jpeg(size=(24, 32), seed=0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_two_independent_half_probability_transforms_fire_together_a_quarter_of_the_time():
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    both = h = v = 0
    n = 2000
    for i in range(n):
        _, _, applied = apply_recipe(image, FLIPS, sample_seed(0, f"img{i}.jpg", 1))
        names = {name for name, _ in json.loads(applied)}
        h += "HorizontalFlip" in names
        v += "VerticalFlip" in names
        both += names == {"HorizontalFlip", "VerticalFlip"}
    assert 0.45 < h / n < 0.55 and 0.45 < v / n < 0.55
    assert 0.22 < both / n < 0.28  # albumentations' own Compose(seed=...) gives about 0.5


def test_seed_depends_on_run_seed_path_and_copy_only():
    assert sample_seed(7, "a/b.jpg", 1) == sample_seed(7, "a/b.jpg", 1)
    seeds = {sample_seed(7, "a/b.jpg", 1), sample_seed(8, "a/b.jpg", 1),
             sample_seed(7, "a/c.jpg", 1), sample_seed(7, "a/b.jpg", 2)}
    assert len(seeds) == 4
    assert all(0 <= s < 2**63 for s in seeds)


def test_same_arguments_give_the_same_rows_in_any_order():
    data = [jpeg(seed=i) for i in range(5)]
    tasks = [SourceItem(f"c/{i}.jpg", 0, (0, 1, 2)) for i in range(5)]
    forward = [augment_sample(d, t, FLIPS, 3, 10**8).rows for d, t in zip(data, tasks)]
    backward = [augment_sample(d, t, FLIPS, 3, 10**8).rows for d, t in reversed(list(zip(data, tasks)))]
    assert forward == list(reversed(backward))


def test_rows_carry_lineage_that_reproduces_the_image():
    data = jpeg()
    rows = augment_sample(data, SourceItem("c/x.jpg", 4, (0, 1, 2, 3)), FLIPS, 0, 10**8).rows
    assert [r["copy"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["image"]["bytes"] == data  # original kept byte for byte: jpeg in, jpeg out
    assert rows[0]["transforms"] == "[]"
    for row in rows[1:]:
        applied = json.loads(row["transforms"])
        assert all(name in ("HorizontalFlip", "VerticalFlip") and isinstance(p, dict) for name, p in applied)
        again, _, _ = apply_recipe(codec.decode(data, 10**8).rgb, FLIPS, row["seed"])
        assert np.array_equal(codec.decode(codec.encode(again, "jpeg", 95), 10**8).rgb,
                              codec.decode(row["image"]["bytes"], 10**8).rgb)
    assert {r["source"] for r in rows} == {"c/x.jpg"} and {r["label"] for r in rows} == {4}
    assert rows[0]["width"] == 32 and rows[0]["height"] == 24


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_grayscale_sixteen_bit_and_alpha_become_8_bit_rgb():
    cases = {
        "grayscale": png_bytes(Image.new("L", (8, 6), 100)),
        "16-bit": cv2.imencode(".png", np.full((6, 8), 40000, np.uint16))[1].tobytes(),
        "alpha dropped": png_bytes(Image.new("RGBA", (8, 6), (255, 0, 0, 128))),
    }
    for note, data in cases.items():
        decoded = codec.decode(data, 10**8)
        assert decoded.rgb.shape == (6, 8, 3) and decoded.rgb.dtype == np.uint8
        assert note in decoded.conversion
    assert codec.decode(cases["16-bit"], 10**8).rgb[0, 0, 0] == 40000 >> 8
    assert tuple(codec.decode(cases["alpha dropped"], 10**8).rgb[0, 0]) == (255, 0, 0)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (20, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° to display
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes())
    decoded = codec.decode(buf.getvalue(), 10**8)
    assert decoded.rgb.shape == (20, 10, 3) and decoded.oriented
    # and the stored original is re-encoded upright, not the raw bytes with a rotation flag
    row = augment_sample(buf.getvalue(), SourceItem("x.jpg", None, (0,)), FLIPS, 0, 10**8).rows[0]
    assert row["image"]["bytes"] != buf.getvalue() and (row["width"], row["height"]) == (10, 20)


def test_resize_and_output_format_apply_to_every_copy():
    recipe = parse_recipe("output: {format: png, resize: {height: 16, width: 12}}\ntransforms: [HorizontalFlip]",
                          "r.yaml")
    rows = augment_sample(jpeg(), SourceItem("c/x.jpg", 0, (0, 1)), recipe, 0, 10**8).rows
    for row in rows:
        assert row["image"]["bytes"].startswith(b"\x89PNG") and (row["width"], row["height"]) == (12, 16)
        assert row["image"]["path"].endswith(".png")


def test_fast_header_reader_agrees_with_pil():
    from augpipe.headers import _pil, read_header

    def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        image.save(buf, fmt, **kw)
        return buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 8
    samples = [
        encoded(Image.new("RGB", (33, 17)), "JPEG"),
        encoded(Image.new("L", (9, 40)), "JPEG"),
        encoded(Image.new("CMYK", (12, 11)), "JPEG"),
        encoded(Image.new("RGB", (20, 10)), "JPEG", exif=exif.tobytes()),
        encoded(Image.new("RGB", (20, 10)), "JPEG", progressive=True),
        encoded(Image.new("RGBA", (7, 5)), "PNG"),
        encoded(Image.new("P", (7, 5)), "PNG", transparency=0),
        encoded(Image.new("P", (7, 5)), "PNG"),
        encoded(Image.new("L", (7, 5)), "PNG"),
        cv2.imencode(".png", np.zeros((6, 8, 3), np.uint16))[1].tobytes(),
    ]
    for data in samples:
        fast, slow = read_header(data), _pil(data)
        assert (fast.format, fast.width, fast.height, fast.alpha, fast.orientation) == \
               (slow.format, slow.width, slow.height, slow.alpha, slow.orientation)
        assert fast.mode == slow.mode or (fast.mode, slow.mode) == ("RGB", "RGB;16")  # PIL's 16-bit RGB PNG


def test_large_array_parameters_are_recorded_by_shape_and_checksum():
    recipe = parse_recipe("transforms: [{ElasticTransform: {alpha: 20, sigma: 4, p: 1.0}}]", "e.yaml")
    image = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    _, _, applied = apply_recipe(image, recipe, 5)
    params = json.loads(applied)[0][1]
    assert params["map_x"]["array"] == [48, 40] and len(params["map_x"]["sha256"]) == 64
    assert len(applied) < 1000
    assert apply_recipe(image, recipe, 5)[2] == applied  # the seed reproduces it


def test_jpeg_fast_path_decodes_exactly_as_opencv_does_with_a_conversion():
    for size in ((31, 17), (64, 64)):
        data = jpeg(size)
        expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        decoded = codec.decode(data, 10**8)
        assert decoded.conversion is None and np.array_equal(decoded.rgb, expected)


def test_lineage_json_is_compact_and_falls_back_for_what_orjson_refuses():
    import json

    from augpipe.sample import lineage_json

    applied = [("Rotate", {"matrix": np.eye(2), "fill": np.float32(0.5), "shape": (4, 4, 3)})]
    assert lineage_json(applied) == '[["Rotate",{"matrix":[[1.0,0.0],[0.0,1.0]],"fill":0.5,"shape":[4,4,3]}]]'
    huge = [("T", {"n": 2**70})]
    assert json.loads(lineage_json(huge)) == [["T", {"n": 2**70}]]


QUIET = dict(progress=False, workers=1)


def test_a_copy_that_fails_keeps_its_original_and_is_listed(folder, tmp_path, monkeypatch):
    import augpipe.sample as sample

    real = sample.augment_copy
    unlucky = "cat/cat_003.jpg"

    def flaky(rgb, recipe, seed, kind=None, target=None, donors=()):
        if seed == sample.sample_seed(0, unlucky, 1):
            raise ValueError("this one image defeats the transform")
        return real(rgb, recipe, seed, kind, target, donors)

    monkeypatch.setattr(sample, "augment_copy", flaky)
    m = expand(folder, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    rows = pq.read_table(tmp_path / "out", columns=["source", "copy"]).to_pylist()
    assert sorted(r["copy"] for r in rows if r["source"] == unlucky) == [0, 2]  # the original kept
    assert m["failed_copies"] == [{"path": unlucky, "copy": 1,
                                   "reason": "augmentation failed: ValueError: this one image defeats the transform"}]


def test_a_mask_of_another_size_and_a_lying_coco_size_are_recorded_skips(scenes, tmp_path):

    data = tmp_path / "masks"
    shutil.copytree(scenes["masks"], data)
    Image.fromarray(np.zeros((10, 10), np.uint8), "L").save(data / "masks" / "scene_003.png")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert {"path": "images/scene_003.png", "reason": "mask masks/scene_003.png is 10×10, the image 80×64"} \
        in m["skipped"]
    coco = tmp_path / "coco"
    shutil.copytree(scenes["coco"], coco)
    small = cv2.imread(str(coco / "default" / "scene_004.png"))[:20, :20]
    cv2.imwrite(str(coco / "default" / "scene_004.png"), small)  # the JSON still says 80×64
    m = expand(coco, "flips", tmp_path / "out2", ExpandOptions(**QUIET))
    reasons = {s["path"]: s["reason"] for s in m["skipped"]}
    assert "outside the 20×20 image" in reasons["default/scene_004.png"]


def test_originals_are_the_source_files_bytes_whatever_the_recipes_format(tmp_path):
    from conftest import make_scenes

    # classification: JPEG, PNG, WebP and BMP sources under the detection recipe (PNG output)
    folder = tmp_path / "folder"
    for i, fmt in enumerate((".jpg", ".png", ".webp", ".bmp") * 3):
        write_image(folder / ("cat", "dog")[i % 2] / f"x{i}{fmt}", seed=i, fmt=fmt)
    grey = folder / "cat/grey.png"
    grey.write_bytes(cv2.imencode(".png", np.full((20, 24), 90, np.uint8))[1].tobytes())
    # detection: COCO scenes (PNG) with one of them a JPEG
    scenes = make_scenes(tmp_path / "coco", n=6)
    names = json.loads((scenes / "annotations/instances_default.json").read_text())
    png = scenes / "default/scene_000.png"
    cv2.imwrite(str(png.with_suffix(".jpg")), cv2.imread(str(png)))
    png.unlink()
    names["images"][0]["file_name"] = "scene_000.jpg"
    (scenes / "annotations/instances_default.json").write_text(json.dumps(names))
    for source in (folder, scenes):
        for copies in (0, 1):
            out = tmp_path / f"{source.name}-{copies}"
            expand(source, "detection", out, ExpandOptions(copies=copies, val_fraction=0.4, **QUIET))
            table = rows(out)
            assert {r["split"] for r in table} == {"train", "validation"}
            for r in table:
                data = r["image"]["bytes"]
                if r["copy"] > 0 or r["source"] == "cat/grey.png":  # augmented, or converted to RGB
                    assert data.startswith(b"\x89PNG") and r["image"]["path"].endswith(".png")
                    assert r["source"] != "cat/grey.png" or data != grey.read_bytes()
                else:
                    assert data == (source / r["source"]).read_bytes() and r["image"]["path"] == r["source"]


def test_a_copys_streams_are_those_of_default_rng_and_random_with_its_seed():
    import random

    from augpipe.sample import seeded

    for seed in (0, 1, 12345, sample_seed(0, "cat/a.jpg", 1), 2**63 - 1):
        rng, py_rng = seeded(seed)
        ref = np.random.default_rng(seed)
        assert rng.bit_generator.state == ref.bit_generator.state
        assert rng.random(8).tolist() == ref.random(8).tolist()
        assert py_rng.random() == random.Random(seed).random()


def test_a_header_pil_cannot_identify_is_a_skip_under_ultralytics_patch_of_image_open(monkeypatch):
    """ultralytics, once imported, patches PIL's Image.open to load a HEIF plugin on an image PIL
    cannot identify, and raises ModuleNotFoundError where the plugin is not installed (as CI's
    clients environment has it): garbage is still a skip, not that error."""
    from PIL import Image

    from augpipe.errors import SkipInput
    from augpipe.headers import read_header

    opened = Image.open

    def patched(fp, *args, **kwargs):
        try:
            return opened(fp, *args, **kwargs)
        except Image.UnidentifiedImageError:
            raise ModuleNotFoundError("No module named 'pi_heif'") from None

    monkeypatch.setattr(Image, "open", patched)
    with pytest.raises(SkipInput, match="not a readable image"):
        read_header(b"\xff\xd8 not a jpeg")
