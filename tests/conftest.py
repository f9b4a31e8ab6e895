"""Shared helpers: small image folders made on the fly, and the CLI runner."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from augpipe.cli import app

# Ray reports usage to its makers unless told not to, and Ray Data polls a metrics server: no
# test reaches another host, and none waits on one.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")


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


def as_if_killed(out: Path) -> dict:
    """What a run killed before its manifest leaves: finished shards with their records, the
    run's identity, no manifest. Returns the manifest it had."""
    from augpipe.layout import record_name
    from augpipe.output import RUN_FILE

    manifest = json.loads((out / "_augpipe.json").read_text())
    (out / "_augpipe.json").unlink()
    (out / RUN_FILE).parent.mkdir()
    (out / RUN_FILE).write_text(json.dumps({"identity": manifest["identity"],
                                            "shards": [s["name"] for s in manifest["shards"]]}))
    for shard in manifest["shards"]:
        record = {**shard, "sources": 0, "originals": 0, "augmented": 0, "by_class": {}, "conversions": {},
                  "skipped": [], "seconds": 0}
        (out / record_name(shard["name"])).parent.mkdir(parents=True, exist_ok=True)
        (out / record_name(shard["name"])).write_text(json.dumps(record))
    return manifest


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "data")


@pytest.fixture
def cli():
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return run


# ---------------------------------------------------------------- a real S3 server, a real Ray cluster

@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 for the whole session; the AWS_* environment points at it
    (subprocesses and Ray workers inherit it)."""
    pytest.importorskip("moto.server")
    import logging
    import os

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line a request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint, AWS_EC2_METADATA_DISABLED="true")
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
            "AWS_EC2_METADATA_DISABLED")
_BUCKETS = iter(range(10**6))


@pytest.fixture
def bucket(s3_server) -> str:
    """A new, empty bucket on the test server: its name."""
    import boto3

    name = f"bkt-{next(_BUCKETS)}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


def upload(folder: Path, uri: str) -> None:
    """Every file below folder to s3://bucket/prefix, as they are."""
    import boto3

    bucket, _, prefix = uri[len("s3://"):].partition("/")
    client = boto3.client("s3")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}".lstrip("/"))


def s3_hashes(uri: str) -> dict[str, str]:
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(uri)
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if info.base_name.endswith(".parquet"):
            with fs.open_input_stream(info.path) as fh:
                out[info.base_name] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="session")
def ray_cluster():
    """Two Ray nodes of one CPU each on this machine, shared by the session's Ray tests."""
    ray = pytest.importorskip("ray")
    import logging
    import os

    from ray.cluster_utils import Cluster

    cluster = Cluster()
    try:
        cluster.add_node(num_cpus=1, include_dashboard=False)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
        os.environ["RAY_ADDRESS"] = cluster.address
        yield cluster
    finally:
        os.environ.pop("RAY_ADDRESS", None)
        ray.shutdown()
        cluster.shutdown()


# ---------------------------------------------------------------- scenes with boxes and masks

SCENE_CLASSES = ("box", "disc")


def scene_objects(rng, w: int, h: int) -> list[tuple[int, list[float], list[float]]]:
    """1 to 3 objects fully inside a w×h image: (class, [x, y, w, h], polygon)."""
    import cv2

    out = []
    for _ in range(int(rng.integers(1, 4))):
        c = int(rng.integers(0, 2))
        bw, bh = int(rng.integers(8, w // 2)), int(rng.integers(8, h // 2))
        x, y = int(rng.integers(1, w - bw - 1)), int(rng.integers(1, h - bh - 1))
        if c == 0:
            poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
        else:
            pts = cv2.ellipse2Poly((x + bw // 2, y + bh // 2), (bw // 2, bh // 2), 0, 0, 360, 15)
            poly = pts.reshape(-1).astype(float).tolist()
            xs, ys = pts[:, 0], pts[:, 1]
            x, y, bw, bh = int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())
        out.append((c, [float(x), float(y), float(bw), float(bh)], [float(v) for v in poly]))
    return out


def scene_image(objects, w: int, h: int, rng) -> np.ndarray:
    import cv2

    image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    for c, _, poly in objects:
        colour = (230, 80, 40) if c == 0 else (40, 120, 230)
        cv2.fillPoly(image, [np.array(poly, np.int32).reshape(-1, 2)], colour)
    return image


def make_scenes(root: Path, n: int = 12, size: tuple[int, int] = (80, 64), fmt: str = "coco", seed: int = 0) -> Path:
    """Scenes of boxes and discs at known places, as COCO (with polygons), YOLO or masks."""
    import cv2

    rng = np.random.default_rng(seed)
    w, h = size
    images, annotations = [], []
    for i in range(n):
        objects = scene_objects(rng, w, h)
        image = scene_image(objects, w, h, rng)
        name = f"scene_{i:03d}.png"
        if fmt == "coco":
            folder = root / "default"
        elif fmt == "yolo":
            folder = root / "images" / "train"
        else:
            folder = root / "images"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for c, box, poly in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0, "segmentation": [poly]})
        if fmt == "yolo":
            labels = root / "labels" / "train"
            labels.mkdir(parents=True, exist_ok=True)
            (labels / f"scene_{i:03d}.txt").write_text("".join(
                f"{c} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}\n"
                for c, (x, y, bw, bh), _ in objects))
        elif fmt == "masks":
            from PIL import Image

            mask = np.zeros((h, w), np.uint8)
            for c, _, poly in objects:
                cv2.fillPoly(mask, [np.array(poly, np.int32).reshape(-1, 2)], c + 1)
            (root / "masks").mkdir(exist_ok=True)
            im = Image.fromarray(mask, "L").convert("P")
            im.putpalette([0, 0, 0, 230, 80, 40, 40, 120, 230] + [0] * (253 * 3))
            im.save(root / "masks" / f"scene_{i:03d}.png")
    if fmt == "coco":
        cats = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(SCENE_CLASSES)]
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / "instances_default.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    elif fmt == "yolo":
        (root / "data.yaml").write_text(f"train: images/train\nnames: {list(SCENE_CLASSES)}\n")
    elif fmt == "masks":
        (root / "classes.txt").write_text("background\n" + "".join(f"{c}\n" for c in SCENE_CLASSES))
    return root


# ---------------------------------------------------------------- source files, written by hand

def img(path: Path, w: int = 64, h: int = 48, boxes=()) -> Path:
    """A black image with filled rectangles at known places ([x, y, w, h] in pixels)."""
    a = np.zeros((h, w, 3), np.uint8)
    for x, y, bw, bh in boxes:
        cv2.rectangle(a, (x, y), (x + bw - 1, y + bh - 1), (0, 255, 0), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), a)
    return path


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, (dict, list)):
        content = json.dumps(content)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def by_path(found) -> dict:
    return {f.relpath: f for f in found.files}


def reasons(found) -> dict:
    return dict(found.skipped)


def coco_image(i, name, w=64, h=48):
    return {"id": i, "file_name": name, "width": w, "height": h}


def coco_ann(i, image, cat, bbox, **extra):
    return {"id": i, "image_id": image, "category_id": cat, "bbox": bbox, "area": 1, "iscrowd": 0, **extra}
