"""ultralytics loads augpipe's YOLO export with its own loaders: check_det_dataset from another
working directory, YOLODataset for detect and segment, no image dropped, boxes as the shards'."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ultralytics")
os.environ.setdefault("YOLO_OFFLINE", "1")

from exported import box_error, boxes_only, made_with, masked, mixed, polygon_box, run_export, shards  # noqa: E402


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ultralytics")
    return {"masked": masked(root / "masked"), "boxes": boxes_only(root / "boxes"), "mixed": mixed(root / "mixed")}


def load(yaml: Path, task: str, split: str = "train"):
    """check_det_dataset, then YOLODataset as ultralytics' trainers build it; with the counts of
    its label cache (found, missing, empty, corrupt)."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset, load_dataset_cache_file

    data = check_det_dataset(str(yaml))
    dataset = YOLODataset(img_path=data[split], data=data, task=task, imgsz=96, augment=False, cache=False,
                          hyp=get_cfg(), batch_size=1, stride=32)
    return data, dataset, load_dataset_cache_file(Path(dataset.label_files[0]).parent.with_suffix(".cache"))


def label_files(out: Path) -> list[Path]:
    return sorted((out / "labels").rglob("*.txt"))


def key(out: Path, image: str) -> tuple[str, str]:
    """(split folder, file name) of an exported image, as `exported.shards` keys it."""
    split, *name = Path(image).relative_to(out / "images").parts
    return split, "/".join(name)


def expected(held: dict, out: Path, image: str, task: str) -> list:
    """The boxes ultralytics should give for an image: the shards' (detect), or the extents of
    the polygons export traced from the shards' masks (segment)."""
    objects = held[key(out, image)]
    if task == "segment":
        return [polygon_box(o["mask"], o["box"]) for o in objects]
    return [o["box"] for o in objects]


def xywh_pixels(label: dict) -> np.ndarray:
    w, h = label["shape"][1], label["shape"][0]
    cx, cy, bw, bh = np.asarray(label["bboxes"], float).reshape(-1, 4).T
    return np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h], axis=1)


@pytest.mark.parametrize("which", ["masked", "mixed"])
@pytest.mark.parametrize("task", ["detect", "segment"])
def test_every_image_loads_with_the_shards_boxes(datasets, tmp_path, monkeypatch, task, which):
    """Every image and every label, from single-image rows and from mosaics with pastes and blends."""
    ds = datasets[which]
    out = run_export(ds, "yolo", tmp_path / "yolo", yolo_task=task)
    lines = [ln.split() for f in label_files(out) for ln in f.read_text().splitlines()]
    assert lines and all((len(ln) == 5) == (task == "detect") for ln in lines)  # never a mix
    if task == "segment":  # class and at least 4 points
        assert all(len(ln) % 2 == 1 and len(ln) >= 9 for ln in lines)
    held, mosaics = shards(ds), made_with(ds, "Mosaic")
    assert bool(mosaics) == (which == "mixed")
    monkeypatch.chdir(tmp_path)  # not the export's folder
    worst, loaded = 0.0, set()
    for split in ("train", "val"):
        data, dataset, cache = load(out / "data.yaml", task, split)
        images = [k for k in held if k[0] == split]
        found, missing, empty, corrupt, total = cache["results"]
        assert (found, missing, corrupt, total) == (len(images), 0, 0, len(images))
        assert empty == sum(1 for k in images if not held[k])
        assert len(dataset.labels) == len(images)
        for label in dataset.labels:
            want = expected(held, out, label["im_file"], task)
            assert len(label["cls"]) == len(want)
            if task == "segment":
                assert len(label["segments"]) == len(want)
            worst = max(worst, box_error(xywh_pixels(label), want))
            loaded.add(key(out, label["im_file"]))
    assert worst <= 0.5, f"{task}: boxes off by {worst:.3f} px"
    assert mosaics <= loaded


def test_data_yaml_resolves_from_any_directory(datasets, tmp_path, monkeypatch):
    from ultralytics.data.utils import check_det_dataset

    out = run_export(datasets["masked"], "yolo", tmp_path / "exp" / "yolo")
    assert "path" not in (out / "data.yaml").read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    data = check_det_dataset(str(out / "data.yaml"))
    assert Path(data["train"]) == out / "images" / "train" and Path(data["val"]) == out / "images" / "val"
    monkeypatch.chdir(tmp_path)
    data = check_det_dataset("exp/yolo/data.yaml")  # a relative path to the yaml
    assert Path(data["train"]).resolve() == (out / "images" / "train").resolve()


def test_without_masks_the_export_is_detect_and_loads_whole(datasets, tmp_path, monkeypatch):
    ds = datasets["boxes"]
    out = run_export(ds, "yolo", tmp_path / "yolo")  # the default: detect, as there are no masks
    assert all(len(ln.split()) == 5 for f in label_files(out) for ln in f.read_text().splitlines())
    held = shards(ds)
    monkeypatch.chdir(tmp_path)
    data, dataset, cache = load(out / "data.yaml", "detect")
    images = [k for k in held if k[0] == "train"]
    assert cache["results"][:4] == (len(images), 0, sum(1 for k in images if not held[k]), 0)
    worst = max(box_error(xywh_pixels(label), expected(held, out, label["im_file"], "detect"))
                for label in dataset.labels)
    assert worst <= 0.5


def test_exif_tagged_sources_give_the_boxes_and_images_ultralytics_reads(tmp_path, monkeypatch):
    """A YOLO source of phone-like JPEGs (EXIF orientation 6 and 3) read by ultralytics and by
    augpipe: the same image sizes, the same pixels up, the same boxes in pixels."""
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    from ultralytics.utils.patches import imread

    from augpipe import ExpandOptions, expand

    src = tmp_path / "src"
    shown = np.zeros((100, 40, 3), np.uint8)
    shown[60:80, 10:20] = 255  # the object, as the photo is shown: low on a portrait image
    for name, orientation, turns in (("side", 6, 1), ("down", 3, 2), ("plain", 1, 0)):
        exif = Image.Exif()
        exif[0x0112] = orientation
        (src / "images" / "train").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(np.rot90(shown, turns))).save(
            src / "images" / "train" / f"{name}.jpg", "JPEG", quality=95, exif=exif)
        (src / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (src / "labels" / "train" / f"{name}.txt").write_text("0 0.375 0.7 0.25 0.2\n")
    (src / "data.yaml").write_text(f"path: {src}\nnames: [square]\ntrain: images/train\nval: images/train\n")
    m = expand(src, "flips", tmp_path / "out", ExpandOptions(progress=False, workers=1, val_fraction=0, copies=0))
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in pq.read_table(tmp_path / "out").to_pylist()}
    monkeypatch.chdir(tmp_path)
    _, dataset, _ = load(src / "data.yaml", "detect")
    assert len(dataset.labels) == 3
    for k, label in enumerate(dataset.labels):
        row = rows[Path(label["im_file"]).name]
        assert tuple(label["shape"]) == (row["height"], row["width"]) == (100, 40)
        assert box_error(xywh_pixels(label), row["objects"]["bbox"]) <= 0.5
        assert dataset.load_image(k)[1] == (100, 40)  # its size before the dataset's resize
        theirs = imread(label["im_file"])[:, :, ::-1]  # what load_image reads: BGR, turned by the tag
        ours = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB"))
        assert theirs.shape == ours.shape and np.abs(theirs.astype(int) - ours.astype(int)).mean() < 3
    assert m["exif_oriented"] == 2  # and the run said so
