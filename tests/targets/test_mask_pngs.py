"""Mask PNGs (augpipe/targets/masks.py; named apart from tests/formats/test_masks.py): what a mask's values may be."""

from __future__ import annotations

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
