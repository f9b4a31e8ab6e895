"""Image health: what the pixels, sizes and duplicates of a dataset say (issue 18, item 3).

`measure` reads one decoded image into an `ImageStats` (a few ms: the figures come from a copy whose
longest side is at most WORK_SIDE); `judge` compares them across the dataset and answers with
`Problem`s; `facts` gives the report its figures.

How each check decides (the thresholds are below, each with its reason):
- blurry: sharpness = how abruptly the edges change in the direction where they change least
  (along x, y and both diagonals: |second derivative| over |first| on the EDGE_SHARE of the pixels
  where the first is strongest, or those that change at all where fewer do; the least of the four,
  so that motion blur, which leaves the edges along its direction sharp, counts; neither contrast
  nor large smooth areas count), relative to the dataset: a robust z-score on its log below
  -BLUR_Z, and at least BLUR_FACTOR times under the median. A dataset of soft pictures flags none
  of them for being soft; a picture without any edge (a smooth gradient) has sharpness 0 and is
  blurry.
- dark / bright: on perceived brightness: dark when even the brightest 1% of the pixels stay below
  DARK_P99, bright when even the darkest 1% stay above BRIGHT_P01; a night photo with a lit window
  (1% of the picture or more), or a snow scene with a tree, is neither. Where more than MOST of the
  dataset is dark by that rule (night scenes whose lights cover under 1%), a picture is dark only
  if it is also dark relative to the dataset: its brightest 1% EXPOSURE_FACTOR times and
  EXPOSURE_Z robust sigmas under the dataset's median (on a log scale); the same for bright, on the
  darkest 1%'s distance to white. A small object (under 1% of the picture) on white is bright:
  its darkest 1% is white.
- low_information: absolute: detail (the standard deviation of a 64×64 copy, which averages sensor
  noise away, in its most varied colour channel: a brown-to-blue gradient is near-constant in
  grey) under LOW_DETAIL levels. An object on a flat white background is not near-constant, as it
  would be by grey-level entropy; a picture so dark (or so washed out) that its detail fits in a
  few levels is, besides dark (or bright).
- odd_size / odd_aspect: robust z-scores on log(sqrt(area)) and log(width/height) beyond ODD_Z, a
  factor of ODD_SIZE_FACTOR / ODD_ASPECT_FACTOR from the median, and rare: at most max(2, RARE of
  the images) within 10% of its value (a quarter of portraits among landscapes is not odd).
- grayscale: every channel equal (within JPEG's rounding); reported only where at least
  COLOUR_MAJORITY of the images are colour; low-information pictures (all black, all white) are
  neither counted nor reported.
- exif_rotated: an EXIF orientation tag other than 1 (the pixels are turned before use; other tools
  may not turn them).
- exact duplicates: the same decoded pixels (also across formats). Within a split, or where a split
  is not placed yet (expand keeps identical files together; same pixels in different files may
  land apart, which the detail says): exact_duplicate; across splits: exact_leak.
- near duplicates: a 64-bit DCT perceptual hash (pHash) within NEAR_BITS, confirmed by the 8×8
  colour thumbnails, each less its mean level (a brightened copy is the same picture, a tinted one
  not): all but NEAR_CELLS of the 64 cells within NEAR_THUMB levels in every channel, those within
  twice that (a resized, re-encoded, brightened or 3%-cropped copy differs by a few levels
  throughout; an orange and a red circle, or two triangles of different sizes, by much more where
  they differ), among images that are not low-information (near-constant pictures all hash alike).
  Two pictures that both hold an object on a plain background compare the hash and thumbnail of that
  object's box, and the boxes must be at the same place and of the same size (edges within NEAR_BOX
  of the picture): two different objects on white then differ in shape, colour, place or size, where
  a hash of the whole pictures sees two blobs on much the same white. Other pairs compare whole
  pictures. The pairs are grouped (what looks like what looks like a picture is in its group).
  Within a split (or not placed yet): near_duplicate; across: near_leak.
- duplicate and leak groups: one Problem a group, under its first file (by path), `related` the
  others: a `kind`_duplicate for each split holding two or more of the group (files not placed yet
  count with every split) and one `kind`_leak naming every split where the group spans several.

`facts(stats, problems=None)` keys: images (count), sizes ([[width, height, count], ...], most
common first), long_sides (a histogram of the longest side in pixels: {"edges": [...], "counts":
[...]}), counts ({check: images flagged, every file of a group counted} for every check of
JUDGED), medians ({width, height, sharpness, brightness, detail}), grayscale and exif_rotated
(images that are, flagged or not), thresholds ({name: value}).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import cv2
import numpy as np

from augpipe.headers import read_header
from augpipe.health.base import Problem

WORK_SIDE = 384  # the figures are measured on a copy no larger than this on its longest side
BLUR_Z, BLUR_FACTOR = 3.0, 3.0  # a resize by 0.6 halves sharpness: that is resampling, not blur
DARK_P99, BRIGHT_P01 = 0.25, 0.75  # of perceived brightness, 0..1: the darkest and the brightest quarter
LOW_DETAIL = 3.0  # levels of 255
ODD_Z, ODD_SIZE_FACTOR, ODD_ASPECT_FACTOR, RARE = 4.0, 2.0, 1.5, 0.02
COLOUR_MAJORITY = 0.8
GREY_SPREAD = 3  # channel differences up to this many levels are JPEG's rounding
NEAR_BITS, NEAR_THUMB = 8, 20.0  # of 64 bits; levels between two 8×8 thumbnails' cells: see _thumbs_alike
NEAR_CELLS = 5  # cells of 64 allowed over NEAR_THUMB: a noisy 32 px picture re-encoded at JPEG quality 60 has 5
NEAR_BOX = 0.04  # object boxes' edges at most this share apart: a 3% crop moves them 1.5%, the 64×64 grid 1.6%
EDGE_SHARE = 0.01  # 2% lets a soft pattern (stripes) outweigh a picture's few edges in one direction
EDGE_LEVELS = 1.0  # a direction whose strongest edges change by less a pixel has none
MOST = 0.5  # dark (bright) is also relative where more than this share of the dataset is dark (bright)
EXPOSURE_Z, EXPOSURE_FACTOR = 3.0, 2.0  # relative: robust sigmas and factor under the median, on a log scale
FLAT_SPREAD, FLAT_BORDER = 6, 16  # levels: a plain border varies less; content differs from it by more
JUDGED = ("blurry", "dark", "bright", "low_information", "odd_size", "odd_aspect", "grayscale", "exif_rotated",
          "exact_duplicate", "near_duplicate", "exact_leak", "near_leak")  # the checks of CHECKS judge answers
_BLOCK_BYTES = 1 << 25  # the pairwise Hamming distances are computed a block of rows at a time
_PAIRS = 1 << 15  # and the thumbnails of so many pairs at a time


@dataclass(frozen=True)
class ImageStats:
    path: str
    split: str | None
    width: int
    height: int
    sha256: str  # of the file's bytes
    pixels: str  # a hash of the decoded pixels and their shape: the same picture in any format
    grayscale: bool
    exif_rotated: bool
    brightness_p01: float  # perceived brightness (0..1) of the darkest 1%, the median, the brightest 1%
    brightness: float
    brightness_p99: float
    sharpness: float  # of the edges in the direction where they are softest, on the working copy: see _sharpness
    detail: float  # std of a 64×64 copy, in its most varied channel
    phash: str  # 16 hex digits
    thumb: str  # 8×8 RGB thumbnail, 384 hex digits
    box: tuple[float, float, float, float] | None  # the object on a plain background: top, bottom, left, right, 0..1
    box_phash: str  # phash and thumb of that box; "" without one
    box_thumb: str


def measure(path: str, split: str | None, data: bytes, rgb: np.ndarray) -> ImageStats:
    """One image's figures: `data` is the file's bytes, `rgb` its pixels (H×W×3 uint8, EXIF
    orientation applied)."""
    height, width = rgb.shape[:2]
    small = _working_copy(rgb)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    p01, p50, p99 = _brightness(small)
    orientation = read_header(data).orientation
    return ImageStats(
        path=path, split=split, width=width, height=height,
        sha256=hashlib.sha256(data).hexdigest(), pixels=_pixel_hash(rgb),
        grayscale=_grayscale(small), exif_rotated=orientation not in (None, 1),
        brightness_p01=p01, brightness=p50, brightness_p99=p99,
        sharpness=_sharpness(grey), detail=_detail(small), phash=_phash(grey), thumb=_thumb(small),
        **_object_box(small, grey),
    )


def _working_copy(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = WORK_SIDE / max(height, width)
    if scale >= 1:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _pixel_hash(rgb: np.ndarray) -> str:
    digest = hashlib.sha256(str(rgb.shape).encode())  # sha256 runs on the CPU's SHA instructions
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()


def _brightness(rgb: np.ndarray) -> tuple[float, float, float]:
    """Percentiles 1, 50 and 99 of perceived brightness, sqrt(.241 R² + .691 G² + .068 B²)/255."""
    value = np.sqrt(rgb.astype(np.float32) ** 2 @ np.float32([0.241, 0.691, 0.068]))
    share = np.cumsum(np.bincount(np.clip(value, 0, 255).astype(np.uint8).ravel(), minlength=256))
    levels = np.searchsorted(share, np.array([0.01, 0.5, 0.99]) * share[-1])
    return tuple(round(float(level) / 255, 4) for level in levels)


def _grayscale(rgb: np.ndarray) -> bool:
    red, green, blue = cv2.split(rgb)
    spread = cv2.max(cv2.absdiff(red, green), cv2.absdiff(green, blue))
    return bool(np.count_nonzero(spread > GREY_SPREAD) <= 0.01 * spread.size)


def _sharpness(grey: np.ndarray) -> float:
    """How abruptly the edges change in the direction where they change least: along each of x, y
    and the two diagonals, the mean |second derivative| over the mean |first derivative| on the
    EDGE_SHARE of the pixels where the first is strongest (or fewer: those that change by
    EDGE_LEVELS a pixel at least), and the least of the four. Blur widens an edge, which lowers its
    second derivative more than its first; smooth areas, however large, do not count; motion blur
    widens only the edges across its direction, which the least finds. A direction without edges
    (its strongest change by under EDGE_LEVELS a pixel) is left out; 0 where every direction is."""
    g = grey.astype(np.float32)
    derivatives = ((1, 0), (0, 1), (2, 0), (0, 2), (1, 1))
    gx, gy, gxx, gyy, gxy = (cv2.Sobel(g, cv2.CV_32F, dx, dy).ravel() for dx, dy in derivatives)
    found = []
    for c, s in ((1, 0), (0, 1), (0.7071, 0.7071), (0.7071, -0.7071)):
        first = np.abs(cv2.addWeighted(gx, c, gy, s, 0).ravel())
        sample, top = first[::7], int(first[::7].size * (1 - EDGE_SHARE))  # a seventh of the pixels: 8× faster
        # a Sobel derivative is 4 times the change a pixel; where fewer than EDGE_SHARE of the pixels
        # change by EDGE_LEVELS (a small object on a flat background), those that do are the edges
        edges = np.flatnonzero(first >= max(float(np.partition(sample, top)[top]), 4 * EDGE_LEVELS))
        strength = float(first[edges].mean()) if edges.size else 0.0
        if strength >= 4 * EDGE_LEVELS:
            second = np.abs(c * c * gxx[edges] + 2 * c * s * gxy[edges] + s * s * gyy[edges])
            found.append(float(second.mean()) / strength)
    return round(min(found), 4) if found else 0.0


def _detail(rgb: np.ndarray) -> float:
    small = cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA).reshape(-1, 3).astype(np.float32)
    return round(float(small.std(axis=0).max()), 3)


def _phash(grey: np.ndarray) -> str:
    """The DCT perceptual hash: is each of the 8×8 lowest frequencies of a 32×32 grey copy above
    their median."""
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    return np.packbits(low > np.median(low)).tobytes().hex()


def _thumb(rgb: np.ndarray) -> str:
    return cv2.resize(rgb, (8, 8), interpolation=cv2.INTER_AREA).tobytes().hex()


def _object_box(rgb: np.ndarray, grey: np.ndarray) -> dict:
    """box, box_phash and box_thumb of what differs from a plain border (an object on a plain
    background), found on a 64×64 copy so that a resized copy finds the same box; None and ""
    where the border is not plain or nothing differs from it."""
    h, w = grey.shape
    small = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA).astype(np.int16)
    border = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    low, level, high = np.percentile(border, [5, 50, 95])
    rows, cols = np.nonzero(np.abs(small - int(level)) > FLAT_BORDER)
    if high - low > FLAT_SPREAD or rows.size == 0:
        return {"box": None, "box_phash": "", "box_thumb": ""}
    top, bottom = int(rows.min()) * h // 64, -(-(int(rows.max()) + 1) * h // 64)
    left, right = int(cols.min()) * w // 64, -(-(int(cols.max()) + 1) * w // 64)
    return {"box": (round(top / h, 3), round(bottom / h, 3), round(left / w, 3), round(right / w, 3)),
            "box_phash": _phash(grey[top:bottom, left:right]), "box_thumb": _thumb(rgb[top:bottom, left:right])}


def judge(stats: list[ImageStats]) -> list[Problem]:
    """Every image problem of a dataset, each naming its file (a group of duplicates once, under
    its first file, the others in `related`)."""
    if not stats:
        return []
    flat = {s.path for s in stats if s.detail < LOW_DETAIL}
    return (_exposure(stats, flat) + _blurry(stats, flat) + _odd_shapes(stats) + _grayscale_among_colour(stats, flat)
            + _exif(stats) + _exact_duplicates(stats) + _near_duplicates(stats, flat))


def _exposure(stats: list[ImageStats], flat: set[str]) -> list[Problem]:
    problems = [Problem("low_information", s.path, detail=f"near-constant: its levels vary by {s.detail:.1f} "
                        f"(std), under {LOW_DETAIL:g}", split=s.split) for s in stats if s.path in flat]
    dark = np.array([s.brightness_p99 for s in stats])
    for i, factor in _underexposed(dark, DARK_P99):
        relative = f"; most of the dataset is, this one {factor:.1f}× darker than its median" if factor else ""
        problems.append(Problem("dark", stats[i].path, split=stats[i].split, detail=f"the brightest 1% of the "
                                f"pixels at {dark[i]:.0%} brightness, under {DARK_P99:.0%}{relative}"))
    light = np.array([s.brightness_p01 for s in stats])
    for i, factor in _underexposed(1 - light, 1 - BRIGHT_P01):
        relative = f"; most of the dataset is, this one {factor:.1f}× nearer white than its median" if factor else ""
        problems.append(Problem("bright", stats[i].path, split=stats[i].split, detail=f"the darkest 1% of the "
                                f"pixels at {light[i]:.0%} brightness, over {BRIGHT_P01:.0%}{relative}"))
    return problems


def _underexposed(levels: np.ndarray, limit: float) -> list[tuple[int, float]]:
    """(index, 0) of the levels under `limit`; where most of them are (a dataset of night scenes,
    or of snow), (index, how many times under the median) of those also EXPOSURE_FACTOR and
    EXPOSURE_Z robust sigmas under the dataset's median level, on a log scale."""
    under = levels < limit
    if under.mean() <= MOST:
        return [(int(i), 0.0) for i in np.flatnonzero(under)]
    logs = np.log(levels + 1 / 255)
    median, sigma = _robust(logs)
    under &= logs < median - max(EXPOSURE_Z * sigma, np.log(EXPOSURE_FACTOR))
    return [(int(i), float(np.exp(median - logs[i]))) for i in np.flatnonzero(under)]


def _robust(values: np.ndarray) -> tuple[float, float]:
    """(median, the standard deviation a normal distribution with the same MAD would have)."""
    median = float(np.median(values))
    return median, 1.4826 * float(np.median(np.abs(values - median)))


def _blurry(stats: list[ImageStats], flat: set[str]) -> list[Problem]:
    judged = [s for s in stats if s.path not in flat]
    if not judged:
        return []
    logs = np.log([max(s.sharpness, 1e-6) for s in judged])
    median, sigma = _robust(logs)
    limit = median - max(BLUR_Z * sigma, np.log(BLUR_FACTOR))
    typical = float(np.exp(median))
    return [Problem("blurry", s.path, split=s.split, detail=f"sharpness {s.sharpness:.3f}, " + (
                    f"{typical / s.sharpness:.1f}× under" if s.sharpness > 0 else "no edge at all, where")
                    + f" the dataset's median {typical:.3f}")
            for s, value in zip(judged, logs) if value < limit]


def _odd_shapes(stats: list[ImageStats]) -> list[Problem]:
    sides = np.log([np.sqrt(s.width * s.height) for s in stats])
    aspects = np.log([s.width / s.height for s in stats])
    median_side = float(np.median(sides))
    problems = []
    for i in _outliers(sides, ODD_SIZE_FACTOR):
        s, larger = stats[i], sides[i] > median_side
        problems.append(Problem("odd_size", s.path, split=s.split, detail=f"{s.width}×{s.height}, "
                                f"{np.exp(abs(sides[i] - median_side)):.1f}× {'larger' if larger else 'smaller'} than "
                                f"the median image (√area {np.exp(median_side):.0f} px)"))
    for i in _outliers(aspects, ODD_ASPECT_FACTOR):
        s = stats[i]
        problems.append(Problem("odd_aspect", s.path, split=s.split, detail=f"{s.width}×{s.height}, aspect "
                                f"{s.width / s.height:.2f} where the median is {np.exp(np.median(aspects)):.2f}"))
    return problems


def _outliers(logs: np.ndarray, factor: float) -> list[int]:
    """Indices of the values far from the median (robust z over ODD_Z, and a factor away) and rare
    (at most RARE of the values within 10% of it)."""
    median, sigma = _robust(logs)
    far = np.flatnonzero(np.abs(logs - median) > max(ODD_Z * sigma, np.log(factor)))
    ordered, near = np.sort(logs), np.log(1.1)
    alike = (np.searchsorted(ordered, logs[far] + near, side="left")
             - np.searchsorted(ordered, logs[far] - near, side="right"))
    return [int(i) for i in far[alike <= max(2, RARE * len(logs))]]


def _grayscale_among_colour(stats: list[ImageStats], flat: set[str]) -> list[Problem]:
    """Near-constant pictures (all black, all white) have no colour to lose: neither counted nor
    reported."""
    judged = [s for s in stats if s.path not in flat]
    grey = [s for s in judged if s.grayscale]
    if len(judged) - len(grey) < COLOUR_MAJORITY * len(judged):
        return []
    return [Problem("grayscale", s.path, split=s.split, detail=f"grayscale, where {len(judged) - len(grey)} "
                    f"of {len(judged)} images are colour") for s in grey]


def _exif(stats: list[ImageStats]) -> list[Problem]:
    return [Problem("exif_rotated", s.path, split=s.split, detail="stored turned, with an EXIF orientation tag: "
                    "used upright here, turned by tools that ignore EXIF") for s in stats if s.exif_rotated]


def _grouped(group: list[ImageStats], kind: str, alike: str) -> list[Problem]:
    """One `kind`_duplicate for each split holding two or more of the group (those not placed yet
    count with every split), one `kind`_leak where the group spans splits; each under its first file."""
    group = sorted(group, key=lambda s: s.path)
    placed = sorted({s.split for s in group if s.split is not None})
    problems = []
    for split in placed or [None]:
        members = [s for s in group if s.split in (split, None)]
        if len(members) < 2 or len({s.pixels for s in members}) < (2 if kind == "near" else 1):
            continue
        first, *others = members
        if any(s.split is None for s in members):
            identical = kind == "exact" and len({s.sha256 for s in members}) == 1
            detail = (f"{alike} (identical files: expand keeps them in one split)" if identical
                      else f"{alike}, not placed yet: expand may put them in different splits")
        else:
            detail = alike
        problems.append(Problem(f"{kind}_duplicate", first.path, detail=detail, split=first.split,
                                related=tuple(s.path for s in others)))
    if len(placed) > 1:
        first, *others = group
        problems.append(Problem(f"{kind}_leak", first.path, detail=f"{alike}, in {' and '.join(placed)}",
                                split=first.split, related=tuple(s.path for s in others)))
    return problems


def _by_pixels(stats: list[ImageStats]) -> list[list[ImageStats]]:
    groups: dict[str, list[ImageStats]] = defaultdict(list)
    for s in stats:
        groups[s.pixels].append(s)
    return list(groups.values())


def _exact_duplicates(stats: list[ImageStats]) -> list[Problem]:
    return [p for group in _by_pixels(stats) if len(group) > 1 for p in _grouped(group, "exact", "the same pixels")]


def _near_duplicates(stats: list[ImageStats], flat: set[str]) -> list[Problem]:
    """Different pictures that look the same, grouped with what looks like what looks like them;
    exact copies are compared once, through their first."""
    groups = [g for g in _by_pixels(stats) if g[0].path not in flat]
    label = _components(len(groups), *_alike([g[0] for g in groups])).tolist()
    members: dict[int, list[ImageStats]] = defaultdict(list)
    for k, group in zip(label, groups):
        members[k] += group
    linked = Counter(label)
    return [p for k, group in members.items() if linked[k] > 1 for p in _grouped(group, "near", "looks the same")]


def _components(count: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """For each of `count` items, the least index of those linked to it through the pairs (i, j)."""
    label = np.arange(count)
    while True:
        before = label
        low = np.minimum(label[i], label[j])
        label = label.copy()
        np.minimum.at(label, i, low)
        np.minimum.at(label, j, low)
        label = label[label]
        if np.array_equal(label, before):
            return label


_POPCOUNT = np.unpackbits(np.arange(1 << 16, dtype=">u2").view(np.uint8).reshape(-1, 2), axis=1).sum(1, dtype=np.uint8)


def _alike(stats: list[ImageStats]) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) of the pictures that look the same: by their object boxes where both have one, by the
    whole pictures where not."""
    boxed = np.array([s.box is not None for s in stats], bool)
    i, j = _near_pairs(_packed([s.phash for s in stats], 8), _packed([s.thumb for s in stats], 192))
    whole = ~(boxed[i] & boxed[j])
    index = np.flatnonzero(boxed)
    objects = [stats[k] for k in index]
    boxes = np.array([s.box for s in objects], np.float32).reshape(-1, 4)
    a, b = _near_pairs(_packed([s.box_phash for s in objects], 8), _packed([s.box_thumb for s in objects], 192))
    placed = np.abs(boxes[a] - boxes[b]).max(axis=1, initial=0) <= NEAR_BOX
    return np.r_[i[whole], index[a[placed]]], np.r_[j[whole], index[b[placed]]]


def _packed(hexes: list[str], width: int) -> np.ndarray:
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in hexes), np.uint8).reshape(-1, width)


def _near_pairs(hashes: np.ndarray, thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j, whose hashes (n×8 bytes) differ in at most NEAR_BITS bits and whose 8×8 RGB
    thumbnails (n×192) look alike: see _thumbs_alike."""
    words = np.ascontiguousarray(hashes).view(np.uint16)  # 4 words an image: _POPCOUNT counts 16 bits at once
    centred = thumbs.reshape(-1, 64, 3).astype(np.int16)
    centred -= centred.mean(axis=(1, 2), keepdims=True).round().astype(np.int16)  # brightened: the same; tinted: not
    first, second = [np.zeros(0, np.intp)], [np.zeros(0, np.intp)]
    rows_at_once = max(16, _BLOCK_BYTES // (8 * max(1, len(words))))
    for start in range(0, len(words), rows_at_once):
        block = words[start:start + rows_at_once]
        bits = _POPCOUNT[block[:, None, :] ^ words[None, start:, :]].sum(axis=2, dtype=np.uint8)
        rows, cols = np.nonzero(bits <= NEAR_BITS)
        keep = cols > rows
        rows, cols = rows[keep] + start, cols[keep] + start
        for k in range(0, len(rows), _PAIRS):
            i, j = rows[k:k + _PAIRS], cols[k:k + _PAIRS]
            close = _thumbs_alike(centred[i], centred[j])
            first.append(i[close])
            second.append(j[close])
    return np.concatenate(first).astype(np.intp), np.concatenate(second).astype(np.intp)


def _thumbs_alike(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether pairs of 8×8 thumbnails (m×64×3, each less its mean level) look alike: all but
    NEAR_CELLS of their 64 cells within NEAR_THUMB levels in every channel, and those within twice
    that (a small object on white is not a faint shape on cream). A resized, re-encoded or slightly
    cropped copy differs by a few levels throughout; two pictures of one kind (an orange and a red
    circle, two triangles of different sizes) by much more where they differ."""
    cells = np.abs(a - b).max(axis=2)
    return (np.count_nonzero(cells > NEAR_THUMB, axis=1) <= NEAR_CELLS) & (cells.max(axis=1) <= 2 * NEAR_THUMB)


def facts(stats: list[ImageStats], problems: list[Problem] | None = None) -> dict:
    """The figures for the report's text and plots (keys in the module's docstring); `problems` are
    judge's answer, found again when not given."""
    problems = judge(stats) if problems is None else problems
    sizes = Counter((s.width, s.height) for s in stats)
    long_sides = [max(s.width, s.height) for s in stats]
    counts, edges = np.histogram(long_sides, bins=min(20, max(1, len(set(long_sides))))) if stats else ([], [])
    named = defaultdict(set)
    for p in problems:
        named[p.check] |= {p.path, *p.related}
    return {
        "images": len(stats),
        "sizes": [[w, h, n] for (w, h), n in sizes.most_common()],
        "long_sides": {"edges": [round(float(e), 1) for e in edges], "counts": [int(c) for c in counts]},
        "counts": {check: len(named[check]) for check in JUDGED},
        "medians": {name: _median([getattr(s, name) for s in stats])
                    for name in ("width", "height", "sharpness", "brightness", "detail")},
        "grayscale": sum(s.grayscale for s in stats),
        "exif_rotated": sum(s.exif_rotated for s in stats),
        "thresholds": {"blur_z": BLUR_Z, "blur_factor": BLUR_FACTOR, "dark_p99": DARK_P99,
                       "bright_p01": BRIGHT_P01, "low_detail": LOW_DETAIL, "odd_z": ODD_Z,
                       "odd_size_factor": ODD_SIZE_FACTOR, "odd_aspect_factor": ODD_ASPECT_FACTOR,
                       "near_bits": NEAR_BITS, "near_thumb": NEAR_THUMB, "near_cells": NEAR_CELLS, "near_box": NEAR_BOX,
                       "edge_share": EDGE_SHARE, "exposure_z": EXPOSURE_Z, "exposure_factor": EXPOSURE_FACTOR},
    }


def _median(values: list) -> float | None:
    return round(float(np.median(values)), 4) if values else None
