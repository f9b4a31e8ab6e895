"""Shared helpers: small image folders made on the fly, and the CLI runner."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from augpipe.cli import app


def write_image(path: Path, size: int = 32, seed: int = 0, fmt: str = ".jpg") -> Path:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (5, 5), 1.5)
    cv2.rectangle(image, (size // 4, size // 4), (size // 2, size // 2 + seed % 5), (255, 0, 0), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(fmt, image)
    path.write_bytes(buf.tobytes())
    return path


def make_folder(root: Path, classes=("cat", "dog"), per_class: int = 10, size: int = 32) -> Path:
    for ci, name in enumerate(classes):
        for i in range(per_class):
            write_image(root / name / f"{name}_{i:03d}.jpg", size=size, seed=ci * 1000 + i)
    return root


def shard_hashes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.parquet"))}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "data")


@pytest.fixture
def cli():
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return run
