"""augpipe.lean_steps: Rotate's matrices and the Rotate and Affine image steps are
albumentations' own to the bit."""

import random

import numpy as np
import pytest

A = pytest.importorskip("albumentations")

from albumentations.augmentations.geometric import functional as fgeometric  # noqa: E402

from augpipe.lean_steps import rotation_matrix, warp_affine  # noqa: E402
from augpipe.recipe import compose_class  # noqa: E402


def _angles(rng) -> list[float]:
    special = [0.0, -0.0, 90.0, -90.0, 180.0, 270.0, 360.0, -360.0, 45.0, 1e-12, -1e-300, 359.9999999999, 720.5]
    return special + rng.uniform(-720, 720, 3000).tolist() + rng.uniform(-1, 1, 500).tolist()


def test_rotation_matrices_are_albumentations_own_to_the_bit():
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (2, 3), (60, 80), (319, 320), (4000, 3001)] + [tuple(rng.integers(1, 5000, 2)) for _ in range(20)]
    checked = 0
    for angle in _angles(rng):
        h, w = (int(v) for v in shapes[checked % len(shapes)])
        for shift in ((w / 2 - 0.5, h / 2 - 0.5), (w / 2, h / 2)):
            theirs = fgeometric.create_affine_transformation_matrix({"x": 0, "y": 0}, {"x": 0, "y": 0},
                                                                    {"x": 1, "y": 1}, angle, shift)
            ours = rotation_matrix(angle, shift)
            assert ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes(), (angle, shift)
            checked += 1
    assert checked > 7000


def _matrices(rng):
    rotate = fgeometric.create_affine_transformation_matrix({"x": 3, "y": -2}, {"x": 5, "y": 0}, {"x": 1.1, "y": 0.9},
                                                            17.0, (20.0, 15.0))
    near = np.eye(3)
    near[0, 2] = 5e-9  # within np.allclose of the identity: the image comes back as it is
    off = np.eye(3)
    off[0, 2] = 1e-7  # just outside
    nan = rotate.copy()
    nan[1, 1] = np.nan
    return [np.eye(3), near, off, rotate, nan] + [np.vstack([rng.normal(0, 1, (2, 3)) + np.eye(3)[:2], [0, 0, 1]])
                                                   for _ in range(6)]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_warps_are_albumentations_own(dtype):
    """Every image shape (those it covers and those it hands to albumentations), fill, border and
    interpolation, the identity and matrices near it: the same array as albumentations' warp."""
    import cv2

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, shape).astype(dtype) for shape in
              [(30, 40, 3), (31, 17, 4), (20, 20, 2), (25, 33, 1), (25, 33), (12, 9, 6)]]
    fills = [0, 0.0, 200, 7.5, (1, 2, 3, 4), [9, 8, 7, 6]]
    compared = covered = 0
    for image in images:
        for matrix in _matrices(rng):
            for fill in fills:
                channels = image.shape[2] if image.ndim == 3 else 1
                if isinstance(fill, (tuple, list)) and channels < len(fill):
                    fill = fill[:channels]
                for border in (cv2.BORDER_CONSTANT, cv2.BORDER_REFLECT_101, cv2.BORDER_REPLICATE):
                    for interpolation in (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC):
                        for out_shape in (image.shape[:2], (image.shape[0] + 5, image.shape[1] - 3)):
                            theirs = fgeometric.warp_affine(image, matrix, interpolation, fill, border, out_shape)
                            ours = warp_affine(image, matrix, interpolation, fill, border, out_shape)
                            assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
                            assert ours.tobytes() == theirs.tobytes()
                            assert (ours is image) == (theirs is image)
                            compared += 1
                            covered += image.ndim == 2 or 2 <= image.shape[2] <= 4
    assert compared == 6 * 11 * 6 * 3 * 3 * 2 and covered == 4 * 11 * 6 * 3 * 3 * 2


def _steps():
    import cv2

    return [A.Rotate(limit=(-40, 40), p=0.5), A.Rotate(limit=(-90, 90), border_mode=cv2.BORDER_REFLECT_101, p=0.5),
            A.Rotate(limit=(-30, 30), crop_border=True, p=0.3), A.Rotate(limit=(-20, 20), fill=17, p=0.3,
                                                                       interpolation=cv2.INTER_CUBIC),
            A.Affine(translate_percent=(-0.2, 0.2), scale=(0.7, 1.3), rotate=(-30, 30), shear=(-10, 10), p=0.5),
            A.Affine(scale=(0.5, 1.5), fit_output=True, p=0.3), A.ShiftScaleRotate(p=0.3),
            A.SafeRotate(limit=(-20, 20), p=0.3),
            A.OneOf([A.Rotate(limit=(-10, 10)), A.Affine(rotate=(-5, 5))], p=0.5),
            A.Sequential([A.HorizontalFlip(p=0.5), A.Rotate(limit=(-15, 15), p=0.7)], p=0.8),
            A.RandomBrightnessContrast(p=0.5)]


def _same(a, b) -> bool:
    """Equal to the bit: arrays by their bytes, containers element by element."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and (a == b or (a != a and b != b))


@pytest.mark.parametrize("shape", [(60, 80, 3), (33, 47, 3), (40, 40, 4), (25, 30, 1)], ids=str)
def test_our_compose_rotates_as_albumentations_own_to_the_bit(shape):
    """Our Compose (every step it covers pointed at augpipe.lean_steps) against albumentations' own
    Compose of the same steps: the same image, mask and masks, and the same record of every
    parameter of what fired (the matrices to the bit), on 300 seeds."""
    import cv2

    options = {"p": 1.0, "save_applied_params": True, "mask_interpolation": cv2.INTER_NEAREST}
    ours, theirs = compose_class()(_steps(), **options), A.Compose(_steps(), **options)
    leaned = [t for t in ours.transforms if isinstance(t, (A.Rotate, A.Affine))]
    assert all(getattr(t._key2func[k], "func", None) is not None for t in leaned for k in ("image", "mask", "masks"))
    assert all("get_params_dependent_on_data" in vars(t) for t in leaned if type(t) is A.Rotate)
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, shape, dtype=np.uint8)
    mask = rng.integers(0, 4, shape[:2], dtype=np.uint8)
    masks = [rng.integers(0, 2, shape[:2], dtype=np.uint8) for _ in range(3)]
    rotated = 0
    for seed in range(300):
        results = []
        for compose in (ours, theirs):
            compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
            results.append(compose(image=image.copy(), mask=mask.copy(), masks=[m.copy() for m in masks]))
        a, b = results
        for key in ("image", "mask", "masks"):
            assert _same(np.asarray(a[key]), np.asarray(b[key])), (seed, key)
        assert _same(a["applied_transforms"], b["applied_transforms"]), seed
        rotated += any(name == "Rotate" for name, _ in b["applied_transforms"])
    assert rotated > 100
