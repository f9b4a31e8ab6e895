"""Real-looking varied images, and the same images with an image problem planted, for the health
checks' tests and bench/health_vs_cleanvision.py. Every picture is drawn from a seeded generator:
a background (a smooth gradient, a filtered-noise texture or stripes), a few filled and outlined
shapes, some with texture, and light sensor noise."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image


def texture(rng, w: int, h: int, scale: float) -> np.ndarray:
    """Blurred noise, 0..1: clouds at large scales, grain at small ones."""
    noise = rng.random((h, w)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), scale)
    return cv2.normalize(blurred, None, 0, 1, cv2.NORM_MINMAX)


def background(rng, w: int, h: int) -> np.ndarray:
    colours = rng.integers(0, 256, (2, 3)).astype(np.float32)
    style = rng.integers(3)
    if style == 0:  # a gradient in a random direction
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xx * np.cos(angle) + yy * np.sin(angle)
        t = (t - t.min()) / (np.ptp(t) or 1)
    elif style == 1:  # clouds
        t = texture(rng, w, h, rng.uniform(3, 12))
    else:  # soft stripes
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = 0.5 + 0.5 * np.sin((xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) * rng.uniform(0.05, 0.3))
    return colours[0] * (1 - t[..., None]) + colours[1] * t[..., None]


def add_shapes(rng, image: np.ndarray, count: int, top: int = 256, centred: bool = False) -> None:
    """`count` shapes of colours under `top`, anywhere (or about the middle, and larger)."""
    h, w = image.shape[:2]
    for _ in range(count):
        mask = np.zeros((h, w), np.uint8)
        if centred:
            cx, cy = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
            r = int(rng.integers(min(w, h) // 6, min(w, h) // 3))
        else:
            cx, cy = int(rng.integers(w)), int(rng.integers(h))
            r = int(rng.integers(max(4, min(w, h) // 12), max(8, min(w, h) // 3)))
        kind = rng.integers(2 if centred else 3)  # a centred object is no thin sliver
        if kind == 0:
            cv2.ellipse(mask, (cx, cy), (r, int(r * rng.uniform(0.4, 1))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        elif kind == 1:
            cv2.rectangle(mask, (cx - r, cy - r // 2), (cx + r, cy + r // 2), 1, -1)
        else:
            points = np.stack([cx + rng.integers(-r, r, 6), cy + rng.integers(-r, r, 6)], 1).astype(np.int32)
            cv2.fillPoly(mask, [cv2.convexHull(points)], 1)
        colour = rng.integers(0, top, 3).astype(np.float32)
        fill = colour * (0.6 + 0.4 * texture(rng, w, h, rng.uniform(1, 4))[..., None])
        inside = mask.astype(bool)
        image[inside] = fill[inside]
        if rng.random() < 0.5:
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(image, contours, -1, [float(c) for c in rng.integers(0, 256, 3)], 2)


def varied(rng, w: int, h: int) -> np.ndarray:
    """A clean picture: background, 2 to 6 shapes, light sensor noise; H×W×3 uint8."""
    image = background(rng, w, h)
    add_shapes(rng, image, int(rng.integers(2, 7)))
    image += rng.normal(0, 2.5, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def object_on_white(rng, w: int, h: int) -> np.ndarray:
    """One textured object, not a pale one, on a flat white background, as product photos are."""
    image = np.full((h, w, 3), 255, np.float32)
    add_shapes(rng, image, 1, top=160, centred=True)
    return np.clip(image, 0, 255).astype(np.uint8)


def clean_size(rng) -> tuple[int, int]:
    """(width, height) of a clean image near 240 px: landscape 4:3 or 3:2, square, or portrait 3:4."""
    w = int(rng.integers(200, 300))
    return w, int(w / [4 / 3, 3 / 2, 1.0, 3 / 4][rng.integers(4)])


# the problems, each made from a clean picture
def blurry(rgb: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(rgb, (0, 0), 3)


def dark(rgb: np.ndarray, keep: float = 0.2) -> np.ndarray:
    """Underexposed: `keep` of the light."""
    return (rgb.astype(np.float32) * keep).astype(np.uint8)


def bright(rgb: np.ndarray, keep: float = 0.2) -> np.ndarray:
    """Overexposed, the mirror of `dark`: `keep` of the distance to white."""
    return (255 - (255 - rgb.astype(np.float32)) * keep).astype(np.uint8)


def low_information(rng, w: int, h: int) -> np.ndarray:
    """A near-constant picture: one colour, a faint gradient and sensor noise."""
    base = rng.integers(20, 236, 3).astype(np.float32)
    ramp = np.linspace(-3, 3, w, dtype=np.float32)[None, :, None]
    return np.clip(base + ramp + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)


def motion_blurred(rgb: np.ndarray, length: int, diagonal: bool = False) -> np.ndarray:
    """Moved `length` px during the exposure: horizontally, or along the diagonal."""
    kernel = np.eye(length, dtype=np.float32) if diagonal else np.zeros((length, length), np.float32)
    if not diagonal:
        kernel[length // 2] = 1
    return cv2.filter2D(rgb, -1, kernel / kernel.sum())


def night(rng, w: int, h: int, keep: float = 0.1) -> np.ndarray:
    """A night scene: a picture with `keep` of its light, and a few small bright lights (under 1% of
    the pixels in all)."""
    image = dark(varied(rng, w, h), keep)
    for _ in range(3):
        colour = [int(c) for c in rng.integers(200, 256, 3)]
        cv2.circle(image, (int(rng.integers(w)), int(rng.integers(h))), 3, colour, -1)
    return image


def snow(rng, w: int, h: int, keep: float = 0.1) -> np.ndarray:
    """The mirror of `night`: a washed-out picture with a few small dark spots."""
    return 255 - night(rng, w, h, keep)


def triangle_on_white(w: int, h: int, side: int, colour=(128, 0, 160)) -> np.ndarray:
    """A filled triangle of `side` px about the middle of a white picture."""
    image = np.full((h, w, 3), 255, np.uint8)
    cx, cy = w // 2, h // 2
    points = np.int32([[cx - side // 2, cy + side // 3], [cx + side // 2, cy + side // 3], [cx, cy - 2 * side // 3]])
    cv2.fillPoly(image, [points], colour)
    return image


def brightened(rgb: np.ndarray, levels: int) -> np.ndarray:
    return np.clip(rgb.astype(np.int16) + levels, 0, 255).astype(np.uint8)


def cropped(rgb: np.ndarray, share: float) -> np.ndarray:
    """`share` of the width and height cut off, half on each side."""
    h, w = rgb.shape[:2]
    dy, dx = round(h * share / 2), round(w * share / 2)
    return rgb[dy:h - dy, dx:w - dx]


def grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def resized(rgb: np.ndarray, scale: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


# files
def encode(rgb: np.ndarray, fmt: str = "png", quality: int = 90, orientation: int | None = None) -> bytes:
    """The bytes of a PNG, BMP, TIFF or JPEG file (with an EXIF orientation tag if given)."""
    out = io.BytesIO()
    image = Image.fromarray(rgb)
    if fmt == "jpg":
        exif = Image.Exif()
        if orientation:
            exif[0x0112] = orientation
        image.save(out, "JPEG", quality=quality, exif=exif.tobytes())
    else:
        image.save(out, {"png": "PNG", "bmp": "BMP", "tiff": "TIFF"}[fmt])
    return out.getvalue()


def stored(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels to store so that a viewer turning them by `orientation` (6 or 8) shows `rgb`."""
    return np.ascontiguousarray(np.rot90(rgb, 1 if orientation == 6 else -1))


# datasets: (path, split, bytes) files and, for the planted set, the files each check must name
def clean_files(rng, n: int, split: str | None = "train") -> list[tuple[str, str | None, bytes]]:
    """Varied pictures, a sixth of them objects on white, as PNG or JPEG."""
    files = []
    for i in range(n):
        w, h = clean_size(rng)
        image = object_on_white(rng, w, h) if i % 6 == 5 else varied(rng, w, h)
        fmt = "png" if i % 2 else "jpg"
        files.append((f"{split or 'all'}/clean_{i:03d}.{fmt}", split, encode(image, fmt)))
    return files


def planted(seed: int = 0) -> tuple[list[tuple[str, str | None, bytes]], dict[str, set[str]]]:
    """Clean pictures in train and val, and every image problem planted once (a duplicate in
    pairs), with the files each check must name."""
    rng = np.random.default_rng(seed)
    files = clean_files(rng, 30, "train") + clean_files(rng, 10, "val")

    def picture(w: int = 240, h: int = 180) -> np.ndarray:
        return varied(rng, w, h)

    def add(path: str, image: np.ndarray, fmt: str = "png", **options) -> None:
        files.append((path, path.split("/")[0], encode(image, fmt, **options)))

    add("train/blurry.png", blurry(picture()))
    add("train/dark.png", dark(picture()))
    add("train/bright.png", bright(picture()))
    add("train/flat.png", low_information(rng, 240, 180))
    add("val/flat.png", low_information(rng, 240, 180))
    add("train/huge.png", picture(1100, 820))
    add("train/banner.png", picture(600, 110))
    add("train/grey.png", grey(picture()))
    add("train/turned.jpg", stored(picture(), 6), "jpg", orientation=6)
    same = picture()
    add("train/copy.png", same)
    add("train/copy.bmp", same, "bmp")
    look = picture()
    add("train/near.png", look)
    add("train/near_small.jpg", resized(look, 0.6), "jpg", quality=80)
    leak = picture()
    add("train/leak.png", leak)
    add("val/leak.png", leak)
    seen = picture()
    add("train/seen.png", seen)
    add("val/seen_large.jpg", resized(seen, 1.5), "jpg", quality=85)
    add("train/object_a.png", object_on_white(rng, 240, 180))
    add("train/object_b.png", object_on_white(rng, 240, 180))
    truth = {
        "blurry": {"train/blurry.png"}, "dark": {"train/dark.png"}, "bright": {"train/bright.png"},
        "low_information": {"train/flat.png", "val/flat.png"}, "odd_size": {"train/huge.png"},
        "odd_aspect": {"train/banner.png"}, "grayscale": {"train/grey.png"}, "exif_rotated": {"train/turned.jpg"},
        "exact_duplicate": {"train/copy.png", "train/copy.bmp"},
        "near_duplicate": {"train/near.png", "train/near_small.jpg"},
        "exact_leak": {"train/leak.png", "val/leak.png"}, "near_leak": {"train/seen.png", "val/seen_large.jpg"},
    }
    return files, truth
