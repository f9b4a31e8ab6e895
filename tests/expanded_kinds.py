"""Small expanded datasets of every kind, made from sources of every format `expand` reads, and
what their rows hold counted here with pyarrow alone: the truth `inspect` and `expand`'s summary
are checked against."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from augpipe import ExpandOptions, expand
from augpipe.recipe import parse_recipe
from conftest import make_folder, make_scenes, scene_image, scene_objects
from keypointed import coco_keypoints

# shifts right and down by 30 to 45%: the objects near those edges leave the image, and are dropped
SHIFT = """
copies: 2
output: {format: png}
bbox_params: {min_visibility: 0.5}
transforms:
  - HorizontalFlip: {p: 0.5}
  - Affine: {translate_percent: [0.3, 0.45], border_mode: 0, fill: 0, fill_mask: 0, p: 1}
"""


def voc_scenes(root: Path, n: int = 12, size: tuple[int, int] = (80, 64)) -> Path:
    """The scenes of `make_scenes` as VOC: an XML file beside each image, the devkit's 1-based edges."""
    rng = np.random.default_rng(1)
    w, h = size
    root.mkdir(parents=True)
    for i in range(n):
        objects = scene_objects(rng, w, h)
        cv2.imwrite(str(root / f"v{i:03d}.png"), cv2.cvtColor(scene_image(objects, w, h, rng), cv2.COLOR_RGB2BGR))
        xml = "".join(f"<object><name>{('box', 'disc')[c]}</name><bndbox><xmin>{x + 1:g}</xmin><ymin>{y + 1:g}</ymin>"
                      f"<xmax>{x + bw:g}</xmax><ymax>{y + bh:g}</ymax></bndbox></object>"
                      for c, (x, y, bw, bh), _ in objects)
        size_xml = f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
        (root / f"v{i:03d}.xml").write_text(f"<annotation><filename>v{i:03d}.png</filename>{size_xml}{xml}</annotation>")
    return root


def sources(root: Path) -> dict[str, tuple[Path, object]]:
    """name -> (source folder, recipe) for each kind and detection format."""
    shift = parse_recipe(SHIFT, "shift.yaml")
    return {
        "classification": (make_folder(root / "folder", classes=("cat", "dog", "owl"), per_class=6), "flips"),
        "coco": (make_scenes(root / "coco", n=12, fmt="coco"), shift),
        "yolo": (make_scenes(root / "yolo", n=12, fmt="yolo", seed=2), shift),
        "voc": (voc_scenes(root / "voc"), shift),
        "keypoints": (coco_keypoints(root / "keypoints", n=8), shift),
        "segmentation": (make_scenes(root / "masks", n=12, fmt="masks", seed=3), shift),
    }


def expanded_kinds(root: Path) -> dict[str, Path]:
    """name -> an expanded dataset, a quarter of each source held out for validation."""
    made = {}
    for name, (source, recipe) in sources(root).items():
        made[name] = root / f"{name}-out"
        expand(source, recipe, made[name], ExpandOptions(workers=1, progress=False, val_fraction=0.25))
    return made


def shard_rows(out: Path) -> dict[str, list[dict]]:
    """split -> its rows, read with pyarrow."""
    by_split: dict[str, list[dict]] = {}
    for path in sorted(out.glob("*.parquet")):
        by_split.setdefault(path.name.split("-")[0], []).extend(pq.read_table(path).to_pylist())
    return by_split


def held(row: dict, classes: list[str]) -> Counter:
    """The classes a row holds: its label; its objects; the classes its mask's values name (past
    the background, value 0, and 255)."""
    if "label" in row:
        return Counter({classes[row["label"]]: 1})
    if "objects" in row:
        return Counter(classes[c] for c in row["objects"]["category"])
    values = np.unique(np.asarray(Image.open(io.BytesIO(row["annotation"]["bytes"]))))
    return Counter({classes[v]: 1 for v in values.tolist() if 0 < v < len(classes) and v != 255})


def class_counts(out: Path) -> dict:
    """split -> before (copy 0) / after (all rows) -> rows holding each class, and objects where
    rows have them."""
    classes = json.loads((out / "_augpipe.json").read_text())["classes"]
    counts = {}
    for split, rows in shard_rows(out).items():
        whats = ("rows", "objects") if "objects" in rows[0] else ("rows",)
        tally = {when: {what: Counter() for what in whats} for when in ("before", "after")}
        for row in rows:
            classes_held = held(row, classes)
            for when in ("before", "after") if row["copy"] == 0 else ("after",):
                tally[when]["rows"].update(classes_held.keys())
                if "objects" in whats:
                    tally[when]["objects"].update(classes_held)
        counts[split] = {when: {what: dict(sorted(n.items())) for what, n in by.items()} for when, by in tally.items()}
    return counts


def dropped(out: Path) -> dict:
    """Objects of each class the recipe's single-image transforms dropped: in each augmented copy,
    those of its original (copy 0) it no longer holds."""
    classes = json.loads((out / "_augpipe.json").read_text())["classes"]
    rows = shard_rows(out)["train"]
    originals = {r["source"]: held(r, classes) for r in rows if r["copy"] == 0}
    lost: Counter = Counter()
    for r in rows:
        if r["copy"]:
            lost.update(originals[r["source"]] - held(r, classes))
    return dict(sorted(lost.items()))
