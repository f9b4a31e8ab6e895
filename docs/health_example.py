"""The health report's example (README, docs/health-report.png): a YOLO detection source of varied
pictures with a mistake of most kinds planted, then `augpipe inspect --html`.

    python docs/health_example.py /tmp/health-example
    chromium --headless --screenshot=docs/health-report.png --window-size=1200,1700 file:///tmp/health-example/report/index.html
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("apple", "bottle", "cup")
COLOURS = ((200, 40, 40), (40, 160, 60), (50, 80, 210))


def picture(rng, w: int, h: int) -> tuple[np.ndarray, list[str]]:
    """A textured background with 1-4 objects, and their YOLO lines."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = rng.integers(60, 200, (2, 3)).astype(np.float32)
    t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / (w + h) + 0.5
    image = a * (1 - t[..., None]) + b * t[..., None]
    image += rng.normal(0, 6, image.shape)
    lines = []
    for _ in range(rng.integers(1, 5)):
        c = int(rng.integers(len(CLASSES)))
        bw, bh = int(rng.integers(w // 10, w // 3)), int(rng.integers(h // 10, h // 3))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        colour = np.array(COLOURS[c], np.float32) * rng.uniform(0.7, 1.1)
        if c == 0:
            cv2.ellipse(image, (x + bw // 2, y + bh // 2), (bw // 2, bh // 2), 0, 0, 360, colour.tolist(), -1)
        else:
            cv2.rectangle(image, (x, y), (x + bw - 1, y + bh - 1), colour.tolist(), -1)
        lines.append(f"{c} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
    return np.clip(image, 0, 255).astype(np.uint8), lines


def write(root: Path, split: str, name: str, rgb: np.ndarray, lines: list[str] | None) -> None:
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if lines is not None:
        (root / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + "\n")


def make(root: Path) -> Path:
    rng = np.random.default_rng(7)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "data.yaml").write_text(f"names: {list(CLASSES)}\ntrain: images/train\nval: images/val\n")
    kept = {}
    for k in range(120):
        split = "train" if k < 96 else "val"
        rgb, lines = picture(rng, 320, 240)
        kept[k] = (rgb, lines)
        write(root, split, f"img{k:03d}", rgb, lines)
    plant(root, kept)
    return root


def plant(root: Path, kept: dict) -> None:
    rgb, lines = kept[1]
    write(root, "train", "img001", rgb, lines + ["1 1.08 0.50 0.20 0.20"])  # off the right edge
    rgb, lines = kept[2]
    write(root, "train", "img002", rgb, lines + ["5 0.5 0.5 0.1 0.1"])  # no class 5
    rgb, lines = kept[3]
    write(root, "train", "img003", rgb, lines + [lines[0]])  # the same box twice
    rgb, lines = kept[4]
    write(root, "train", "img004", rgb, lines + ["0 0.5 0.5 0.004 0.004"])  # a 1-pixel box
    (root / "labels/train/img005.txt").unlink()  # a label file lost
    write(root, "train", "img006", cv2.GaussianBlur(kept[6][0], (0, 0), 4), kept[6][1])
    write(root, "train", "img007", (kept[7][0] * 0.08).astype(np.uint8), kept[7][1])
    write(root, "train", "img008", 255 - ((255 - kept[8][0]) * 0.08).astype(np.uint8), kept[8][1])
    grey = cv2.cvtColor(cv2.cvtColor(kept[9][0], cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    write(root, "train", "img009", grey, kept[9][1])
    write(root, "val", "copy_of_img010", kept[10][0], kept[10][1])  # leaks into validation
    write(root, "val", "smaller_img011", cv2.resize(kept[11][0], (240, 180), interpolation=cv2.INTER_AREA),
          kept[11][1])
    rgb, lines = picture(np.random.default_rng(99), 960, 160)  # a panorama among 4:3 pictures
    write(root, "train", "panorama", rgb, lines)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "health-example")
    data = make(out / "data")
    report = out / "report"
    if report.exists():
        shutil.rmtree(report)
    subprocess.run([sys.executable, "-m", "augpipe", "inspect", str(data), "--html", str(report), "-q"])
