"""The resize the dry run proposes (augpipe/dryrun.py) for rows that would differ in size: the
median image's scale and aspect in multiples of 32, never the smallest image's size."""

from __future__ import annotations

import math

import cv2
import numpy as np

from augpipe.dryrun import check_recipe, suggest_size
from augpipe.options import ExpandOptions
from augpipe.pipeline import expand
from augpipe.recipe import parse_recipe
from augpipe.targets import kind_for

# one tiny image among photos of about 185×129 (the issue's: the smallest's 58×36 was proposed)
MIXED = [(58, 36)] + [(185, 129)] * 4 + [(170, 120), (200, 140), (400, 280), (640, 448)]


def shrunk_by_half(size, sizes) -> int:
    """How many of `sizes` a resize to `size` shrinks to half or less on some side."""
    return sum(min(size[0] / w, size[1] / h) <= 0.5 for w, h in sizes)


def test_mixed_sizes_get_the_median_scale_and_aspect_in_multiples_of_32():
    width, height = suggest_size(MIXED)
    # the median image is 185×129: 192 and 128 are the nearest multiples of 32
    assert (width, height) == (192, 128)
    assert width % 32 == 0 and height % 32 == 0
    assert abs(math.log((width / height) / (185 / 129))) < math.log(1.1)  # the aspect kept
    assert shrunk_by_half((width, height), MIXED) <= 2  # only the two largest of nine
    assert shrunk_by_half((58, 36), MIXED) == 8  # what the smallest image's size did


def test_a_square_dataset_gets_a_square_size():
    sizes = [(320, 240)] + [(360, 360)] * 5 + [(500, 500), (300, 300)]
    assert suggest_size(sizes) == (352, 352)  # 360 to the nearest multiple of 32, not 320×240
    assert suggest_size([(10, 10), (12, 12), (20, 20)]) == (32, 32)  # never below one multiple


def test_the_warning_proposes_it_for_detection_too():
    recipe = parse_recipe("transforms: [HorizontalFlip]", "my.yaml")
    sizes = [(320, 240)] + [(360, 360)] * 5
    (warning,) = check_recipe(recipe, sizes, kind_for("detection")).warnings
    assert "the images differ in size" in warning
    assert "add output: {resize: {height: 352, width: 352}} (the median image's scale and aspect" in warning


def test_expand_proposes_the_median_of_its_images(tmp_path):
    source = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(MIXED * 2):
        folder = source / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:02d}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    result = expand(source, "flips", tmp_path / "out", ExpandOptions(workers=1, progress=False))
    (warning,) = [w for w in result["warnings"] if "differ in size" in w]
    assert "resize: {height: 128, width: 192}" in warning
