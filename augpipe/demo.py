"""`augpipe demo`: a small labelled dataset made here (no download), then expanded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ("circle", "square", "triangle", "cross")
PER_CLASS = 60
SIZE = 64


def make_shapes(folder: str | Path, per_class: int = PER_CLASS, size: int = SIZE, seed: int = 0) -> Path:
    """Coloured shapes on noisy backgrounds, one class folder a shape, as JPEG files."""
    import cv2

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = _shape(name, size, rng)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
            (folder / name / f"{name}_{i:03d}.jpg").write_bytes(buf.tobytes())
    return folder


# each class leans to one colour, so that a tiny CNN learns the demo in a few seconds
_TINT = {"circle": (220, 60, 60), "square": (60, 200, 60), "triangle": (70, 90, 230), "cross": (230, 200, 50)}


def _shape(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    background = rng.integers(0, 90, 3)
    image = np.clip(background + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
    colour = tuple(int(c) for c in np.clip(np.array(_TINT[name]) + rng.integers(-35, 35, 3), 0, 255))
    r = int(rng.integers(size // 6, size // 3))
    cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
    if name == "circle":
        cv2.circle(image, (cx, cy), r, colour, -1, cv2.LINE_AA)
    elif name == "square":
        cv2.rectangle(image, (cx - r, cy - r), (cx + r, cy + r), colour, -1, cv2.LINE_AA)
    elif name == "triangle":
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(image, [pts], colour, cv2.LINE_AA)
    else:
        w = max(r // 3, 2)
        cv2.rectangle(image, (cx - r, cy - w), (cx + r, cy + w), colour, -1)
        cv2.rectangle(image, (cx - w, cy - r), (cx + w, cy + r), colour, -1)
    return image


RECIPE = "classic"
DEMO_EPOCHS = 8


MARKER = ".augpipe-demo"  # a folder holding this is a demo's: it may be filled again


def claim_folder(folder: Path) -> None:
    """The demo writes only into a new or empty folder, or one an earlier demo made."""
    from augpipe.errors import OutputError

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} exists and is not a folder: choose another (augpipe demo FOLDER)")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise OutputError(f"{folder} is not empty and was not made by augpipe demo: choose a new folder "
                          "(augpipe demo FOLDER)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("made by augpipe demo: sample data, its expansion and a preview\n")


def run_demo(folder: str | Path, workers: int | None = None, seed: int = 0, progress: bool = True):
    """Sample data, its expansion and a preview sheet: (data folder, manifest, sheet path)."""
    from augpipe.options import ExpandOptions
    from augpipe.pipeline import expand
    from augpipe.preview import preview_source, write_sheet

    folder = Path(folder)
    claim_folder(folder)
    data = make_shapes(folder / "data")
    options = ExpandOptions(workers=workers, seed=seed, overwrite=True, progress=progress)
    manifest = expand(data, RECIPE, folder / "expanded", options)
    # the recipe's copies: the rows the expansion beside it holds
    sheet = write_sheet(preview_source(data, RECIPE, rows=4, seed=seed), folder / "preview.png")
    return data, manifest, sheet


def train_missing() -> list[str]:
    """What the demo's training needs and is not installed (the train extra's)."""
    import importlib.util

    return [name for name in ("torch", "matplotlib") if importlib.util.find_spec(name) is None]


def train_demo(folder: str | Path, seed: int = 0, progress: bool = True, log=print) -> dict | None:
    """A short training run on the expanded sample, when the train extra is installed (None where
    it is not: `train_missing`)."""
    if train_missing():
        return None
    from augpipe.options import TrainOptions
    from augpipe.training.run import train

    folder = Path(folder)
    return train(folder / "expanded", folder / "run", TrainOptions(epochs=DEMO_EPOCHS, seed=seed, progress=progress,
                                                                    log=log))
