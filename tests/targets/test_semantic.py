"""Semantic segmentation's target (augpipe/targets/semantic.py): class indices kept through the
transforms, and values past the named classes refused."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from augpipe import ExpandOptions, expand
from augpipe.recipe import parse_recipe
from augpipe.sample import SourceItem, augment_sample
from augpipe.targets import kind_for
from conftest import H, W, png

QUIET = dict(progress=False, workers=1)


def test_masks_keep_their_indices_through_rotation_and_resize():
    mask = np.zeros((H, W), np.uint8)
    mask[10:30, 10:40], mask[35:55, 50:90], mask[0:5, 0:5] = 3, 255, 7
    im = Image.fromarray(mask, "L").convert("P")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    from augpipe.formats.base import MaskRef

    kind = kind_for("segmentation")
    r = parse_recipe("copies: 3\noutput: {format: png, resize: {height: 45, width: 75}}\n"
                     "transforms: [{Rotate: {limit: [-30, 30], p: 1}}, {RandomScale: {scale_limit: 0.2, p: 1}}]\n")
    result = augment_sample(png(np.zeros((H, W, 3), np.uint8)), SourceItem("a.png", None, (0, 1, 2, 3),
                            target=MaskRef("a_mask.png")), r, 0, 10**8, kind=kind, extra=buf.getvalue())
    for row in result.rows:
        out = np.asarray(Image.open(io.BytesIO(row["annotation"]["bytes"])))
        assert out.shape == (45, 75)
        assert set(np.unique(out).tolist()) <= {0, 3, 7, 255}
        assert {3, 255} <= set(np.unique(out).tolist())


def test_mask_values_past_the_named_classes_are_a_recorded_skip(scenes, tmp_path):
    import shutil

    data = tmp_path / "masks"
    shutil.copytree(scenes["masks"], data)
    mask = np.zeros((64, 80), np.uint8)
    mask[10:20, 10:20], mask[30:40, 30:40] = 200, 255  # 255: "no class", allowed
    Image.fromarray(mask, "L").save(data / "masks" / "scene_001.png")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert {"path": "images/scene_001.png",
            "reason": "mask masks/scene_001.png has values [200] past the 3 named classes (0–2, and 255 for none)"} \
        in m["skipped"]


# ---------------------------------------------------------------- audit (augpipe inspect)

def mask_png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask, "L").save(buf, "PNG")
    return buf.getvalue()


def test_audit_finds_mask_values_past_the_classes_and_a_mask_of_another_size():
    from augpipe.formats.base import MaskRef, SourceFile

    kind = kind_for("segmentation")
    mask = np.zeros((40, 60), np.uint8)
    mask[0:10, 0:10], mask[10:20, 0:10], mask[20:22, 0:3], mask[30:, :] = 1, 255, 7, 2  # 7: no class
    src = SourceFile("a.jpg", None, None, 1, 0, MaskRef("a.png"))
    found = kind.audit(src, mask_png(mask), (60, 40), ["background", "road", "car"])
    assert [(c, w) for c, w, _ in found.problems] == [("mask_values", "a.png")]
    assert "values [7] (6 pixels)" in found.problems[0][2]
    assert found.facts["mask_pixels"] == {"background": 60 * 40 - 100 - 100 - 6 - 600, "road": 100, "car": 600,
                                          "7": 6, "255": 100}
    assert found.facts["classes"] == {"road": 1, "car": 1, "7": 1}
    other = kind.audit(src, mask_png(mask), (50, 40), ["background", "road", "car"])
    assert ("annotation_unreadable", "a.png") in [(c, w) for c, w, _ in other.problems]
    assert [c for c, _, _ in kind.audit(src, b"not a png", (60, 40), ["background"]).problems] == \
        ["annotation_unreadable"]
    clean = np.where(mask == 7, 0, mask).astype(np.uint8)
    assert kind.audit(src, mask_png(clean), (60, 40), ["background", "road", "car"]).problems == []
    assert kind.audit(src, mask_png(clean.T.copy()), (60, 40), ["background", "road", "car"]).problems == []  # EXIF
