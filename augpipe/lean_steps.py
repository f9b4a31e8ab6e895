"""albumentations' own warps with thinner Python around them.

A rotation's matrices and its warp cost more in their Python layers than the warp itself at
64 px: the matrices made from lists each call, an `np.allclose` against the identity, a wrapper
built for each call to handle more than four channels. `lean_steps` points a Rotate's
parameters, and the image and mask functions of every Rotate and Affine (ShiftScaleRotate and
SafeRotate are Affines), at the functions here: the same numpy and OpenCV calls on the same
arrays, so the matrices (written to each row's lineage), the pixels and the masks are the same
to the bit (tests/test_lean_steps.py compares them with albumentations' on many seeds, sizes
and options). What they do not cover takes albumentations' own path.
"""

from __future__ import annotations

import functools

import numpy as np


def lean_steps(transforms) -> None:
    """Point the steps among `transforms` (nested ones too) that this module covers at it."""
    from augpipe.recipe import import_albumentations

    A = import_albumentations()
    from albumentations.core.transforms_interface import DualTransform

    for t in transforms:
        if isinstance(t, A.BaseCompose):
            lean_steps(t.transforms)
            continue
        if not isinstance(t, A.BasicTransform):
            continue
        functions = getattr(t, "_key2func", {})
        rotate = type(t).apply is A.Rotate.apply
        if "image" in functions and type(t).apply in (A.Affine.apply, A.Rotate.apply):
            functions["image"] = functools.partial(_step, t, rotate, False)
        if "mask" in functions and type(t).apply_to_mask in (A.Affine.apply_to_mask, A.Rotate.apply_to_mask):
            functions["mask"] = functools.partial(_step, t, type(t).apply_to_mask is A.Rotate.apply_to_mask, True)
            if "masks" in functions and type(t).apply_to_masks is DualTransform.apply_to_masks:
                functions["masks"] = functools.partial(_each_mask, functions["mask"])
        if type(t).get_params_dependent_on_data is A.Rotate.get_params_dependent_on_data:
            t.get_params_dependent_on_data = functools.partial(_rotate_params, t)


def _step(t, rotate: bool, mask: bool, img: np.ndarray, /, **params) -> np.ndarray:
    """Rotate's `apply` or `apply_to_mask` (the warp, then its crop), or Affine's (to its own
    output shape)."""
    out = warp_affine(img, params["matrix"], t.mask_interpolation if mask else t.interpolation,
                      t.fill_mask if mask else t.fill, t.border_mode,
                      params["shape"][:2] if rotate else params["output_shape"])
    if rotate and t.crop_border:
        from albumentations.augmentations.crops import functional as fcrops

        return fcrops.crop(out, params["x_min"], params["y_min"], params["x_max"], params["y_max"])
    return out


def _each_mask(step, masks: np.ndarray, /, **params) -> np.ndarray:
    """DualTransform.apply_to_masks: each mask by the step's mask function, stacked."""
    return np.stack([step(mask, **params) for mask in masks])


_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def near_identity(matrix: np.ndarray) -> bool:
    """albumentations' `is_identity_matrix` of a 3 × 3: np.allclose(matrix, np.eye(3)), that is
    |a - b| <= 1e-8 + 1e-5 |b| element by element (never for NaN), in Python floats."""
    return all(abs(a - b) <= 1e-08 + 1e-05 * abs(b) for a, b in zip(matrix.ravel().tolist(), _IDENTITY))


def warp_affine(img: np.ndarray, matrix: np.ndarray, interpolation: int, fill, border_mode: int, output_shape):
    """albumentations' `warp_affine` for an H × W or H × W × 2–4 image, a 3 × 3 float64 matrix
    and a whole output shape: the identity gives the image back, anything else is OpenCV's
    warpAffine with the same arguments. Anything else takes albumentations' own function."""
    from albumentations.augmentations.geometric import functional as fgeometric

    height, width = output_shape[:2]
    channels = 1 if img.ndim == 2 else img.shape[2] if img.ndim == 3 else 0
    if not (img.ndim == 2 or 2 <= channels <= 4) or not (
            matrix.shape == (3, 3) and matrix.dtype == np.float64 and type(height) is int and type(width) is int):
        return fgeometric.warp_affine(img, matrix, interpolation, fill, border_mode, output_shape)
    if near_identity(matrix):
        return img
    import cv2

    value = [fill] * channels if isinstance(fill, float) else fill  # extend_value
    return cv2.warpAffine(img, matrix[:2, :], (width, height), flags=interpolation, borderMode=border_mode,
                          borderValue=value)


def _rotate_params(t, params: dict, data: dict) -> dict:
    """Rotate.get_params_dependent_on_data: the same draw, the same matrices."""
    if t.crop_border:
        return type(t).get_params_dependent_on_data(t, params, data)
    angle = t.py_random.uniform(*t.limit)
    height, width = params["shape"][:2]
    return {"x_min": -1, "x_max": -1, "y_min": -1, "y_max": -1,
            "matrix": rotation_matrix(angle, (width / 2 - 0.5, height / 2 - 0.5)),  # fgeometric.center
            "bbox_matrix": rotation_matrix(angle, (width / 2, height / 2))}  # fgeometric.center_bbox


def rotation_matrix(angle: float, shift: tuple[float, float]) -> np.ndarray:
    """albumentations' `create_affine_transformation_matrix` as Rotate calls it (no translation
    or shear, scale 1): the same arrays in the same types, multiplied in the same order. The
    product's first three factors depend on the shift alone and are made once a shift."""
    rad = np.deg2rad(angle % 360)
    cos, sin = np.cos(rad), np.sin(rad)
    rotate = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]])
    first, scale, to_top_left = _rotation_factors(shift)
    m = first @ rotate @ scale @ to_top_left
    m[2] = [0, 0, 1]
    return m


@functools.lru_cache(maxsize=32)
def _rotation_factors(shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shift back to the centre @ translation @ shear, scale, shift to the top left), built as
    `create_affine_transformation_matrix` builds them (integer arrays where it makes integer
    arrays); read-only, shared."""
    shear = np.deg2rad(0)
    shift_center = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]])
    translate = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    shear_m = np.array([[1, np.tan(shear), 0], [np.tan(shear), 1, 0], [0, 0, 1]])
    scale = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    to_top_left = np.array([[1, 0, -shift[0]], [0, 1, -shift[1]], [0, 0, 1]])
    first = shift_center @ translate @ shear_m
    for a in (first, scale, to_top_left):
        a.flags.writeable = False
    return first, scale, to_top_left
