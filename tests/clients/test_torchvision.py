"""torchvision's detection models on augpipe's readers, without glue: `convention="torchvision"`.

Run with the clients' environment: PYTHONPATH=. /work/clients/bin/python -m pytest tests/clients
"""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

torchvision = pytest.importorskip("torchvision")

import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.transforms.functional import pil_to_tensor, to_tensor  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from augpipe.cli import app  # noqa: E402
from augpipe.readers import ShardDataset, ShardIterable, collate  # noqa: E402
from conftest import make_scenes  # noqa: E402

RECIPE = """name: flips-png
copies: 1
output: {format: png}
transforms:
  - HorizontalFlip: {p: 0.5}
  - VerticalFlip: {p: 0.5}
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Scenes with instance masks (COCO polygons), one image without an object, expanded by the CLI."""
    root = tmp_path_factory.mktemp("torchvision")
    source = make_scenes(root / "src", n=8, fmt="coco")
    path = source / "annotations" / "instances_default.json"
    coco = json.loads(path.read_text())
    shutil.copy(source / "default" / "scene_000.png", source / "default" / "empty.png")
    coco["images"].append({"id": 99, "file_name": "empty.png", "width": 80, "height": 64})
    path.write_text(json.dumps(coco))
    (root / "png.yaml").write_text(RECIPE)
    out = root / "out"
    result = CliRunner().invoke(app, ["expand", str(source), "--recipe", str(root / "png.yaml"), "--out", str(out),
                                      "--workers", "1", "--val-fraction", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def shard_rows(out: Path) -> list[dict]:
    rows = []
    for name in json.loads((out / "_augpipe.json").read_text())["shards"]:
        if name["split"] == "train":
            rows += pq.read_table(out / name["name"]).to_pylist()
    return rows


def classes_of(out: Path) -> list[str]:
    return json.loads((out / "_augpipe.json").read_text())["classes"]


def test_the_targets_are_torchvision_s_layout(dataset):
    rows = shard_rows(dataset)
    ds = ShardDataset(dataset, convention="torchvision")
    assert len(ds) == len(rows) and any(not r["objects"]["bbox"] for r in rows)
    for (image, target), row in zip(ds, rows):
        picture = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
        assert image.dtype == torch.float32 and torch.equal(image, to_tensor(picture))  # torchvision's own conversion
        stored = np.asarray(row["objects"]["bbox"], np.float32).reshape(-1, 4)
        stored[:, 2:] += stored[:, :2]
        assert target["boxes"].dtype == torch.float32 and np.array_equal(target["boxes"].numpy(), stored)
        assert target["labels"].dtype == torch.int64
        assert target["labels"].tolist() == [c + 1 for c in row["objects"]["category"]]
        masks = [pil_to_tensor(Image.open(io.BytesIO(m["bytes"])))[0] > 0 for m in row["objects"]["mask"]]
        expected = torch.stack(masks).to(torch.uint8) if masks else torch.zeros(0, *image.shape[1:], dtype=torch.uint8)
        assert target["masks"].dtype == torch.uint8 and torch.equal(target["masks"], expected)
    labels = torch.cat([t["labels"] for _, t in ds])
    assert labels.min() == 1 and labels.max() == len(classes_of(dataset))  # 1..C, 0 the background


def _one_step(model, loader) -> dict:
    model.train()
    images, targets = next(iter(loader))
    losses = model(images, targets)
    total = sum(losses.values())
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    return {k: v.item() for k, v in losses.items()}


def test_one_training_step_of_faster_rcnn(dataset):
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None,
                                              num_classes=len(classes_of(dataset)) + 1, min_size=64, max_size=128)
    stream = ShardIterable(dataset, convention="torchvision", shuffle=True, seed=0)
    losses = _one_step(model, torch.utils.data.DataLoader(stream, batch_size=4, collate_fn=collate))
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(v) for v in losses.values()), losses


def test_one_training_step_of_mask_rcnn_with_an_empty_image(dataset):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    ds = ShardDataset(dataset, convention="torchvision")
    empty = next(i for i in range(len(ds)) if len(ds[i][1]["labels"]) == 0)
    batch = torch.utils.data.Subset(ds, [empty, *(i for i in range(len(ds)) if i != empty)][:3])
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=len(classes_of(dataset)) + 1,
                                  min_size=64, max_size=128)
    losses = _one_step(model, torch.utils.data.DataLoader(batch, batch_size=3, collate_fn=collate))
    assert "loss_mask" in losses and all(math.isfinite(v) for v in losses.values()), losses


def test_decode_images_takes_what_the_readers_take_and_leaves_a_devices_error_its_own():
    """torchvision's decode_jpeg refuses a JPEG whose data is cut short, which OpenCV, augpipe's
    decoder, decodes (what a reader with decode=True gives): decode_images gives that image too,
    not a "damaged row" for one reader and a picture for the other; garbage is a DamagedRow; a
    device that cannot decode (no CUDA here) is its own error, not the images' (a hostile
    tester's findings)."""
    import cv2

    from augpipe.errors import DamagedRow
    from augpipe.readers import decode_images, row_image

    rgb = (np.arange(32 * 48 * 3) % 251).astype(np.uint8).reshape(32, 48, 3)
    whole = cv2.imencode(".jpg", rgb)[1].tobytes()
    half = len(whole) // 2  # the entropy-coded data garbled, its end marker kept
    corrupt = whole[:half] + bytes(255 - c for c in whole[half:-2]) + b"\xff\xd9"
    as_tensor = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in (whole, corrupt)]
    with pytest.raises(RuntimeError):
        torchvision.io.decode_jpeg(as_tensor[1])  # the case: torchvision refuses what OpenCV decodes
    images = decode_images(as_tensor, device="cpu")
    assert torch.equal(images[1], torch.from_numpy(row_image(corrupt)).permute(2, 0, 1))
    with pytest.raises(DamagedRow, match="image 1 of the batch does not decode"):
        decode_images([as_tensor[0], torch.frombuffer(bytearray(b"\xff\xd8 not a jpeg"), dtype=torch.uint8)], device="cpu")
    if not torch.cuda.is_available():  # one line, before torchvision's nvJPEG prints pages of C++ frames
        with pytest.raises(ValueError, match="this PyTorch sees no CUDA device") as raised:
            decode_images(as_tensor[:1] * 2, device="cuda")
        assert not isinstance(raised.value, DamagedRow)
    strided = torch.from_numpy(np.stack([np.frombuffer(whole, np.uint8)] * 2, 1).copy())[:, 0]
    assert torch.equal(decode_images([strided], device="cpu")[0], images[0])  # a view with strides decodes
    with pytest.raises(ValueError, match="not a device torch knows"):
        decode_images(as_tensor, device="nonsense")
    on_meta = decode_images(as_tensor, device="meta")  # torchvision decodes on the CPU for it: moved there
    assert on_meta.device.type == "meta" and on_meta.shape == (2, 3, 32, 48)
