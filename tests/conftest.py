"""Shared helpers: small image folders and scenes made on the fly, the CLI runner, the command in a
process of its own, a real S3 server and Ray cluster, and expanded datasets that several test files read."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from augpipe import ExpandOptions, expand
from augpipe.cli import app
from augpipe.formats.base import Objects
from augpipe.recipe import parse_recipe
from augpipe.sample import SourceItem, augment_sample
from augpipe.store import LocalStore
from augpipe.targets import kind_for

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


def gone(pids: list[int], seconds: float = 20) -> bool:
    """Whether these processes end within `seconds`; any left are killed (a failing test leaves
    no process behind it)."""
    import signal

    from augpipe.processes import alive

    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in pids if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return not left


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


# ---------------------------------------------------------------- the command in a process of its own

ROOT = Path(__file__).parent.parent


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


# The README's test command runs the suite on two pytest-xdist workers (-n 2 --dist loadgroup). A
# module stays on one worker (its module fixtures are made once); the modules that start Ray share
# one, since a test there counts every Ray process on the machine.
_RAY_MODULES = {"test_ray.py", "test_arrow.py", "test_base.py"}


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("xdist"):  # the clients' environment runs without it
        return
    for item in items:
        group = "ray" if item.path.name in _RAY_MODULES else item.path.relative_to(config.rootpath).as_posix()
        item.add_marker(pytest.mark.xdist_group(group))


def peak_bytes(setup: str, measured: str) -> int:
    """The most memory (Python's and numpy's allocators) that `measured` held, run after `setup` in
    a process of its own: threads a test left in this one allocate too, and tracemalloc counts them."""
    code = (f"import tracemalloc\n{setup}\ntracemalloc.start()\n{measured}\n"
            "print(tracemalloc.get_traced_memory()[1])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def augpipe(*args) -> list[str]:
    return [sys.executable, "-m", "augpipe", *map(str, args)]


def run(*args, env=None, timeout=240):
    return subprocess.run(augpipe(*args), env={**ENV, **os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def session_processes(sid: int) -> list[int]:
    """Every live process of a session (the run's, started with start_new_session)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != b"Z":
            found.append(int(entry))
    return found


def wait_for_shards(out: Path, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while not list(out.glob("*.parquet")) and time.monotonic() < end:
        time.sleep(0.02)
    assert list(out.glob("*.parquet")), "no shard appeared"


@pytest.fixture(scope="session")
def big(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("big") / "data", per_class=250, size=96)


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


@pytest.fixture(scope="module")
def ray_cluster(request):
    """Two Ray nodes of one CPU each on this machine, shared by a module's Ray tests (a cluster kept
    for the whole session kept Ray Data's actors busy on a core while every later test ran). Where moto
    is installed the S3 server starts first: the nodes' workers take the environment of their start,
    and the tests that read S3 through Ray need it to point at the server, whichever test runs first."""
    ray = pytest.importorskip("ray")
    if importlib.util.find_spec("moto") is not None:
        request.getfixturevalue("s3_server")
    import logging
    import os

    from ray.cluster_utils import Cluster

    cluster = Cluster()
    try:
        cluster.add_node(num_cpus=1, include_dashboard=False)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
        _a_worker_on_each_node(ray)
        os.environ["RAY_ADDRESS"] = cluster.address
        yield cluster
    finally:
        os.environ.pop("RAY_ADDRESS", None)
        ray.shutdown()
        cluster.shutdown()


def _a_worker_on_each_node(ray) -> None:
    """A worker started on each node, as a cluster in use has them: on a fast machine the first
    node's worker otherwise finished a small run's few tasks before the second's had started."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ready = ray.remote(num_cpus=1)(lambda: None)
    ray.get([ready.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
             for node in ray.nodes() if node["Alive"]])


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("scale") / "data", per_class=30)


@pytest.fixture(scope="session")
def reference(data, tmp_path_factory) -> dict[str, str]:
    """The local engine, local disk, one worker: what every other way must write, byte for byte."""
    out = tmp_path_factory.mktemp("reference") / "out"
    expand(data, "classic", out, ExpandOptions(workers=1, shard_size=30_000, progress=False, seed=3))
    return shard_hashes(out)


def s3_source(data: Path, bucket: str) -> str:
    uri = f"s3://{bucket}/photos"
    upload(data, uri)
    return uri


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


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scenes")
    return {fmt: make_scenes(root / fmt, n=16, fmt=fmt) for fmt in ("coco", "yolo", "masks")}


W, H = 100, 60


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def picture(boxes) -> bytes:
    image = np.zeros((H, W, 3), np.uint8)
    for x, y, w, h in boxes:
        cv2.rectangle(image, (int(x), int(y)), (int(x + w) - 1, int(y + h) - 1), (255, 255, 255), -1)
    return png(image)


def recipe(transforms: str, copies: int = 1, **top) -> object:
    extra = "".join(f"{k}: {json.dumps(v)}\n" for k, v in top.items())
    return parse_recipe(f"copies: {copies}\noutput: {{format: png}}\n{extra}transforms: {transforms}\n")


def boxes_of(row) -> list[list[float]]:
    return np.asarray(row["objects"]["bbox"]).tolist()


def extent(mask_png: bytes) -> list[int]:
    ys, xs = np.nonzero(np.asarray(Image.open(io.BytesIO(mask_png))))
    return [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] if len(xs) else []


def segmented(boxes, polygons, transforms: str, top: str = "", output: str = "{format: png}"):
    """augment_sample on objects given by their box and their polygon (None: no segment)."""
    objects = Objects(tuple(tuple(b) for b in boxes), (0,) * len(boxes), tuple(range(len(boxes))),
                      segments=tuple(None if p is None else ("polygon", (tuple(p),)) for p in polygons))
    r = parse_recipe(f"copies: 1\noutput: {output}\n{top}transforms: {transforms}\n")
    return augment_sample(picture(boxes), SourceItem("a.png", None, (0, 1), target=objects), r, 0, 10**8,
                          kind=kind_for("detection", instance_masks=True))


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


def coco_named(root: Path, name: str) -> Path:
    img(root / "train" / "a.jpg")
    write(root / "annotations" / "instances_train.json", {
        "images": [coco_image(1, "a.jpg")], "categories": [{"id": 1, "name": name}],
        "annotations": [coco_ann(1, 1, 1, [1, 1, 8, 8])]})
    return root


class RefusingStore(LocalStore):
    """A store whose reads fail as pyarrow fails for a key it cannot address."""

    def __init__(self, exc: Exception):
        super().__init__(Path("."))
        self.exc = exc

    def read_bytes(self, name: str) -> bytes:
        raise self.exc


# ---------------------------------------------------------------- expanded datasets, read back

def rows(out: Path, split: str = "*"):
    tables = [pq.read_table(p) for p in sorted(out.glob(f"{split}-*.parquet"))]
    return pa.concat_tables(tables).to_pylist() if tables else []


def duplicated_folder(root: Path) -> Path:
    make_folder(root, per_class=12)
    for i in range(20):  # one image under twenty names
        shutil.copy(root / "cat" / "cat_000.jpg", root / "cat" / f"copy_{i:02d}.jpg")
    return root


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readers")
    data = make_folder(root / "data", per_class=20)
    out = root / "out"
    expand(data, "flips", out, ExpandOptions(workers=1, progress=False, shard_size=25_000, val_fraction=0.2))
    return out


def colour_folder(root: Path, per_class: int = 30, size: int = 24) -> Path:
    """Three classes told apart by colour: any working trainer learns them in an epoch or two."""
    rng = np.random.default_rng(0)
    for name, channel in (("red", 2), ("green", 1), ("blue", 0)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
            image[:, :, channel] += 150
            cv2.imwrite(str(root / name / f"{i:03d}.png"), image)
    return root


def faint_colours(root: Path, per_class: int = 40) -> Path:
    """colour_folder's classes told apart by a faint tint in noise, expanded: a few steps of
    training leave the models right on different validation images."""
    rng = np.random.default_rng(0)
    for name, channel in (("red", 2), ("green", 1), ("blue", 0)):
        (root / "data" / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 200, (12, 12, 3), dtype=np.uint8)
            image[:, :, channel] += 25
            cv2.imwrite(str(root / "data" / name / f"{i:03d}.png"), image)
    expand(root / "data", "flips", root / "out", ExpandOptions(workers=1, progress=False, val_fraction=0.25))
    return root / "out"


@pytest.fixture(scope="session")
def colours(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    out = root / "out"
    expand(colour_folder(root / "data"), "flips", out, ExpandOptions(workers=1, progress=False, val_fraction=0.25))
    return out


def one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("augpipe: error: "), output
    return lines[0]


def expanded(source: Path, out: Path, **kw) -> Path:
    expand(source, "flips", out, ExpandOptions(workers=1, progress=False, **{"val_fraction": 0.25, **kw}))
    return out


def sparse_coco(root: Path, n: int = 16, classes=("box",), empty_every: int = 3,
                sizes=((80, 64), (48, 72))) -> Path:
    """COCO scenes with polygons: every `empty_every`th image without an object, the images in
    turn of each size, every object of the classes given (its class index taken modulo their count)."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    (root / "default").mkdir(parents=True)
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        objects = [] if i % empty_every == 0 else [(c % len(classes), b, p) for c, b, p in scene_objects(rng, w, h)]
        name = f"s{i:03d}.png"
        cv2.imwrite(str(root / "default" / name), cv2.cvtColor(scene_image(objects, w, h, rng), cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        annotations += [{"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1, "bbox": b,
                         "area": b[2] * b[3], "iscrowd": 0, "segmentation": [p]} for c, b, p in objects]
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_default.json").write_text(json.dumps(
        {"images": images, "annotations": annotations,
         "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)]}))
    return root


CLASS_COLOURS = ((230, 80, 40), (40, 120, 230), (60, 200, 60), (220, 220, 40))


def class_scenes(root: Path, held, classes=("cup", "cat", "coin")) -> Path:
    """COCO scenes: image i holds an object of each class listed in held[i] (a class may be listed
    more than once; an empty list is a background image), each a square painted in its class's
    colour in a cell of its own, up to 6 an image."""
    w, h = 64, 48
    images, annotations = [], []
    (root / "default").mkdir(parents=True)
    for i, objects in enumerate(held):
        image = np.full((h, w, 3), 20, np.uint8)
        for k, c in enumerate(objects):
            x, y = 4 + (k % 3) * 20, 4 + (k // 3) * 22
            image[y:y + 14, x:x + 14] = CLASS_COLOURS[c]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1,
                                "bbox": [x, y, 14, 14], "area": 196, "iscrowd": 0})
        name = f"c{i:03d}.png"
        cv2.imwrite(str(root / "default" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_default.json").write_text(json.dumps(
        {"images": images, "annotations": annotations,
         "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)]}))
    return root


@pytest.fixture(scope="session")
def sparse(tmp_path_factory) -> Path:
    """One class, a third of the images without an object (in both splits), two image sizes."""
    root = tmp_path_factory.mktemp("sparse")
    from augpipe.readers import ShardDataset

    out = expanded(sparse_coco(root / "data"), root / "out", val_fraction=0.3)
    for split in ("train", "validation"):
        rows = ShardDataset(out, split, return_row=True)
        assert any(len(r["objects"]["bbox"]) == 0 for r in rows), f"the fixture needs an empty {split} image"
        assert len({(r["width"], r["height"]) for r in rows}) == 2, f"the fixture needs mixed sizes in {split}"
    return out


# ---------------------------------------------------------------- a dataset made with multi-image steps

MIXES = """
copies: 3
output: {format: png}
transforms:
  - HorizontalFlip: {p: 0.5}
  - Mosaic: {p: 0.7, target_size: [96, 96], cell_shape: [64, 64]}
  - CopyPaste: {p: 0.7}
  - MixUp: {p: 0.3}
"""


def mixed_scenes(root: Path, seed: int = 3, **options) -> tuple[Path, Path]:
    """(source, output): COCO scenes with polygons expanded with Mosaic, CopyPaste and MixUp."""
    source = make_scenes(root / "data", n=16, fmt="coco")
    out = root / "out"
    expand(source, parse_recipe(MIXES, "mixes.yaml"), out,
           ExpandOptions(workers=1, progress=False, seed=seed, **{"val_fraction": 0.25, **options}))
    return source, out
