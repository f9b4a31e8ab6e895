"""Throughput of `augpipe expand` against its ceiling and its peers, measured in one run.

    pip install -e '.[bench]' && python bench/expand.py [--images 2000] [--sizes 320 64] [--memory]

Builds photo datasets from scikit-image's bundled pictures (random crops, JPEG), then measures
images out per second for 2 augmented copies per input with flip, rotation ±15° and
brightness/contrast:

- ceiling: as many processes as workers, each decoding (OpenCV's imdecode, as a script would),
  augmenting and JPEG-encoding bytes held in memory (no files, no Parquet): the 1.00 every ratio
  is against, as issue 20 defines it;
- the same ceiling with augpipe's own decoder (libjpeg-turbo's API, faster than imdecode): a
  second, stricter one, shown with augpipe against it too (above 1.00 where augpipe's decode is
  the faster);
- augpipe expand with 1 and 2 workers, timed as the whole command and by its own clock;
- the bound on any whole command: the ceiling's work after Python's start and albumentations'
  import, nothing else (as bench/startup.py gives it at 64 px);
- the ceiling with its files: the same processes reading the sources from their files and
  writing the images and a label to Parquet (pyarrow), nothing more, and its bound: what any
  command that reads files and writes Parquet could reach;
- peers: a single-process albumentations loop writing files, a multiprocessing.Pool(2) loop
  writing files, Augmentor's Pipeline.sample(multi_threaded=True), and Hugging Face datasets
  (load_dataset("imagefolder") + map(num_proc=2) + to_parquet).

Every ratio is against the ceiling measured in the same run: these machines are noisy. augpipe's
modules are compiled to bytecode first, as an install leaves them (`as_installed`).
`--memory` also measures the peak memory of all augpipe processes at N and 10×N inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import multiprocessing as mp
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from augpipe.sample import sample_seed

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
COPIES = 2
RECIPE = """\
name: bench
description: flip, rotation ±15°, brightness/contrast (the benchmark's recipe)
copies: 2
keep_original: false
output: {format: jpeg, quality: 90}
transforms:
  - HorizontalFlip: {p: 0.5}
  - Rotate: {limit: [-15, 15], p: 0.5}
  - RandomBrightnessContrast: {brightness_limit: [-0.2, 0.2], contrast_limit: [-0.2, 0.2], p: 0.5}
"""
QUALITY = 90


def as_installed(*trees: Path) -> None:
    """augpipe's modules (this checkout's, and each tree's) compiled to bytecode, as `pip install`
    leaves an installed copy: a checkout run with PYTHONDONTWRITEBYTECODE set compiles every module
    it imports in every command (50 ms of `augpipe recipes`' 150 here), which no user's install does."""
    import compileall

    import augpipe

    for folder in (Path(augpipe.__file__).parent, *(tree / "augpipe" for tree in trees)):
        compileall.compile_dir(folder, quiet=1)


def bytecode_note() -> str | None:
    """A line where the installed packages have no bytecode (uv installs without it; pip compiles
    at install) and none can be written (PYTHONDONTWRITEBYTECODE): every command then compiles
    what it imports, the start-up figures are not an install's (0.45 s for --help, not 0.13)."""
    import importlib.util

    spec = importlib.util.find_spec("albumentations")
    if spec is None or spec.origin is None:
        return None
    if os.path.exists(importlib.util.cache_from_source(spec.origin)):
        return None
    site = Path(spec.origin).parent.parent
    return (f"note: the packages in {site} have no bytecode{' and PYTHONDONTWRITEBYTECODE is set' if os.environ.get('PYTHONDONTWRITEBYTECODE') else ''}: "
            f"each import compiles them, which no pip install does: `{sys.executable} -m compileall -q {site}` first")


def augpipe_tree() -> Path:
    """The folder holding the augpipe this Python imports (PYTHONPATH's, or the installed one)."""
    import augpipe

    return Path(augpipe.__file__).resolve().parent.parent


# ---------------------------------------------------------------- data

def make_dataset(root: Path, n: int, size: int, seed: int = 0) -> Path:
    import skimage.data

    rng = random.Random(seed)
    photos = {name: getattr(skimage.data, name)() for name in PHOTOS}
    for i in range(n):
        name = PHOTOS[i % len(PHOTOS)]
        photo = photos[name]
        h, w = photo.shape[:2]
        side = rng.randint(int(min(h, w) * 0.5), min(h, w))
        y, x = rng.randint(0, h - side), rng.randint(0, w - side)
        crop = cv2.resize(photo[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
        path = root / name / f"{name}_{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                                      [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
    return root


def all_files(root: Path) -> list[tuple[str, Path]]:
    """(relative path, path) of every image, sorted."""
    return [(p.relative_to(root).as_posix(), p) for p in sorted(root.rglob("*.jpg"))]


def compose():
    import albumentations as A

    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.Rotate(limit=(-15, 15), p=0.5),
        A.RandomBrightnessContrast(brightness_limit=(-0.2, 0.2), contrast_limit=(-0.2, 0.2), p=0.5),
    ])


def augment_bytes(data: bytes, transform, relpath: str, decoder: str = "opencv") -> list[bytes]:
    """Decode once (OpenCV's imdecode, as a script would; or augpipe's decode), then each copy
    with augpipe's seeds, so that the same transforms fire."""
    if decoder == "augpipe":
        from augpipe.decode import row_image

        image = row_image(data)
    else:
        image = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    out = []
    for c in range(1, COPIES + 1):
        seed = sample_seed(0, relpath, c)
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        aug = transform(image=image)["image"]
        out.append(cv2.imencode(".jpg", cv2.cvtColor(aug, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, QUALITY])[1]
                   .tobytes())
    return out


# ---------------------------------------------------------------- the ceiling

def rate_in_processes(target, parts: list) -> float:
    """Items per second of one spawned process a part, each calling target(part, barrier, result)
    and putting (items done, seconds) on result; timed from a common start."""
    ctx = mp.get_context("spawn")
    barrier, result = ctx.Barrier(len(parts)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(part, barrier, result)) for part in parts]
    for p in procs:
        p.start()
    got = [result.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(n for n, _ in got) / max(s for _, s in got)


def _ceiling_worker(blobs: list[tuple[str, bytes]], barrier, result, decoder: str = "opencv") -> None:
    cv2.setNumThreads(1)
    transform = compose()
    barrier.wait()
    t = time.perf_counter()
    n = 0
    for rel, data in blobs:
        n += len(augment_bytes(data, transform, rel, decoder))
    result.put((n, time.perf_counter() - t))


def ceiling(files: list[tuple[str, Path]], workers: int, decoder: str = "opencv") -> float:
    """Images out per second of `workers` processes looping over bytes in memory. `decoder`:
    OpenCV's imdecode, or augpipe's (libjpeg-turbo's own API for JPEGs, faster)."""
    blobs = [(rel, p.read_bytes()) for rel, p in files]
    return rate_in_processes(functools.partial(_ceiling_worker, decoder=decoder), [blobs[i::workers] for i in range(workers)])


def _files_ceiling_worker(part: list[tuple[str, str]], barrier, result, out: str = "", label: dict | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cv2.setNumThreads(1)
    transform = compose()
    schema = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("label", pa.int64())])

    def table(images: list[tuple[bytes, str]], labels: list[int]) -> pa.Table:
        image = pa.StructArray.from_arrays([pa.array([d for d, _ in images], pa.binary()),
                                            pa.array([p for _, p in images], pa.string())],
                                           fields=list(schema.field("image").type))
        return pa.Table.from_arrays([image, pa.array(labels, pa.int64())], schema=schema)

    table([(b"", "")], [0])  # untimed: pa.array's first call imports pandas (0.2-0.35 s), augpipe's never does
    barrier.wait()
    t = time.perf_counter()
    n = 0
    with pq.ParquetWriter(out, schema, compression={"image.bytes": "NONE", "image.path": "ZSTD", "label": "ZSTD"}) as writer:
        for start in range(0, len(part), 256):
            images, labels = [], []
            for rel, path in part[start:start + 256]:
                for c, data in enumerate(augment_bytes(Path(path).read_bytes(), transform, rel), 1):
                    images.append((data, f"{rel}_{c}.jpg"))
                    labels.append(label[rel.split("/")[0]])
            writer.write_table(table(images, labels))
            n += len(images)
    result.put((n, time.perf_counter() - t))


def files_ceiling(files: list[tuple[str, Path]], workers: int, folder: Path) -> float:
    """The ceiling's work with what any tool that writes Parquet must add: each process reads its
    sources from the files (the page cache's, as warm as augpipe's) and writes the images with a
    label into a Parquet file of its own (pyarrow, 256 sources a row group, image bytes stored
    as they are), no more: no hashes, checks, lineage, fsync or manifest, which augpipe adds.
    Each copy is seeded on its own, as in the ceiling: what a tool whose output is the same
    whatever its worker count must do (one stream a process would be a fifth cheaper at 64 px,
    and give other images with other workers). Its bound adds the ceiling's start and imports,
    not pyarrow's (about 0.04 s more for any command that writes Parquet): a bound, not a figure."""
    folder.mkdir(parents=True, exist_ok=True)
    label = {name: k for k, name in enumerate(sorted({rel.split("/")[0] for rel, _ in files}))}
    parts = [[(rel, str(p)) for rel, p in files[i::workers]] for i in range(workers)]
    targets = [functools.partial(_files_ceiling_worker, out=str(folder / f"part-{i}.parquet"), label=label)
               for i in range(workers)]
    try:
        return rate_in_processes(_each, list(zip(targets, parts)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _each(job, barrier, result) -> None:
    target, part = job
    target(part, barrier, result)


# ---------------------------------------------------------------- augpipe

def augpipe_expand(src: Path, out: Path, workers: int, recipe: Path, tree: Path | None = None) -> tuple[float, float, float]:
    """(images/s for the whole command, images/s by its own clock while processing, set-up seconds).

    The own clock starts the pool and runs every shard task; it leaves out Python's start, the
    imports, the scan and the content hashes, which the whole-command figure includes. `tree`:
    run the augpipe in that source tree (an earlier version, for a baseline in the same run)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "augpipe", "expand", str(src), "-r", str(recipe), "-o", str(out),
           "-w", str(workers), "--val-fraction", "0", "-q"]
    # `python -m` puts the working folder first on the path: run in the tree itself, or a baseline
    # run from a checkout would be that checkout's augpipe again
    tree = tree or augpipe_tree()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=tree)
    wall = time.perf_counter() - t
    m = json.loads(next(p for p in (out / "_augpipe.json", out / "augpipe.json") if p.exists()).read_text())
    rows = sum(c["rows"] for c in m["counts"].values())
    return rows / wall, rows / m["timing"]["process_seconds"], m["timing"]["setup_seconds"]


# ---------------------------------------------------------------- peers

def naive_loop(files: list[Path], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t = time.perf_counter()
    transform = compose()
    n = 0
    for rel, path in files:
        for c, data in enumerate(augment_bytes(path.read_bytes(), transform, rel)):
            (out / f"{path.stem}_{c}.jpg").write_bytes(data)
            n += 1
    return n / (time.perf_counter() - t)


_POOL_TRANSFORM = None


def _pool_init():
    global _POOL_TRANSFORM
    cv2.setNumThreads(1)
    _POOL_TRANSFORM = compose()


def _pool_one(args) -> int:
    rel, path, out = args
    for c, data in enumerate(augment_bytes(Path(path).read_bytes(), _POOL_TRANSFORM, rel)):
        (Path(out) / f"{Path(path).stem}_{c}.jpg").write_bytes(data)
    return COPIES


def pool_loop(files: list[Path], out: Path, workers: int = 2) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(workers, initializer=_pool_init) as pool:
        n = sum(pool.imap_unordered(_pool_one, [(rel, str(p), str(out)) for rel, p in files], chunksize=16))
    return n / (time.perf_counter() - t)


def augmentor(src: Path, out: Path, n_images: int) -> float:
    import Augmentor
    from PIL import Image

    if not hasattr(Image, "ANTIALIAS"):  # Augmentor 0.2.12 predates Pillow 10
        Image.ANTIALIAS = Image.LANCZOS
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    pipeline = Augmentor.Pipeline(str(src), output_directory=str(out.resolve()), save_format="JPEG")
    pipeline.flip_left_right(probability=0.5)
    pipeline.rotate(probability=0.5, max_left_rotation=15, max_right_rotation=15)
    pipeline.random_brightness(probability=0.5, min_factor=0.8, max_factor=1.2)
    pipeline.random_contrast(probability=0.5, min_factor=0.8, max_factor=1.2)
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        pipeline.sample(n_images * COPIES, multi_threaded=True)  # its bar prints a line per image
    return n_images * COPIES / (time.perf_counter() - t)


def _hf_batch(batch):
    """File bytes in (Image(decode=False)), the same OpenCV code as the ceiling."""
    transform = _hf_batch.transform = getattr(_hf_batch, "transform", None) or compose()
    images, labels = [], []
    for image, label in zip(batch["image"], batch["label"]):
        data = image["bytes"] or Path(image["path"]).read_bytes()
        for blob in augment_bytes(data, transform, Path(image["path"]).name):
            images.append({"bytes": blob, "path": None})
            labels.append(label)
    return {"image": images, "label": labels}


def _hf_batch_decoded(batch):
    """datasets' default: images arrive decoded by PIL; augmented and JPEG-encoded as the others."""
    transform = _hf_batch_decoded.transform = getattr(_hf_batch_decoded, "transform", None) or compose()
    images, labels = [], []
    for i, (image, label) in enumerate(zip(batch["image"], batch["label"])):
        rgb = np.asarray(image.convert("RGB"))
        for c in range(1, COPIES + 1):
            seed = sample_seed(0, f"{i}", c)
            transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
            aug = transform(image=rgb)["image"]
            blob = cv2.imencode(".jpg", cv2.cvtColor(aug, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, QUALITY])[1]
            images.append({"bytes": blob.tobytes(), "path": None})
            labels.append(label)
    return {"image": images, "label": labels}


def hf_datasets(src: Path, out: Path, cache: Path, raw: bool = True) -> float:
    """Hugging Face datasets: imagefolder, map with 2 processes, to_parquet. `raw`: the file's
    bytes (Image(decode=False)); else datasets' default, PIL-decoded images."""
    import datasets

    datasets.disable_progress_bars()
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    out.mkdir(parents=True)
    t = time.perf_counter()
    ds = datasets.load_dataset("imagefolder", data_dir=str(src), split="train", cache_dir=str(cache))
    if raw:
        ds = ds.cast_column("image", datasets.Image(decode=False))  # the file's bytes, not a PIL image
    aug = ds.map(_hf_batch if raw else _hf_batch_decoded, batched=True, batch_size=32, num_proc=2, remove_columns=ds.column_names,
                 features=datasets.Features({"image": datasets.Image(), "label": ds.features["label"]}))
    aug.to_parquet(str(out / "train.parquet"))
    return len(aug) / (time.perf_counter() - t)


# ---------------------------------------------------------------- memory

def peak_memory(cmd: list[str]) -> float:
    """Peak of the summed PSS of a command and all its children, in MB (sampled every 20 ms).

    PSS, not RSS: workers forked from the parent share its pages, which RSS counts in each."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            peak = max(peak, sum(_pss(p) for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    return peak / 1e6


def _pss(proc) -> int:
    try:
        return proc.memory_full_info().pss
    except AttributeError:  # no PSS on this platform
        return proc.memory_info().rss


# ---------------------------------------------------------------- main

def loading_bound(rows: int, ceiling_rate: float) -> tuple[float, float]:
    """(images/s, seconds to load): the most any whole command could reach, the ceiling's work
    after Python's start and the imports a worker needs before its first image (albumentations,
    numpy, OpenCV, pydantic and augpipe's recipe module: bench/startup.py's LOADING), nothing else."""
    from startup import LOADING, wall

    loading = wall([sys.executable, "-c", LOADING], 5)
    return rows / (rows / ceiling_rate + loading), loading


def files_rows(files_rate: float, ceiling_rate: float, loading: float, rows: int, own: float,
               whole: float) -> list[tuple[str, float | None, str]]:
    """The rows of `files_ceiling` and of its bound (its work after `loading`): what any command
    that reads its sources and writes Parquet could reach, and augpipe against both."""
    bound = rows / (rows / files_rate + loading)
    return [("ceiling reading its files and writing Parquet", files_rate, f"{files_rate / ceiling_rate:.2f}"),
            (f"bound with the files: that + {loading:.2f} s", bound, f"{bound / ceiling_rate:.2f}, the most a "
             "command that reads and writes files reaches"),
            ("augpipe -w 2 against these two", None, f"own clock {own / files_rate:.2f}, whole {whole / bound:.2f}")]


def run_size(work: Path, size: int, n: int, recipe: Path, repeat: int, baseline: Path | None = None,
             one_worker: bool = True) -> tuple[list, dict]:
    """The ceiling and augpipe (and the `baseline` tree's augpipe, -w 2), each measured `repeat`
    times in turn; medians."""
    src = make_dataset(work / f"src{size}", n, size)
    files = all_files(src)
    runs: dict[str, list[float]] = {}
    for _ in range(repeat):
        for w in (2, 1) if one_worker else (2,):
            runs.setdefault(f"ceil{w}", []).append(ceiling(files, w))
            if w == 2:
                runs.setdefault("ceil2a", []).append(ceiling(files, w, "augpipe"))
                runs.setdefault("files2", []).append(files_ceiling(files, w, work / "files-ceiling"))
            wall, own, setup = augpipe_expand(src, work / f"out{size}-{w}", w, recipe)
            runs.setdefault(f"own{w}", []).append(own)
            runs.setdefault(f"wall{w}", []).append(wall)
            runs.setdefault(f"setup{w}", []).append(setup)
        if baseline is not None:
            wall, own, setup = augpipe_expand(src, work / f"out{size}-base", 2, recipe, baseline)
            runs.setdefault("base_own", []).append(own)
            runs.setdefault("base_wall", []).append(wall)
            runs.setdefault("base_setup", []).append(setup)
    m = {k: statistics.median(v) for k, v in runs.items()}
    ceil2 = m["ceil2"]
    rows = [("ceiling, 2 processes", ceil2, "1.00")]
    if one_worker:
        rows.append(("ceiling, 1 process", m["ceil1"], f"{m['ceil1'] / ceil2:.2f}"))
    for w in (1, 2) if one_worker else (2,):
        rows.append((f"augpipe expand -w {w} (own clock, processing)", m[f"own{w}"], f"{m[f'own{w}'] / ceil2:.2f}"))
        rows.append((f"augpipe expand -w {w} (whole command)", m[f"wall{w}"], f"{m[f'wall{w}'] / ceil2:.2f}"))
        rows.append((f"augpipe expand -w {w}, set-up", None, f"{m[f'setup{w}']:.2f} s (the manifest's setup_seconds)"))
    if baseline is not None:
        rows.append((f"baseline -w 2 (own clock), {baseline.name}", m["base_own"], f"{m['base_own'] / ceil2:.2f}"))
        rows.append((f"baseline -w 2 (whole command), {baseline.name}", m["base_wall"], f"{m['base_wall'] / ceil2:.2f}"))
        rows.append(("baseline -w 2, set-up", None, f"{m['base_setup']:.2f} s (the manifest's setup_seconds)"))
    bound, loading = loading_bound(n * COPIES, ceil2)
    rows.append((f"bound: ceiling + {loading:.2f} s start and imports", bound, f"{bound / ceil2:.2f}, the most any "
                 "whole command reaches"))
    rows.append(("augpipe -w 2 whole command / the bound", None, f"{m['wall2'] / bound:.2f}"))
    rows.extend(files_rows(m["files2"], ceil2, loading, n * COPIES, m["own2"], m["wall2"]))
    if one_worker:
        rows.append(("augpipe 1 -> 2 workers", None, f"{m['own2'] / m['own1']:.2f}× (own clock)"))
    rows.append(("ceiling with augpipe's decode, 2 processes", m["ceil2a"], f"{m['ceil2a'] / ceil2:.2f}"))
    rows.append(("-w 2 / that ceiling", None, f"own clock {m['own2'] / m['ceil2a']:.2f}, whole {m['wall2'] / m['ceil2a']:.2f}"))
    if repeat > 1:
        spread = [own / c for own, c in zip(runs["own2"], runs["ceil2"])]
        rows.append((f"-w 2 own clock / ceiling, {repeat} runs", None, f"{min(spread):.2f}–{max(spread):.2f}"))
        spread = [wall / c for wall, c in zip(runs["wall2"], runs["ceil2"])]
        rows.append((f"-w 2 whole / ceiling, {repeat} runs", None, f"{min(spread):.2f}–{max(spread):.2f}"))
    work_seconds = n * COPIES / ceil2
    if work_seconds < 2:
        rows.append(("note", None, f"the ceiling's work is {work_seconds:.2f} s: so short a run's ratios are "
                     "noise, and its bound is low by construction (--images 2000 or more)"))
    return rows, {"ceiling": ceil2, "src": src, "files": files, 1: m.get("own1"), 2: m["own2"]}


def run_peers(work: Path, results: dict) -> list[tuple[str, float, str]]:
    """The peers, last: some leave processes behind that would slow what follows."""
    src, files, ceil2 = results["src"], results["files"], results["ceiling"]
    rows, speeds = [], {}
    for name, fn in (
        ("albumentations loop, files", lambda: naive_loop(files, work / "naive")),
        ("multiprocessing.Pool(2), files", lambda: pool_loop(files, work / "pool")),
        ("Augmentor sample(multi_threaded)", lambda: augmentor(src, work / "augmentor", len(files))),
        ("HF datasets map(num_proc=2), bytes", lambda: hf_datasets(src, work / "hf", work / "hf-cache")),
        ("HF datasets map(num_proc=2), PIL", lambda: hf_datasets(src, work / "hf", work / "hf-cache", raw=False)),
    ):
        try:
            speeds[name] = fn()
            rows.append((name, speeds[name], f"{speeds[name] / ceil2:.2f}"))
        except Exception as exc:  # a peer that fails here is reported, not fatal
            rows.append((name, float("nan"), f"failed: {type(exc).__name__}: {exc}"[:60]))
    for name, speed in speeds.items():
        if name.startswith(("Augmentor", "HF")):
            short = name.replace(" sample(multi_threaded)", "").replace(" map(num_proc=2)", "")
            rows.append((f"augpipe -w 2 / {short}", None, f"{results[2] / speed:.2f}×"))
    return rows


def print_rows(title: str, rows: list) -> None:
    print(f"\n{title}")
    print(f"  {'what':<44} {'images/s':>10}  vs ceiling (2 processes)")
    for name, value, ratio in rows:
        shown = "" if value is None else f"{value:,.2f}" if value < 10 else f"{value:,.1f}"
        print(f"  {name:<44} {shown:>10}  {ratio}")


def arguments(doc: str) -> argparse.ArgumentParser:
    """A bench's parser: its docstring's first paragraph, and each option's default in --help."""
    return argparse.ArgumentParser(description=" ".join(doc.split("\n\n")[0].split()),
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--images", type=int, default=2000, help="inputs at each size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 64], help="sides in pixels")
    parser.add_argument("--no-peers", action="store_true", help="augpipe and the ceiling only")
    parser.add_argument("--memory", action="store_true", help="peak memory at N and 10×N inputs (64 px)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--repeat", type=int, default=3, help="measure the ceiling and augpipe this many times; medians")
    parser.add_argument("--baseline", type=Path, help="also run the augpipe in this source tree (-w 2), e.g. a "
                        "worktree of an earlier version: `git worktree add ../v020 873d58f`")
    parser.add_argument("--two-only", action="store_true", help="-w 2 and its ceiling only (no -w 1 runs)")
    args = parser.parse_args()
    if args.no_peers is False and args.two_only:
        parser.error("--two-only leaves out what the peers are compared with: add --no-peers")
    as_installed(*([args.baseline] if args.baseline else []))
    work = args.keep or Path(tempfile.mkdtemp(prefix="augpipe-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    recipe = work / "bench.yaml"
    recipe.write_text(RECIPE)
    if note := bytecode_note():
        print(note)
    print(f"augpipe bench: {args.images} inputs, {COPIES} copies each, {os.cpu_count()} cores, "
          f"{f'medians of {args.repeat} runs' if args.repeat > 1 else '1 run'}, work in {work}")
    try:
        measured = {}
        for size in args.sizes:
            rows, measured[size] = run_size(work, size, args.images, recipe, args.repeat, args.baseline,
                                            not args.two_only)
            print_rows(f"{size}×{size} px, {args.images * COPIES} images out", rows)
        if args.memory:
            print("\npeak memory of all augpipe processes, 64 px, 2 workers")
            peaks = {}
            for n in (args.images, args.images * 10):
                src = make_dataset(work / f"mem{n}", n, 64)
                out = work / f"memout{n}"
                shutil.rmtree(out, ignore_errors=True)
                cmd = [sys.executable, "-m", "augpipe", "expand", str(src), "-r", str(recipe), "-o", str(out),
                       "-w", "2", "-q"]
                peaks[n] = peak_memory(cmd)
                timing = json.loads((out / "_augpipe.json").read_text())["timing"]
                print(f"  {n:>7,} inputs: {peaks[n]:8.1f} MB   ({timing['images_per_second']:,.0f} images/s while "
                      f"processing, {timing['seconds']:.1f} s in all)")
            small, big = peaks[args.images], peaks[args.images * 10]
            print(f"  growth from {args.images:,} to {args.images * 10:,} inputs: {100 * (big / small - 1):+.1f}%")
        if not args.no_peers:
            size = args.sizes[0]
            print_rows(f"peers, {size}×{size} px (the ceiling and augpipe from above)", run_peers(work, measured[size]))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
